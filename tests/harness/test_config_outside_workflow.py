"""harness.workflow_config: a config read outside Snakemake gets the schema's defaults."""

import json

import pytest
import yaml

from harness.workflow_config import DEFAULT_CONFIG_PATH, SCHEMA_PATH, load_workflow_config

SCHEMA = json.loads(SCHEMA_PATH.read_text())
DATA_PROPS = SCHEMA["properties"]["data"]["properties"]


def test_default_config_gets_the_schema_defaults_it_leaves_out():
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert "retain_eval_size" not in raw["data"]  # stated in the schema only
    cfg = load_workflow_config()
    for key in ("retain_eval_size", "retain_train_size", "eval_seed"):
        assert cfg["data"][key] == DATA_PROPS[key]["default"]
    # nested objects created from a default get their own defaults too
    batch = SCHEMA["properties"]["evaluation"]["properties"]["batch_size"]["default"]
    assert cfg["evaluation"]["batch_size"] == batch


def test_values_set_in_the_file_win(tmp_path):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["data"]["retain_eval_size"] = 7
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_workflow_config(path)["data"]["retain_eval_size"] == 7


def test_invalid_value_names_file_and_key(tmp_path):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["data"]["retain_eval_size"] = "forty"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"bad\.yaml: invalid config at 'data\.retain_eval_size'"):
        load_workflow_config(path)
