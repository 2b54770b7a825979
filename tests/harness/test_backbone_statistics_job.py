"""The backbone_statistics job and the edit jobs that load its files, end to end on a tiny
twin: same record scores as an edit that computes the statistics itself, their forwards
leave the edit, and a file of another seed stops the edit job before any scoring."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from harness.backbone_statistics import StaleStatistics
from harness.jobs import backbone_statistics, run_method
from harness.jobs.spec import MethodJob
from harness.results.store import read_record
from job_payloads import method_payload, write_tiny_setup

SCORES = ("forget_logp_before", "forget_logp_after", "retain_logp_before", "retain_logp_after")
CONFIGS = {"timerome": {"alpha": 2.0, "noise_samples": 2, "times": [1.0, 0.5]},
           "memit": {"v_steps": 3, "cov_facts": 16}}
NO_QUALITY = {"rouge": False, "forget_quality": False, "model_utility": False}


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats_job")
    return root, write_tiny_setup(root)


def job(root, tofu, method, out, **kw) -> MethodJob:
    return MethodJob.from_dict(method_payload(str(root / "model"), str(tofu), str(out), method,
                                              method_config=CONFIGS[method],
                                              evaluation=NO_QUALITY, **kw))


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_an_edit_job_from_the_statistics_file_matches_one_that_computes_them(tiny_setup,
                                                                              method):
    root, tofu = tiny_setup
    stats = root / f"{method}.safetensors"
    stats_job = job(root, tofu, method, stats)
    payload = {"methods": [asdict(stats_job)]}
    assert backbone_statistics.main(["--job", json.dumps(payload)]) == 0
    plain = job(root, tofu, method, root / f"{method}-plain.json")
    loaded = job(root, tofu, method, root / f"{method}-loaded.json", statistics=str(stats))
    for j in (plain, loaded):
        assert run_method.main(["--job", json.dumps(asdict(j))]) == 0
    a, b = read_record(plain.out), read_record(loaded.out)
    assert [a[k] for k in SCORES] == [b[k] for k in SCORES]
    assert b["details"]["notes"]["statistics"] == str(stats)
    assert b["statistics_s"] > 0 and "statistics_s" not in a  # one-time cost, own field
    # the retain forwards of the statistics left the edit (counted by harness.compute)
    assert b["edit_forward_tokens"] < a["edit_forward_tokens"]


def test_a_statistics_file_of_another_seed_stops_the_edit_job(tiny_setup):
    root, tofu = tiny_setup
    stats = root / "seed1.safetensors"
    payload = {"methods": [asdict(job(root, tofu, "memit", stats, seed=1))]}
    assert backbone_statistics.main(["--job", json.dumps(payload)]) == 0
    out = root / "stale.json"
    with pytest.raises(StaleStatistics, match="seed=1, this edit has 0"):
        run_method.main(["--job", json.dumps(asdict(job(root, tofu, "memit", out,
                                                        statistics=str(stats))))])
    assert not out.exists()


def test_a_statistics_job_for_a_method_without_statistics_fails_by_name(tiny_setup, capsys):
    root, tofu = tiny_setup
    ga = MethodJob.from_dict(method_payload(str(root / "model"), str(tofu),
                                            str(root / "ga.safetensors"), "gradient_ascent"))
    assert backbone_statistics.main(["--job", json.dumps({"methods": [asdict(ga)]})]) == 2
    assert "gradient_ascent declare no per-backbone statistics" in capsys.readouterr().err
