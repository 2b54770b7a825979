"""The sequential-insertion job end to end on a tiny random twin: one curve point per
evaluation, deltas against the unedited model, the record valid; a bad job exits 2."""

from __future__ import annotations

import json

import pytest
from job_payloads import sequential_payload, write_tiny_setup

from harness.jobs import sequential
from harness.results.store import read_record

# One tracing level: seconds, not minutes. Each fact at its own TIE layer: the twin has random
# weights, so no layer profile of other (retain) facts says where these facts live.
FAST = {"times": [1.0], "noise_samples": 1, "tie_facts": None}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequential")
    tofu = write_tiny_setup(root)
    return root, tofu


def test_sequential_record_has_one_curve_point_per_evaluation(tiny):
    root, tofu = tiny
    out = root / "runs" / "seq.json"
    tuned = root / "tuning.json"
    tuned.write_text(json.dumps({"chosen": {"alpha": 16.0, "lam": 1.0, "q": 1.0}}))
    job = sequential_payload(str(root / "model"), str(tofu), str(out), n_facts=4,
                             eval_every=3, method_config=FAST, tuned_config=str(tuned))
    assert sequential.main(["--job", json.dumps(job)]) == 0
    record = read_record(out)  # schema-valid, strict JSON
    assert record["experiment"] == "sequential" and record["method"] == "timerome"
    assert record["n_facts"] == 4 and record["split"] == "full[-4:]"
    assert record["n_retain_eval"] == 4
    curve = record["curve"]
    assert [p["n_inserted"] for p in curve] == [3, 4]  # every 3rd insertion and the last
    last = curve[-1]
    assert record["retain_logp_after"] == last["retain_logp"]
    assert last["retain_delta"] == pytest.approx(
        record["retain_logp_after"] - record["retain_logp_before"])
    assert record["forget_logp_after"] == pytest.approx(
        record["forget_logp_before"] + last["forget_delta"])
    assert last["forget_delta"] < 0  # the inserted facts are forgotten
    # The tuning record's chosen point is applied on top of the method config.
    assert record["method_config"]["alpha"] == 16.0
    assert record["method_config"]["times"] == [1.0]
    assert record["wall_clock_s"] >= sum(p["insert_s"] for p in curve)  # all 4 insertions
    # the retain statistics are computed once before the first insertion, outside its time
    assert record["statistics_s"] > 0 and "statistics" in record["phase_seconds"]


def test_sequential_job_without_batch_size_exits_2_naming_it(tiny, capsys):
    root, tofu = tiny
    job = sequential_payload(str(root / "model"), str(tofu), str(root / "bad.json"))
    del job["batch_size"]
    with pytest.raises(SystemExit) as info:
        sequential.main(["--job", json.dumps(job)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: SequentialJob job description has missing field(s): batch_size")
    assert not (root / "bad.json").exists()


@pytest.mark.parametrize("method, message", [
    ("memit", "error: method 'memit' does not insert facts one at a time "
              "(MethodInfo.sequential); methods that do: timerome"),
    ("timerom", "error: unknown method 'timerom' (did you mean 'timerome'?)")])
def test_a_method_that_does_not_insert_one_at_a_time_exits_2(tiny, capsys, method, message):
    root, tofu = tiny
    job = sequential_payload(str(root / "model"), str(tofu), str(root / "m.json"),
                             method=method)
    assert sequential.main(["--job", json.dumps(job)]) == 2
    assert capsys.readouterr().err.strip().startswith(message)
    assert not (root / "m.json").exists()
