"""A workflow config as the workflow sees it, for code outside Snakemake (experiments/).

The workflow validates its config against `workflows/config/schema.json`, which fills every
optional key with its schema default (`snakemake.utils.validate(..., set_default=True)`):
the schema is the one place a workflow default is stated. `load_workflow_config` does the
same for a config file read outside the workflow, so an experiment never restates one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "workflows" / "config"
SCHEMA_PATH = WORKFLOW_DIR / "schema.json"
DEFAULT_CONFIG_PATH = WORKFLOW_DIR / "default.yaml"


def _filling(validator_class):
    """`validator_class` that also sets each missing property with a schema default."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, json.loads(json.dumps(sub["default"])))
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(validator_class, {"properties": properties})


def load_workflow_config(path: str | Path = DEFAULT_CONFIG_PATH) -> dict[str, Any]:
    """The config at `path` (YAML), validated against the workflow schema with every
    optional key filled with its schema default. Raises ValueError naming the file and the
    key path of the first invalid value."""
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = _filling(Draft202012Validator)(schema)
    error = next(iter(validator.iter_errors(config)), None)
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"{path}: invalid config at '{where}': {error.message}")
    return config
