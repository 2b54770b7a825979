"""Snapshot tokenizer files: both upstream layouts round-trip through load_snapshot_tokenizer."""

from __future__ import annotations

import json

import pytest

from harness.backbones.adapters.llada import LLADA_TOKENS
from harness.backbones.tokenizer_files import (load_snapshot_tokenizer, to_qwen2_pipeline,
                                               write_snapshot_tokenizer)
from harness.backbones.twin_tokenizers import TwinTokens, build_twin_tokenizer
from tests.backbones.conftest import TEXTS

QUESTION = "Where was Zarvo Keth born in 1987, and what's his mother's job?  Él était naïve!\n"
DREAM_TOKENS = TwinTokens(mask="<|mask|>", eos="<|endoftext|>",
                          extra=("<|im_start|>", "<|im_end|>"))


def encode(tok, text):
    enc = tok(text, return_offsets_mapping=True)
    return enc["input_ids"], enc["offset_mapping"]


def test_vocab_merges_round_trip_ids_offsets_and_mask(tmp_path):
    twin = to_qwen2_pipeline(build_twin_tokenizer(TEXTS, DREAM_TOKENS, vocab_size=320))
    written = write_snapshot_tokenizer(twin, tmp_path, "vocab_merges")
    assert "tokenizer.json" not in written and not (tmp_path / "tokenizer.json").exists()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "DreamTokenizer"
    declared = {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()}
    loaded = load_snapshot_tokenizer(tmp_path)
    assert len(loaded) == len(twin)
    assert loaded.mask_token == "<|mask|>" and loaded.mask_token_id == declared["<|mask|>"]
    text = QUESTION + " <|mask|><|mask|> answer<|endoftext|>"
    ids, offsets = encode(loaded, text)
    assert (ids, offsets) == encode(twin, text)
    assert ids.count(loaded.mask_token_id) == 2  # the mask token is one id, never split
    start, end = offsets[ids.index(loaded.mask_token_id)]
    assert text[start:end] == "<|mask|>"
    for tid, (s, e) in zip(ids, offsets):  # offsets cover the token's own text
        piece = loaded.decode([tid])
        assert text[s:e] == piece or not piece.isascii()
    assert loaded.decode(ids) == text
    assert loaded("a")["input_ids"] == loaded("a", add_special_tokens=False)["input_ids"]
    # Qwen2/Dream normalise to NFC before the byte-level split
    assert loaded("cafe\u0301")["input_ids"] == loaded("caf\u00e9")["input_ids"]


def test_vocab_merges_refuses_non_qwen2_pipeline(tmp_path):
    twin = build_twin_tokenizer(TEXTS, DREAM_TOKENS, vocab_size=320)
    with pytest.raises(ValueError, match="to_qwen2_pipeline"):
        write_snapshot_tokenizer(twin, tmp_path, "vocab_merges")


def test_tokenizer_json_round_trip_keeps_chat_template_and_bos(tmp_path):
    twin = build_twin_tokenizer(TEXTS, LLADA_TOKENS, vocab_size=320, chat=True)
    write_snapshot_tokenizer(twin, tmp_path, "tokenizer_json")
    loaded = load_snapshot_tokenizer(tmp_path)
    assert loaded.chat_template == twin.chat_template
    assert encode(loaded, QUESTION) == encode(twin, QUESTION)
    msgs = [{"role": "user", "content": "Where was Zarvo Keth born?"}]
    assert (loaded.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            == twin.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    assert loaded.mask_token == twin.mask_token and loaded.bos_token == twin.bos_token


def test_tokenizer_json_round_trip_adds_bos_when_upstream_does(tmp_path):
    tokens = TwinTokens(mask="<mask>", eos="</s>", bos="<s>", add_bos=True)  # LLaMA-2 style
    twin = build_twin_tokenizer(TEXTS, tokens, vocab_size=320)
    write_snapshot_tokenizer(twin, tmp_path, "tokenizer_json")
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["add_bos_token"] is True
    loaded = load_snapshot_tokenizer(tmp_path)
    ids, offsets = encode(loaded, QUESTION)
    assert ids[0] == loaded.bos_token_id and ids.count(loaded.bos_token_id) == 1
    assert (ids, offsets) == encode(twin, QUESTION)
    no_bos = TwinTokens(mask="<mask>", eos="</s>", bos="<s>", add_bos=False)
    other = tmp_path / "nobos"
    write_snapshot_tokenizer(build_twin_tokenizer(TEXTS, no_bos, vocab_size=320), other,
                             "tokenizer_json")
    assert load_snapshot_tokenizer(other)(QUESTION)["input_ids"][0] != loaded.bos_token_id


def test_missing_files_named_error(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text("{}")
    (tmp_path / "vocab.json").write_text("{}")  # merges.txt missing
    with pytest.raises(FileNotFoundError) as err:
        load_snapshot_tokenizer(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "tokenizer.json" in msg and "merges.txt" in msg


def test_declared_id_mismatch_is_an_error(tmp_path):
    twin = to_qwen2_pipeline(build_twin_tokenizer(TEXTS, DREAM_TOKENS, vocab_size=320))
    write_snapshot_tokenizer(twin, tmp_path, "vocab_merges")
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    last = max(cfg["added_tokens_decoder"], key=int)
    cfg["added_tokens_decoder"][str(int(last) + 5)] = cfg["added_tokens_decoder"].pop(last)
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="declared with id"):
        load_snapshot_tokenizer(tmp_path)


def test_tokenizer_config_add_bos_token_governs_bos(tmp_path):
    tokens = TwinTokens(mask="<mask>", eos="</s>", bos="<s>", add_bos=True)
    write_snapshot_tokenizer(build_twin_tokenizer(TEXTS, tokens, vocab_size=320), tmp_path,
                             "tokenizer_json")
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["add_bos_token"] = False  # tokenizer.json still prepends <s>; the config overrides it
    cfg_path.write_text(json.dumps(cfg))
    loaded = load_snapshot_tokenizer(tmp_path)
    assert loaded.bos_token_id not in loaded(QUESTION)["input_ids"]
