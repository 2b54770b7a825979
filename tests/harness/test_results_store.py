"""Results store: schema, atomic writes, a killed writer leaves no record, aggregation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from job_payloads import method_payload
REPO_ROOT = Path(__file__).resolve().parents[2]
from harness_records import make_record

from harness.results.aggregate import aggregate, find_records, runs_frame
from harness.results.record import Record
from harness.results.store import (RECORD_COLUMNS, RecordError, load_record, read_record,
                                   write_record)


@pytest.mark.parametrize("column", ["forget_logp_after", "extra_mem_bytes", "git_commit",
                                    "converged", "wall_clock_s"])
def test_schema_rejects_record_missing_a_column(tmp_path, record, column):
    del record[column]
    with pytest.raises(RecordError, match=f"'{column}' is a required property"):
        write_record(tmp_path / "r.json", record)
    assert not (tmp_path / "r.json").exists()


def test_schema_rejects_wrong_type_and_names_field(tmp_path, record):
    record["n_facts"] = "ten"
    with pytest.raises(RecordError, match=r"r\.json: invalid result record at 'n_facts'"):
        write_record(tmp_path / "r.json", record)


def test_round_trip(tmp_path, record):
    path = write_record(tmp_path / "a" / "b.json", record)
    assert read_record(path) == record
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]  # no temp file left


WRITER = textwrap.dedent("""
    import json, sys, time
    from harness import atomic
    from harness.results import store
    def slow_fsync(fd):  # the temp file holds the record, not yet renamed into place
        print("WRITING", flush=True)
        time.sleep(60)  # killed here, between writing and the rename
    atomic.os.fsync = slow_fsync
    record = json.loads(sys.argv[2])
    store.write_record(sys.argv[1], record)
""")


def test_killed_writer_leaves_no_record(tmp_path, record):
    target = tmp_path / "runs" / "bb" / "timerome" / "seed0.json"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), json.dumps(record)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not target.exists()
    assert find_records(tmp_path / "runs") == []  # the half-written temp file is not a record
    # Rerunning the job writes the record.
    write_record(target, record)
    assert find_records(tmp_path / "runs") == [target]


def test_exception_between_compute_and_write_leaves_no_record(tmp_path, record):
    from harness.jobs import run_method

    def failing_run(job):  # the job dies after computing, before the record is written
        raise RuntimeError("killed")

    job = method_payload("m", "d", str(tmp_path / "r.json"), "timerome")
    original = run_method.run
    run_method.run = failing_run
    try:
        with pytest.raises(RuntimeError, match="killed"):
            run_method.main(["--job", json.dumps(job)])
    finally:
        run_method.run = original
    assert not (tmp_path / "r.json").exists()


def test_aggregate_csv_has_required_columns(tmp_path, planted_records):
    paths = [write_record(tmp_path / f"{i}.json", r) for i, r in enumerate(planted_records)]
    frame = aggregate(paths)
    required = ["backbone", "method", "split", "n_facts", "seed", "estimator",
                "forget_logp_before", "forget_logp_after", "retain_logp_before",
                "retain_logp_after", "forget_rougeL_after", "retain_rougeL_after",
                "wall_clock_s", "peak_mem_bytes", "inference_mem_bytes", "extra_mem_bytes",
                "converged", "collapsed", "device", "git_commit", "forget_quality",
                "model_utility", "subject_source_given", "phase_edit_s"]
    assert frame.columns[:20].tolist() == required[:20]
    assert set(required) <= set(frame.columns)
    assert len(frame) == len(planted_records)
    out = tmp_path / "runs.csv"
    frame.to_csv(out, index=False)
    back = pd.read_csv(out)
    assert back.loc[back["method"] == "graddiff", "wall_clock_s"].item() == 16.0
    assert set(RECORD_COLUMNS) - set(back.columns) <= {"phase_seconds", "subject_source",
                                                       "fingerprint"}


def test_oom_record_is_valid_with_null_scores(tmp_path):
    rec = make_record()
    rec.update(status="oom", error="torch.OutOfMemoryError: CUDA out of memory",
               forget_logp_after=None, wall_clock_s=None, peak_mem_bytes=None,
               extra_mem_bytes=None, converged=None, collapsed=None)
    assert read_record(write_record(tmp_path / "oom.json", rec))["status"] == "oom"


def test_load_record_types_a_record_once(tmp_path, planted_records):
    path = write_record(tmp_path / "ga.json", planted_records[1])  # gradient_ascent, collapsed
    record = load_record(path)
    assert isinstance(record, Record)
    assert {k: v for k, v in record.to_dict().items() if k != "weights"} == read_record(path)
    assert record.collapsed is True and record.converged is True and record.steps == 20
    frame = runs_frame([record, Record.from_dict(dict(planted_records[0], converged=None))])
    flags = dict(zip(frame["method"], frame["converged"]))
    assert flags == {"gradient_ascent": True, "timerome": None}  # booleans, not text
    assert frame["wall_clock_s"].dtype.kind == "f"
