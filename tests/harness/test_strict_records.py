"""Records and atomic JSON files are strict JSON: a NaN or an infinity is an error naming the
file and the key path holding it, and nothing is written."""

from __future__ import annotations

import json
import math

import pytest
from harness_records import make_record

from harness.atomic import NonFiniteJSONError, non_finite_paths, write_json_atomic
from harness.results.aggregate import aggregate
from harness.results.store import RecordError, read_record, write_record


def no_files(directory) -> bool:
    return sorted(p.name for p in directory.iterdir()) == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_record_with_a_non_finite_score_is_refused(tmp_path, record, value):
    record["forget_logp_after"] = value
    target = tmp_path / "r.json"
    with pytest.raises(RecordError) as info:
        write_record(target, record)
    assert str(info.value) == (f"{target}: invalid result record at 'forget_logp_after': "
                               f"non-finite number {value!r} (JSON has no NaN or Infinity)")
    assert no_files(tmp_path)  # neither the record nor a temporary


def test_nested_non_finite_value_is_named_by_its_key_path(tmp_path, record):
    record["details"] = {"trace": [0.5, math.nan], "ok": 1.0}
    target = tmp_path / "r.json"
    with pytest.raises(RecordError, match=r"r\.json: invalid result record at "
                                          r"'details/trace/1': non-finite number nan"):
        write_record(target, record)
    assert no_files(tmp_path)


def test_record_with_a_nan_literal_is_refused_on_read(tmp_path, record):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(dict(record, wall_clock_s=math.nan)))  # the old writer's output
    assert "NaN" in path.read_text()
    with pytest.raises(RecordError, match=r"r\.json: invalid result record at 'wall_clock_s': "
                                          r"non-finite number nan"):
        read_record(path)
    with pytest.raises(RecordError, match="wall_clock_s"):
        aggregate([path])


def test_write_json_atomic_is_strict(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(NonFiniteJSONError) as info:
        write_json_atomic(target, {"a": {"b": [1.0, math.inf]}, "c": math.nan})
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (f"{target}: non-finite number inf at 'a/b/1' "
                               "(JSON has no NaN or Infinity); also at 'c'")
    assert no_files(tmp_path)


def test_write_json_atomic_keeps_finite_payloads(tmp_path):
    payload = {"x": [1, 2.5, None, {"y": -0.0}], "z": "NaN"}
    path = write_json_atomic(tmp_path / "ok.json", payload)
    assert json.loads(path.read_text()) == payload


def test_non_finite_paths_walks_mappings_and_sequences():
    payload = {"a": [1.0, {"b": math.nan}], "c": (math.inf,), "d": "inf", "e": 3}
    found = non_finite_paths(payload)
    assert [path for path, _ in found] == ["a/1/b", "c/0"]
    assert math.isnan(found[0][1]) and found[1][1] == math.inf


def test_round_trip_still_works(tmp_path):
    record = make_record()
    assert read_record(write_record(tmp_path / "r.json", record)) == record
