"""Prompt formats: how a question becomes the text before the answer.

`plain` is the harness's Base-model format ("Question: ...\\nAnswer:"); `chat` renders one
user turn with the tokenizer's own chat template (`tokenizer.apply_chat_template`, as
LLaDA-8B-Instruct is prompted) and tokenises it without adding special tokens again (the
template already starts with BOS). Backbones pick one with `options.prompt_format`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# A Llama-3-style template as LLaDA-8B-Instruct uses it (BOS, header tokens, <|eot_id|>);
# the Instruct twin's tokenizer carries it so that the `chat` path is exercised on CPU.
LLADA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLADA_CHAT_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


@dataclass(frozen=True)
class PromptFormat:
    name: str
    render: Callable[[Any, str], str]  # (tokenizer, question) -> prompt text
    add_special_tokens: bool  # passed to the tokenizer when encoding the rendered prompt
    answer_prefix: str = " "  # text between the prompt and the answer
    answer_suffix: str = ""  # text after the answer that is part of the target (end of turn)


def _plain(tokenizer: Any, question: str) -> str:
    return f"Question: {question}\nAnswer:"


def _chat(tokenizer: Any, question: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt_format 'chat' needs a tokenizer with a chat template "
                         "(this tokenizer has none; use prompt_format: plain)")
    return tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                         tokenize=False, add_generation_prompt=True)


PROMPT_FORMATS: dict[str, PromptFormat] = {
    "plain": PromptFormat("plain", _plain, add_special_tokens=True),
    # LLaDA's SFT layout: the answer follows the assistant header's blank line directly and
    # ends with <|eot_id|>, then EOS padding (docs/backbones/tokenizers.md).
    "chat": PromptFormat("chat", _chat, add_special_tokens=False, answer_prefix="",
                         answer_suffix="<|eot_id|>"),
}


def prompt_format(name: str) -> PromptFormat:
    try:
        return PROMPT_FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown prompt_format '{name}'; known: {', '.join(PROMPT_FORMATS)}") from None
