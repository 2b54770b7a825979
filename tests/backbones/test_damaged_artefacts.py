"""Damaged artefacts give ONE named error (`DamagedArtefact`: the file and what is wrong),
and a checkpoint saved by the harness carries a content manifest the loader verifies."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from harness.artefacts import CONTENT_FILE, DamagedArtefact
from harness.backbones import BackboneSpec, load_backbone
from harness.backbones import snapshot as snapshot_module
from harness.backbones.snapshot import INDEX_FILE, WEIGHTS_FILE
from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import EditMemory
from tests.backbones.twin_cases import CASES

LLADA = CASES[0]
DREAM = next(c for c in CASES if c.adapter == "dream-twin")
DIFFERS = "content differs from the manifest written when it was saved: edited or truncated"


def load(case, folder):
    return load_backbone(BackboneSpec(name=case.name, adapter=case.real_adapter, path=str(folder),
                                      options=dict(case.options)))


@pytest.fixture(scope="module")
def saved(twins, tmp_path_factory):
    """Single-file llada snapshot, sharded llada snapshot, dream (vocab.json + merges.txt)."""
    root = tmp_path_factory.mktemp("damaged")
    llada = twins[LLADA.name]
    llada.save_pretrained(str(root / "single"))
    total = sum(p.numel() * p.element_size() for p in llada.model.parameters())
    llada.save_pretrained(str(root / "sharded"), max_shard_bytes=total // 3)
    twins[DREAM.name].save_pretrained(str(root / "dream"))
    return root


def copy(saved, tmp_path, which: str = "single"):
    folder = tmp_path / which
    shutil.copytree(saved / which, folder)
    return folder


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def first_shard(folder):
    index = json.loads((folder / INDEX_FILE).read_text())
    return folder / sorted(set(index["weight_map"].values()))[0]


# ---- truncated files: one DamagedArtefact naming the file ---------------------------------
TRUNCATED = [("single", WEIGHTS_FILE), ("single", "config.json"), ("single", "tokenizer.json"),
             ("single", "tokenizer_config.json"), ("single", "special_tokens_map.json"),
             ("sharded", INDEX_FILE), ("sharded", "shard"), ("dream", "vocab.json"),
             ("dream", "merges.txt")]


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "hub-like"])
@pytest.mark.parametrize("which,name", TRUNCATED, ids=[f"{w}-{n}" for w, n in TRUNCATED])
def test_truncated_file_is_named(saved, tmp_path, which, name, manifest):
    folder = copy(saved, tmp_path, which)
    path = first_shard(folder) if name == "shard" else folder / name
    if name == "merges.txt":  # cut inside a line (a cut right after a newline looks complete)
        data = path.read_bytes()
        path.write_bytes(data[:data.rindex(b"\n", 0, len(data) // 2) + 3])
    else:
        truncate(path)
    if not manifest:
        (folder / CONTENT_FILE).unlink()
    case = DREAM if which == "dream" else LLADA
    with pytest.raises(DamagedArtefact) as info:
        load(case, folder)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.what


def test_safetensors_header_cut_short_is_named(saved, tmp_path):
    folder = copy(saved, tmp_path)
    path = folder / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:20])  # inside the header
    with pytest.raises(DamagedArtefact, match="truncated") as info:
        load(LLADA, folder)
    assert info.value.path == str(path)


# ---- the content manifest ----------------------------------------------------------------
def test_save_writes_a_manifest_of_every_file(saved):
    for which in ("single", "sharded", "dream"):
        folder = saved / which
        manifest = json.loads((folder / CONTENT_FILE).read_text())
        files = manifest["files"]
        on_disk = {p.name for p in folder.iterdir() if p.is_file() and p.name != CONTENT_FILE}
        assert set(files) == on_disk
        assert "config.json" in files and "tokenizer_config.json" in files
        for name, entry in files.items():
            data = (folder / name).read_bytes()
            assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # what saved it: the workflow-free way to know the adapter of a checkpoint
    backbone = json.loads((saved / "dream" / CONTENT_FILE).read_text())["backbone"]
    assert backbone["adapter"] == DREAM.adapter and backbone["name"] == DREAM.name


def _flip_low_weight_byte(path) -> None:
    """Change one byte of the first float32 weight (its lowest mantissa byte: the value stays
    finite, the size is unchanged, the file parses)."""
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_config(folder) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["rope_theta"] = 10000.0
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def _edit_tokenizer(folder) -> None:
    data = json.loads((folder / "tokenizer.json").read_text())
    (folder / "tokenizer.json").write_text(json.dumps(data, indent=1))


EDITS = {WEIGHTS_FILE: lambda f: _flip_low_weight_byte(f / WEIGHTS_FILE),
         "config.json": _edit_config, "tokenizer.json": _edit_tokenizer}


@pytest.mark.parametrize("name", list(EDITS))
def test_edited_file_is_detected(saved, tmp_path, name):
    folder = copy(saved, tmp_path)
    EDITS[name](folder)
    with pytest.raises(DamagedArtefact) as info:
        load(LLADA, folder)
    assert info.value.path == str(folder / name)
    assert DIFFERS in str(info.value)


def test_without_manifest_there_is_no_check(saved, tmp_path):
    """A checkpoint from elsewhere (e.g. a hub snapshot) has no manifest: it loads."""
    folder = copy(saved, tmp_path)
    EDITS[WEIGHTS_FILE](folder)
    (folder / CONTENT_FILE).unlink()
    load(LLADA, folder)


def test_large_files_are_checked_by_size_unless_asked(saved, tmp_path, monkeypatch):
    folder = copy(saved, tmp_path)
    EDITS[WEIGHTS_FILE](folder)  # same size, different bytes
    monkeypatch.setattr(snapshot_module, "VERIFY_HASH_MAX_BYTES", 1024)
    load(LLADA, folder)  # the weights file is above the threshold: its hash is skipped
    monkeypatch.setenv("HARNESS_VERIFY_CONTENT", "all")
    with pytest.raises(DamagedArtefact, match="content differs"):
        load(LLADA, folder)
    monkeypatch.delenv("HARNESS_VERIFY_CONTENT")
    _edit_tokenizer(folder)  # still valid, above the threshold, another size: detected
    with pytest.raises(DamagedArtefact, match="content differs") as info:
        load(LLADA, folder)
    assert info.value.path == str(folder / "tokenizer.json")


def test_missing_listed_file_is_named(saved, tmp_path):
    folder = copy(saved, tmp_path)
    (folder / "special_tokens_map.json").unlink()
    with pytest.raises(DamagedArtefact, match="missing") as info:
        load(LLADA, folder)
    assert info.value.path == str(folder / "special_tokens_map.json")


def test_unreadable_manifest_is_named(saved, tmp_path):
    folder = copy(saved, tmp_path)
    truncate(folder / CONTENT_FILE)
    with pytest.raises(DamagedArtefact) as info:
        load(LLADA, folder)
    assert info.value.path == str(folder / CONTENT_FILE)


def test_saved_checkpoint_round_trips(saved, twins):
    backbone = load(LLADA, saved / "sharded")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(backbone.logits(ids), twins[LLADA.name].logits(ids))


# ---- the edit memory --------------------------------------------------------------------
@pytest.fixture
def memory_file(saved, tmp_path):
    backbone = load(LLADA, saved / "single")
    proj = backbone.mlp_out_proj(1)
    gen = torch.Generator().manual_seed(0)
    # the plain memory: no retain covariance or gate statistics to save
    memory = EditMemory(TimeROMEConfig(precondition="none", gate=False), backbone.identity())
    memory.insert(1, torch.randn((2, proj.in_features), generator=gen),
                  torch.randn((2, proj.out_features), generator=gen), ["a", "b"])
    return memory.save(tmp_path / "memory.safetensors"), backbone


def test_memory_round_trips(memory_file):
    path, backbone = memory_file
    memory = EditMemory.load(path, backbone)
    assert memory.n_facts == 2
    memory.detach()


@pytest.mark.parametrize("keep", [0.5, 0.02], ids=["data", "header"])
def test_truncated_memory_is_named(memory_file, keep):
    path, backbone = memory_file
    truncate(path, keep)
    with pytest.raises(DamagedArtefact) as info:
        EditMemory.load(path, backbone)
    assert info.value.path == str(path)


def test_edited_memory_is_detected(memory_file):
    path, backbone = memory_file
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a byte of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedArtefact, match="content differs") as info:
        EditMemory.load(path, backbone)
    assert info.value.path == str(path)
