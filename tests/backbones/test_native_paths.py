"""The paper path on every backbone: a tiny checkpoint in the upstream on-disk format
(config.json field names, sharded safetensors + index, tokenizer files) loads through the
real adapter (`<family>-hf`) with no network and no remote code, and runs trace, edit,
score and generate. Mask id, logit shift and hook path are the documented facts."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from harness.backbones import BackboneSpec, load_backbone
from harness.backbones.models.family import UnsupportedConfig
from harness.backbones.snapshot import INDEX_FILE, SnapshotError
from harness.data.fact import Fact, SubjectSource
from harness.diffusion.sampling import sample_answers
from harness.evaluation.answer_logprob import score_facts
from harness.methods import get_method
from harness.methods.base import EditRequest
from harness.timerome.config import TimeROMEConfig
from harness.timerome.tracing import trace_facts
from tests.backbones.twin_cases import CASE_IDS, CASES

FORGET = [Fact("Where was Zarvo Keth born?", "Zarvo Keth was born in Brimholt.", "Zarvo Keth",
               SubjectSource.GIVEN, 0, "forget01", 0),
          Fact("Which award did Oswin Tarr win?", "Oswin Tarr won the Grey Quill Prize.",
               "Oswin Tarr", SubjectSource.GIVEN, 1, "forget01", 1)]
EDIT = {"alpha": 50.0, "lam": 0.1, "times": [1.0], "noise_samples": 1, "target": "suppress",
        "flag_threshold": 0.0, "edit_flagged": True,
        "precondition": "none", "gate": False, "positions": "last_subject",
        "tie_facts": None}  # no retain facts (each fact's own TIE layer)


@dataclass(frozen=True)
class UpstreamFormat:
    """What each upstream ships: config.json fields/architectures, tokenizer files."""

    config_keys: tuple[str, ...]
    architectures: tuple[str, ...]
    tokenizer_files: tuple[str, ...]
    absent_files: tuple[str, ...] = ()


FORMATS = {
    "llada-twin": UpstreamFormat(("d_model", "n_heads", "n_layers", "mlp_hidden_size", "block_type",
                                  "mask_token_id", "weight_tying"), ("LLaDAModelLM",),
                                 ("tokenizer.json", "tokenizer_config.json")),
    "mmada-twin": UpstreamFormat(("d_model", "n_heads", "n_layers", "block_type"), (),
                                 ("tokenizer.json", "tokenizer_config.json")),
    "dream-twin": UpstreamFormat(("hidden_size", "num_attention_heads", "num_key_value_heads",
                                  "num_hidden_layers", "mask_token_id"), ("DreamModel",),
                                 ("vocab.json", "merges.txt", "tokenizer_config.json"),
                                 absent_files=("tokenizer.json",)),
    "diffullama-twin": UpstreamFormat(("hidden_size", "num_attention_heads", "num_hidden_layers"),
                                      ("LlamaForCausalLM",),
                                      ("tokenizer.json", "tokenizer_config.json")),
    "llada-moe-twin": UpstreamFormat(("hidden_size", "num_experts", "num_experts_per_tok",
                                      "expert_intermediate_size"), (),
                                     ("tokenizer.json", "tokenizer_config.json")),
}


@pytest.fixture(scope="module")
def snapshots(twins, tmp_path_factory):
    """case name -> folder of a sharded upstream-format snapshot of that twin."""
    root = tmp_path_factory.mktemp("snapshots")
    out = {}
    for case in CASES:
        twin = twins[case.name]
        total = sum(p.numel() * p.element_size() for p in twin.model.parameters())
        twin.save_pretrained(str(root / case.name), max_shard_bytes=total // 3)
        out[case.name] = root / case.name
    return out


def real(case, path, **fields) -> object:
    spec = BackboneSpec(name=case.name, adapter=case.real_adapter, path=str(path),
                        options={k: v for k, v in case.options.items()}, **fields)
    return load_backbone(spec)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_snapshot_is_in_the_upstream_on_disk_format(snapshots, case):
    folder = snapshots[case.name]
    fmt = FORMATS[case.adapter]
    config = json.loads((folder / "config.json").read_text())
    assert set(fmt.config_keys) <= set(config), sorted(set(fmt.config_keys) - set(config))
    if fmt.architectures:
        assert tuple(config["architectures"]) == fmt.architectures
    index = json.loads((folder / INDEX_FILE).read_text())
    assert len(set(index["weight_map"].values())) >= 2  # really sharded
    for name in fmt.tokenizer_files:
        assert (folder / name).is_file(), name
    for name in fmt.absent_files:
        assert not (folder / name).exists(), name


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_real_adapter_loads_the_snapshot_and_runs_trace_edit_score_generate(
        twins, snapshots, case, no_network):
    twin = twins[case.name]
    backbone = real(case, snapshots[case.name])
    # Documented facts: the same mask id, shift and hook module as the twin it was written from.
    assert backbone.mask_token_id == twin.mask_token_id
    assert backbone.mask_token.source == "checkpoint config.json" or case.adapter == "diffullama-twin"
    assert backbone.shifted_logits == case.shifted
    assert backbone.mlp_out_proj_path(1) == case.real_path.format(layer=1)
    ids = torch.tensor([backbone.encode_qa(backbone.format_prompt(f.question), f.answer)[0]
                        for f in FORGET[:1]])
    with torch.no_grad():
        # The same weights give the same logits up to float rounding: with 8 small experts
        # a kernel may take another path on the loaded tensors' memory layout (3e-8 seen).
        torch.testing.assert_close(backbone.logits(ids), twin.logits(ids), rtol=0, atol=1e-6)

    trace = trace_facts(backbone, FORGET, TimeROMEConfig(times=(1.0,), noise_samples=1,
                                                         tie_facts=None))
    assert trace.tie.shape[0] == len(FORGET) and torch.isfinite(trace.max_tie).all()
    before = score_facts(backbone, FORGET).logp
    outcome = get_method("timerome", EDIT).apply(
        EditRequest(backbone=backbone, forget=FORGET, retain=[], seed=0))
    try:
        edited = score_facts(outcome.backbone, FORGET).logp
        answers = sample_answers(outcome.backbone, FORGET, steps=4)
    finally:
        outcome.undo()
    assert torch.isfinite(before).all() and torch.isfinite(edited).all()
    assert (edited - before).abs().max().item() > 1e-3
    assert len(answers.texts) == len(FORGET)
    for row in answers.token_ids:
        assert max(row) < backbone.emittable_vocab_size


def test_revision_and_config_hashes_are_recorded_from_a_cache_snapshot(twins, tmp_path, monkeypatch,
                                                                        no_network):
    sha = "a" * 40
    repo = tmp_path / "hub" / "models--GSAI-ML--LLaDA-8B-Base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    twins["llada-8b-base-twin"].save_pretrained(str(repo / "snapshots" / sha))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = BackboneSpec(name="llada", adapter="llada-hf", hf_id="GSAI-ML/LLaDA-8B-Base")
    backbone = load_backbone(spec)
    ident = backbone.identity()
    assert ident["snapshot_revision"] == sha
    assert len(ident["config_sha256"]) == 64 and len(ident["index_sha256"]) == 64
    with pytest.raises(SnapshotError, match=f"pins revision {'b' * 40}"):
        load_backbone(BackboneSpec(name="llada", adapter="llada-hf",
                                   path=str(repo / "snapshots" / sha), revision="b" * 40))


def test_missing_model_in_cache_says_how_to_get_it(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(SnapshotError, match="not in the local Hugging Face cache.*hf download"):
        load_backbone(BackboneSpec(name="x", adapter="dream-hf", hf_id="Dream-org/Dream-v0-Base-7B"))


UNSUPPORTED = {
    "llada-8b-base-twin": ("block_type", "sequential"),
    "mmada-8b-twin": ("alibi", True),
    "dream-7b-twin": ("use_sliding_window", True),
    "diffullama-7b-twin": ("tie_word_embeddings", True),
    "llada-moe-twin": ("clip_qkv", 8.0),
}


@pytest.mark.parametrize("case", [c for c in CASES if c.name in UNSUPPORTED],
                         ids=[c.name for c in CASES if c.name in UNSUPPORTED])
def test_unsupported_config_value_fails_with_the_named_error(snapshots, case, tmp_path):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(snapshots[case.name], folder)
    config = json.loads((folder / "config.json").read_text())
    field, value = UNSUPPORTED[case.name]
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfig, match=rf"'{field}'") as info:
        real(case, folder)
    assert str(folder / "config.json") in str(info.value)


def test_pickle_weights_are_refused_by_name(snapshots, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(snapshots["llada-8b-base-twin"], folder)
    for f in folder.glob("model*.safetensors*"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(SnapshotError, match="pytorch_model.bin: pickle weights are never loaded"):
        real(CASES[0], folder)


def test_missing_tensor_and_wrong_shape_are_named(snapshots, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(snapshots["dream-7b-twin"], folder)
    index = json.loads((folder / INDEX_FILE).read_text())
    shard = folder / sorted(set(index["weight_map"].values()))[-1]
    tensors = load_file(str(shard))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key][..., :1].contiguous()
    save_file(tensors, str(shard))
    with pytest.raises(SnapshotError, match=rf"'{key}' has shape"):
        real(CASES[3], folder)
    del tensors[key]
    save_file(tensors, str(shard))
    with pytest.raises(SnapshotError, match=rf"no tensor in the snapshot: .*{key}"):
        real(CASES[3], folder)


def test_answer_ids_come_from_the_joint_encoding_no_stray_sentencepiece_token():
    """LLaMA-2's SentencePiece (Metaspace) tokenizer: encoding ' ' + answer alone yields a
    lone '▁' token the trained text never has; splitting prompt + answer by offsets does not."""
    from types import SimpleNamespace

    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    from harness.backbones.base import Backbone

    texts = ["Question: Where was Zarvo Keth born?\nAnswer: Zarvo Keth was born in Brimholt."] * 8
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    # LLaMA-2's fast tokenizer: prepend '▁', spaces -> '▁', BPE over the whole text.
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=120, special_tokens=[
        "<unk>", "<s>", "</s>"], max_token_length=6, show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", bos_token="<s>")
    fake = SimpleNamespace(tokenizer=tok, add_special_tokens=False, answer_prefix=" ",
                           answer_suffix="", name="sp")
    prompt, answer = "Question: Where was Zarvo Keth born?\nAnswer:", "Zarvo Keth was born in Brimholt."
    alone = tok(" " + answer, add_special_tokens=False)["input_ids"]
    whole = tok(prompt + " " + answer, add_special_tokens=False)["input_ids"]
    prompt_ids, _, answer_ids = Backbone.encode_qa(fake, prompt, answer)
    assert prompt_ids + answer_ids == whole  # exactly the trained text's ids
    assert alone != answer_ids  # the separate encoding differs (the stray '▁' piece)
    assert "".join(tok.convert_ids_to_tokens(answer_ids)).replace("▁", " ").strip() == answer


def test_check_command_reports_what_the_harness_relies_on(snapshots, capsys, no_network):
    from harness.backbones.check import main

    assert main(["check", str(snapshots["dream-7b-twin"]), "--adapter", "dream-hf", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mask_token_id"] > 0 and report["mask_token_source"] == "checkpoint config.json"
    assert report["shifted_logits"] is True
    assert report["hook_paths"] == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert report["forward_finite"] and report["answer_round_trip"]
    assert report["parameters"] > 0 and report["dtype"] == "float32"
    assert main(["check", str(snapshots["dream-7b-twin"]), "--adapter", "llada-hf"]) == 1
    assert "config.json" in capsys.readouterr().err


def test_sampler_never_emits_ids_the_tokenizer_cannot_decode(twins, monkeypatch):
    """Dream's embedding has more rows (152064) than its tokenizer has tokens: the padded
    rows must never be sampled, however likely the model makes them."""
    backbone = twins["dream-7b-twin"]
    raw = backbone.raw_logits

    def padded(ids, attention_mask=None):
        out = raw(ids, attention_mask)
        return torch.cat([out, torch.full((*out.shape[:-1], 8), 100.0)], dim=-1)

    monkeypatch.setattr(backbone, "raw_logits", padded)
    generation = sample_answers(backbone, FORGET, steps=4)
    assert all(max(row) < len(backbone.tokenizer) for row in generation.token_ids)
