"""Load and write tokenizers from snapshot files without executing hub code.

Two on-disk layouts exist among the six backbones (docs/backbones/tokenizers.md):
- "tokenizer_json": `tokenizer.json` + `tokenizer_config.json` (+ `special_tokens_map.json`,
  optionally `chat_template.jinja`); LLaDA, LLaDA-MoE, DiffuLLaMA (LLaMA-2 tokenizer) ship this.
- "vocab_merges": `vocab.json` + `merges.txt` + `tokenizer_config.json` whose `auto_map` points to
  remote `tokenization_dream.py` (a slow Qwen2-style byte-level BPE); Dream ships this. The fast
  equivalent is rebuilt here with the `tokenizers` library: NFC normaliser, Qwen2's split regex
  (transformers `models/qwen2/tokenization_qwen2.py:33`, identical to Dream's
  `tokenization_dream.py:40`), byte-level pre-tokenizer/decoder, and the added tokens of
  `added_tokens_decoder` at their declared ids.

`write_snapshot_tokenizer` writes either layout so that structural twins ship their tokenizer the
way the real model does and are read back through `load_snapshot_tokenizer`, the same code path
as the real snapshot.

A tokenizer file that cannot be parsed (cut short, corrupt) raises `DamagedArtefact` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, \
    pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from harness.artefacts import DamagedArtefact, read_json

QWEN2_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                           r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
LAYOUTS = ("tokenizer_json", "vocab_merges")
SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token",
                 "cls_token")
# tokenizer_config.json keys passed through to the transformers tokenizer (never auto_map / classes)
_PASSTHROUGH = ("model_max_length", "clean_up_tokenization_spaces", "padding_side",
                "truncation_side", "split_special_tokens", "model_input_names")


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DamagedArtefact(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedArtefact(path, f"not valid UTF-8 text ({exc}): corrupt") from None


def _token_content(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return value["content"]
    raise ValueError(f"unrecognised special token entry {value!r}")


def _added_token(content: str, spec: dict[str, Any]) -> AddedToken:
    return AddedToken(content, single_word=bool(spec.get("single_word", False)),
                      lstrip=bool(spec.get("lstrip", False)), rstrip=bool(spec.get("rstrip", False)),
                      normalized=bool(spec.get("normalized", False)),
                      special=bool(spec.get("special", True)))


def qwen2_backend(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Tokenizer:
    """A fast byte-level BPE with Qwen2's normaliser, split regex, decoder and post-processor."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                               continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _add_declared_tokens(tok: Tokenizer, decoder: dict[str, dict[str, Any]], where: Path) -> None:
    """Add `added_tokens_decoder` entries in id order and check each lands on its declared id."""
    for key in sorted(decoder, key=int):
        spec = decoder[key]
        token = _added_token(spec["content"], spec)
        if spec.get("special", True):
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])
        got = tok.token_to_id(spec["content"])
        if got != int(key):
            raise ValueError(f"{where}: added token {spec['content']!r} is declared with id {key} "
                             f"but lands on id {got} (ids must follow the vocabulary without gaps)")


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise DamagedArtefact(path, f"line {number}: expected two space-separated tokens, "
                                        f"got {line!r} (truncated or corrupt)")
        merges.append((parts[0], parts[1]))
    return merges


