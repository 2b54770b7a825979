"""`harness.results.record.Record` and `record.schema.json` describe the same record."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from harness_records import make_record

from harness.results.record import OMITTED_WHEN_NONE, Record
from harness.results.store import record_schema, validate_record

# JSON schema type -> the Python type a Record field holds for it
PY_TYPES = {"number": float, "integer": int, "string": str, "boolean": bool, "object": dict,
            "array": list, "null": type(None)}


def schema_types(prop: dict, defs: dict) -> set[type]:
    if "$ref" in prop:
        prop = defs[prop["$ref"].rsplit("/", 1)[1]]
    if "const" in prop:
        return {type(prop["const"])}
    if "enum" in prop:
        return {type(v) for v in prop["enum"]}
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    return {PY_TYPES[k] for k in kinds}


def field_types(hint) -> set[type]:
    args = typing.get_args(hint)
    if type(hint) is typing.types.UnionType or typing.get_origin(hint) is typing.Union:
        return set().union(*(field_types(a) for a in args))
    return {typing.get_origin(hint) or hint}


def test_fields_match_the_schema_properties_required_and_types():
    schema = record_schema()
    hints = typing.get_type_hints(Record)
    fields = {f.name: f for f in dataclasses.fields(Record)}
    assert set(fields) == set(schema["properties"])
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING}
    assert required == set(schema["required"])
    for name, prop in schema["properties"].items():
        expected = schema_types(prop, schema["$defs"])
        if name not in required and type(None) not in expected:
            assert name in OMITTED_WHEN_NONE, name  # written only when given
            expected |= {type(None)}
        assert field_types(hints[name]) == expected, name
    nullable = {n for n, p in schema["properties"].items()
                if type(None) in schema_types(p, schema["$defs"])}
    assert OMITTED_WHEN_NONE == set(fields) - required - nullable


def test_round_trip_keeps_json_types(record):
    typed = Record.from_dict(record)
    assert typed.converged is True and typed.collapsed is False  # booleans, not strings
    out = typed.to_dict()
    validate_record(out)
    assert {k: v for k, v in out.items() if k in record} == record


def test_optional_fields_without_null_are_left_out_when_unset(record):
    typed = Record.from_dict(record)
    typed.curve = None
    assert "curve" not in typed.to_dict()
    typed.curve = [{"n_inserted": 1}]
    assert typed.to_dict()["curve"] == [{"n_inserted": 1}]


def test_a_wrong_type_is_refused_by_the_schema(record):
    typed = Record.from_dict(record)
    typed.converged = "True"  # a flag parsed from text would be refused
    with pytest.raises(ValueError, match="converged"):
        validate_record(typed.to_dict())
