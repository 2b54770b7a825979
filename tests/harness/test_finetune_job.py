"""The fine-tuning job end to end on a tiny twin (one epoch): a loadable checkpoint; a bad
finetune config or a missing job field exits 2 naming it."""

from __future__ import annotations

import json

import pytest
from job_payloads import TINY_ENTRY, finetune_payload

from harness.data import write_synthetic
from harness.jobs import finetune_backbone


@pytest.fixture(scope="module")
def tofu(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("finetune") / "data", authors=10,
                           facts_per_author=3, seed=1)


def test_finetune_job_writes_a_loadable_checkpoint(tofu, tmp_path, capsys):
    from harness.backbones.registry import load_backbone
    from harness.jobs.spec import backbone_spec

    entry = {**TINY_ENTRY, "finetune": {"epochs": 1, "batch_size": 8, "seed": 0}}
    out = tmp_path / "retain"
    job = finetune_payload(str(tofu), str(out), backbone_entry=entry,
                           exclude_splits=["forget10"])
    assert finetune_backbone.main(["--job", json.dumps(job)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["backbone"] == "tiny" and summary["checkpoint"] == str(out)
    assert summary["final_loss"] > 0
    backbone = load_backbone(backbone_spec("tiny", TINY_ENTRY, str(out)))
    assert backbone.identity()  # the checkpoint loads


def test_bad_finetune_config_exits_2_naming_the_key(tofu, tmp_path, capsys):
    entry = {**TINY_ENTRY, "finetune": {"epochz": 1}}
    job = finetune_payload(str(tofu), str(tmp_path / "m"), backbone_entry=entry)
    assert finetune_backbone.main(["--job", json.dumps(job)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: backbone 'tiny': bad finetune config:") and "epochz" in err
    assert not (tmp_path / "m").exists()


def test_finetune_job_without_exclude_splits_exits_2(tofu, tmp_path, capsys):
    job = finetune_payload(str(tofu), str(tmp_path / "m"))
    del job["exclude_splits"]
    with pytest.raises(SystemExit) as info:
        finetune_backbone.main(["--job", json.dumps(job)])
    assert info.value.code == 2
    assert "FinetuneJob job description has missing field(s): exclude_splits" in \
        capsys.readouterr().err