def load_snapshot_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer of a local snapshot, from its files only (no hub code, no network)."""
    path = Path(directory)
    config_path = path / "tokenizer_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    specials_path = path / "special_tokens_map.json"
    specials = _read_json(specials_path) if specials_path.is_file() else {}
    added_decoder: dict[str, dict[str, Any]] = config.get("added_tokens_decoder") or {}

    if (path / "tokenizer.json").is_file():
        try:
            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # the tokenizers library raises a bare Exception
            raise DamagedArtefact(path / "tokenizer.json",
                                  f"not a readable tokenizer file ({exc}): truncated or "
                                  f"corrupt") from None
        # tokenizer.json carries its added tokens; check the config's ids agree with them
        for key, spec in added_decoder.items():
            got = backend.token_to_id(spec["content"])
            if got is None:
                _add_declared_tokens(backend, {key: spec}, path)
            elif got != int(key):
                raise ValueError(f"{config_path}: added token {spec['content']!r} declared id {key}, "
                                 f"tokenizer.json has {got}")
    elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        vocab = _read_json(path / "vocab.json")
        merges = _read_merges(path / "merges.txt")
        try:
            backend = qwen2_backend(vocab, merges)
        except Exception as exc:  # the tokenizers library raises a bare Exception
            raise DamagedArtefact(path / "merges.txt", f"does not fit vocab.json ({exc}): "
                                                       f"truncated or corrupt") from None
        _add_declared_tokens(backend, added_decoder, path)
    else:
        raise FileNotFoundError(
            f"{path}: no tokenizer files; looked for 'tokenizer.json' or 'vocab.json' + "
            f"'merges.txt' (with 'tokenizer_config.json')")

    kwargs: dict[str, Any] = {k: config[k] for k in _PASSTHROUGH if k in config}
    for role in SPECIAL_ROLES:
        value = specials.get(role, config.get(role))  # special_tokens_map.json wins, as in transformers
        content = _token_content(value)
        if content is not None:
            if backend.token_to_id(content) is None:
                raise ValueError(f"{path}: {role} {content!r} is not in the tokenizer's vocabulary")
            kwargs[role] = content
    extra = specials.get("additional_special_tokens", config.get("additional_special_tokens"))
    if extra:
        kwargs["extra_special_tokens"] = [_token_content(t) for t in extra]
    for flag in ("add_bos_token", "add_eos_token"):
        if flag in config:  # explicit => transformers rebuilds the post-processor from it
            kwargs[flag] = bool(config[flag])
    template = config.get("chat_template")
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        template = _read_text(jinja)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
    if template is not None:
        tok.chat_template = template
    return tok


# ----------------------------------------------------------------------------------------------
# writing

def _added_decoder_json(backend: Tokenizer) -> dict[str, dict[str, Any]]:
    out = {}
    for idx, tok in sorted(backend.get_added_tokens_decoder().items()):
        out[str(idx)] = {"content": tok.content, "lstrip": tok.lstrip, "normalized": tok.normalized,
                         "rstrip": tok.rstrip, "single_word": tok.single_word,
                         "special": tok.special}
    return out


def _special_roles(tokenizer: PreTrainedTokenizerFast) -> dict[str, str | None]:
    return {role: getattr(tokenizer, role, None) for role in SPECIAL_ROLES}


def _adds_bos(tokenizer: PreTrainedTokenizerFast) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer.backend_tokenizer.encode("a", add_special_tokens=True).ids
    return bool(ids) and ids[0] == bos


def _bpe_parts(backend: Tokenizer) -> tuple[dict[str, int], list[str]]:
    model = json.loads(backend.to_str())["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"vocab_merges layout needs a BPE model, got {model.get('type')}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def to_qwen2_pipeline(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The same BPE vocabulary/merges and added tokens behind Qwen2's (= Dream's) pre-tokenization,
    i.e. exactly what `load_snapshot_tokenizer` rebuilds from a vocab_merges layout."""
    vocab, merges = _bpe_parts(tokenizer.backend_tokenizer)
    backend = qwen2_backend(vocab, [tuple(m.split(" ")) for m in merges])
    _add_declared_tokens(backend, _added_decoder_json(tokenizer.backend_tokenizer), Path("<memory>"))
    kwargs = {k: v for k, v in _special_roles(tokenizer).items() if v is not None}
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
    if tokenizer.chat_template is not None:
        tok.chat_template = tokenizer.chat_template
    return tok


def _pipeline_signature(backend: Tokenizer) -> tuple:
    data = json.loads(backend.to_str())
    return tuple(json.dumps(data.get(k), sort_keys=True)
                 for k in ("normalizer", "pre_tokenizer", "decoder"))


def write_snapshot_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path,
                             layout: str) -> list[str]:
    """Write `tokenizer` in one upstream layout; returns the file names written."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown tokenizer layout {layout!r}; expected one of {LAYOUTS}")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    backend = tokenizer.backend_tokenizer
    roles = _special_roles(tokenizer)
    config: dict[str, Any] = {"added_tokens_decoder": _added_decoder_json(backend)}
    written = []
    if layout == "tokenizer_json":
        backend.save(str(path / "tokenizer.json"))
        config.update({"add_bos_token": _adds_bos(tokenizer), "add_eos_token": False})
        config.update({role: value for role, value in roles.items() if value is not None})
        config.update({"clean_up_tokenization_spaces": False,
                       "model_max_length": int(min(tokenizer.model_max_length, 10**9)),
                       "tokenizer_class": "PreTrainedTokenizerFast"})
        written.append("tokenizer.json")
    else:
        if _pipeline_signature(backend) != _pipeline_signature(qwen2_backend({}, [])):
            raise ValueError("vocab_merges layout cannot carry this tokenizer's normaliser/"
                             "pre-tokenizer/decoder; convert it with to_qwen2_pipeline() first")
        if _adds_bos(tokenizer):
            raise ValueError("vocab_merges layout (Dream's) never prepends BOS; this tokenizer does")
        vocab, merges = _bpe_parts(backend)
        with (path / "vocab.json").open("w", encoding="utf-8") as fh:
            json.dump(vocab, fh, ensure_ascii=False)
        (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                         encoding="utf-8")
        # Dream's tokenizer_config.json shape (docs/backbones/tokenizers.md); the auto_map is kept
        # for fidelity but never followed by load_snapshot_tokenizer
        config.update({"add_prefix_space": False,
                       "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
                       "bos_token": roles["bos_token"], "clean_up_tokenization_spaces": False,
                       "eos_token": roles["eos_token"], "errors": "replace",
                       "model_max_length": int(min(tokenizer.model_max_length, 10**9)),
                       "pad_token": roles["pad_token"], "split_special_tokens": False,
                       "tokenizer_class": "DreamTokenizer", "unk_token": None})
        if roles["mask_token"] is not None:
            config["mask_token"] = roles["mask_token"]
        written += ["vocab.json", "merges.txt"]
    if tokenizer.chat_template is not None:
        config["chat_template"] = tokenizer.chat_template
    with (path / "tokenizer_config.json").open("w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, ensure_ascii=False)
    specials = {role: value for role, value in roles.items() if value is not None}
    with (path / "special_tokens_map.json").open("w", encoding="utf-8") as fh:
        json.dump(specials, fh, indent=2, ensure_ascii=False)
    return written + ["tokenizer_config.json", "special_tokens_map.json"]
