"""Loading hub (or local) checkpoints of the real MDLMs through `transformers`, safely.

Policy, checked *before* anything touches the hub:
- a model whose modeling code lives in its hub repository (LLaDA, Dream, MMaDA,
  LLaDA-MoE) loads only when the backbone's config sets `trust_remote_code: true`, and
  only at an explicit `revision` (remote code is executed: pin what you reviewed);
- weights load as safetensors only (`use_safetensors=True`: no pickle is ever unpickled);
- a `spec.path` that is a local directory is loaded with `local_files_only=True`.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.backbones.base import BackboneSpec

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                  "float16": torch.float16}
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class RemoteCodeNotTrusted(ValueError):
    """The backbone needs its hub repository's modeling code and the config did not opt in."""


def torch_dtype(spec: BackboneSpec) -> torch.dtype:
    try:
        return DTYPES[spec.dtype]
    except KeyError:
        raise ValueError(f"backbone '{spec.name}': unknown dtype '{spec.dtype}'; "
                         f"known: {', '.join(DTYPES)}") from None


def model_source(spec: BackboneSpec) -> str:
    """Where the weights come from: a local checkpoint directory, else the hub id."""
    source = spec.path or spec.hf_id
    if not source:
        raise ValueError(f"backbone '{spec.name}' ({spec.adapter}): set 'hf_id' (hub model) "
                         f"or 'path' (local checkpoint)")
    return source


def is_local(source: str) -> bool:
    return Path(source).is_dir()


def check_remote_code_policy(spec: BackboneSpec, needs_remote_code: bool) -> None:
    """Refuse (before any download) a model that needs remote code the config did not trust."""
    if not needs_remote_code:
        return
    if not spec.trust_remote_code:
        raise RemoteCodeNotTrusted(
            f"backbone '{spec.name}' ({spec.adapter}, {spec.hf_id or spec.path}) runs modeling "
            f"code from its hub repository; set 'trust_remote_code: true' (and pin 'revision' "
            f"to a reviewed commit) in this backbone's config entry to allow it")
    source = model_source(spec)
    if is_local(source):
        return
    if not spec.revision:
        raise RemoteCodeNotTrusted(
            f"backbone '{spec.name}': trust_remote_code needs a pinned 'revision' "
            f"(a commit sha of {spec.hf_id}) in this backbone's config entry")
    if spec.revision.upper().startswith("TODO"):
        raise RemoteCodeNotTrusted(
            f"backbone '{spec.name}': revision '{spec.revision}' is a placeholder; pin it to the "
            f"commit sha of {spec.hf_id} whose remote code you reviewed")
    if not COMMIT_SHA.match(spec.revision):
        log.warning("backbone '%s': revision '%s' is not a commit sha; the remote code it runs "
                    "can change under you (pin a 40-hex commit)", spec.name, spec.revision)


def hub_kwargs(spec: BackboneSpec, needs_remote_code: bool) -> dict[str, Any]:
    """Keyword arguments common to the model/tokenizer `from_pretrained` calls."""
    check_remote_code_policy(spec, needs_remote_code)
    source = model_source(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": bool(spec.trust_remote_code and needs_remote_code)}
    if is_local(source):
        kwargs["local_files_only"] = True
    elif spec.revision:
        kwargs["revision"] = spec.revision
    return kwargs


def import_object(dotted: str) -> Any:
    """`package.module:Name` -> the object (for `options.model_class`)."""
    module_name, _, attr = dotted.partition(":")
    if not attr:
        raise ValueError(f"model_class '{dotted}' must look like 'package.module:ClassName'")
    return getattr(importlib.import_module(module_name), attr)


def load_hf_model(spec: BackboneSpec, auto_class: str, needs_remote_code: bool) -> nn.Module:
    """The model of `spec` via `transformers.<auto_class>` (or `options.model_class`)."""
    kwargs = hub_kwargs(spec, needs_remote_code)
    model_class = spec.options.get("model_class")
    if model_class:
        loader = import_object(model_class)
    else:
        import transformers

        loader = getattr(transformers, auto_class)
    model = loader.from_pretrained(model_source(spec), dtype=torch_dtype(spec),
                                   use_safetensors=True, **kwargs)
    return model.to(spec.device).eval()


def load_hf_tokenizer(spec: BackboneSpec, needs_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    kwargs = hub_kwargs(spec, needs_remote_code)
    source = spec.options.get("tokenizer_path") or model_source(spec)
    if is_local(source):
        kwargs["local_files_only"] = True
        kwargs.pop("revision", None)
    return AutoTokenizer.from_pretrained(source, **kwargs)


def resolve_module(root: nn.Module, dotted: str) -> Any:
    """`root.a.b.0.c` by dotted path, with a clear error naming the missing piece."""
    node: Any = root
    walked = []
    for part in dotted.split("."):
        walked.append(part)
        try:
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise LookupError(f"module path '{dotted}' not found in {type(root).__name__} "
                              f"(failed at '{'.'.join(walked)}')") from None
    return node
