"""Each method's defaults are stated once (harness/methods/defaults/<method>.yaml) and the
typed configs, the CLI and the methods run exactly those."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from baselines.configs import (CONTEXT_KEYS, DEFAULT_MOM2_RATIO, VALUE_KEYS, ContextConfig,
                               EditConfig, TrainingConfig, _check_keys, parse_edit_config)
from baselines.graddiff_config import GradDiffConfig, parse_graddiff
from baselines.npo_config import NPOConfig, parse_npo
from harness.methods.base import MethodConfigError
from harness.methods.defaults import learning_rate, method_defaults
from harness.methods.registry import BUILTIN_METHOD_INFO, validate_method_config
from harness.timerome.config import TimeROMEConfig


def test_timerome_config_defaults_are_its_yaml():
    assert TimeROMEConfig().to_dict() == method_defaults("timerome")


def test_cli_and_method_run_the_default_variant():
    from harness.timerome.cli import build_parser, timerome_config
    from harness.timerome.method import TimeROMEMethod

    args = build_parser().parse_args(["forget", "--backbone-dir", "m", "--facts", "f",
                                      "--out", "o"])
    assert timerome_config(args) == TimeROMEConfig() == TimeROMEMethod({}).timerome_config()
    flags = build_parser().parse_args(["forget", "--backbone-dir", "m", "--facts", "f",
                                       "--out", "o", "--precondition", "none", "--no-gate",
                                       "--positions", "last_subject"])
    assert timerome_config(flags) == TimeROMEConfig(precondition="none", gate=False,
                                                    positions="last_subject")


def test_baseline_configs_read_their_yaml():
    loop = method_defaults("gradient_loop")
    assert TrainingConfig().__dict__ == loop
    # Each gradient method's own keys: its YAML's `config`, read by its own dataclass.
    assert GradDiffConfig().__dict__ == {k: v for k, v in method_defaults("graddiff").items()
                                         if k not in loop} == {"gamma": 1.0, "alpha": 1.0}
    assert NPOConfig().__dict__ == {k: v for k, v in method_defaults("npo").items()
                                    if k not in loop}
    assert set(NPOConfig().__dict__) == {"beta", "alpha"}
    edit = method_defaults("weight_edit")
    parsed = parse_edit_config({}, "rome", ("layer",))
    assert parsed == EditConfig(ContextConfig(), parsed.values)
    assert {k: getattr(parsed.contexts, f) for k, f in CONTEXT_KEYS.items()} == \
        {k: tuple(edit[k]) if isinstance(edit[k], list) else edit[k] for k in CONTEXT_KEYS}
    assert {k: getattr(parsed.values, f) for k, f in VALUE_KEYS.items()} == \
        {k: edit[k] for k in VALUE_KEYS}
    assert (parsed.cov_facts, parsed.cov_ridge) == (edit["cov_facts"], edit["cov_ridge"])
    assert DEFAULT_MOM2_RATIO == method_defaults("memit")["mom2_ratio"]


def test_gradient_configs_split_loop_and_own_keys_and_check_them():
    train, own = parse_npo({"beta": 0.5, "max_steps": 7})
    assert (own, train.max_steps) == (NPOConfig(beta=0.5), 7)
    train, own = parse_graddiff({"alpha": 0.0})
    assert (own, train) == (GradDiffConfig(alpha=0.0), TrainingConfig())
    with pytest.raises(MethodConfigError, match=r"npo: beta must be > 0, got 0") as err:
        parse_npo({"beta": 0})
    assert err.value.key == "beta"
    with pytest.raises(MethodConfigError, match=r"graddiff: gamma must be a finite number"):
        parse_graddiff({"gamma": float("nan")})
    with pytest.raises(MethodConfigError, match=r"unknown config key\(s\) beta"):
        parse_graddiff({"beta": 1.0})  # NPO's key is not GradDiff's


@pytest.mark.parametrize("name", sorted(BUILTIN_METHOD_INFO))
def test_every_methods_defaults_are_a_config_it_accepts(name):
    defaults = method_defaults(name)
    validate_method_config(name, defaults)
    defaults["not_a_key"] = 1  # a fresh dict: the cached file is not changed
    assert "not_a_key" not in method_defaults(name)


def test_a_defaults_file_that_misses_or_adds_a_key_is_refused():
    with pytest.raises(ValueError, match=r"gradient_loop.yaml and the config keys differ: "
                                         r"\['lr'\]"):
        _check_keys("gradient_loop", {k: v for k, v in method_defaults("gradient_loop").items()
                                      if k != "lr"}, TrainingConfig.__dataclass_fields__)
    with pytest.raises(KeyError, match="no defaults file 'timeromee.yaml'"):
        method_defaults("timeromee")


@pytest.mark.parametrize("method", ["gradient_ascent", "graddiff", "npo"])
def test_default_learning_rate_follows_where_the_backbone_was_trained(method):
    from baselines.training import default_lr

    here = default_lr(SimpleNamespace(trained_here=True), method)
    hub = default_lr(SimpleNamespace(trained_here=False), method)
    assert here == learning_rate(method, True) and hub == learning_rate(method, False)
    assert here != hub


def test_every_adapter_states_whether_it_is_trained_here():
    from harness.backbones.native import PretrainedBackbone, TwinBackbone
    from harness.backbones.registry import adapter_class, adapter_names

    for key in adapter_names():
        cls = adapter_class(key)
        assert isinstance(cls.trained_here, bool), key
        assert cls.trained_here == issubclass(cls, TwinBackbone) != issubclass(
            cls, PretrainedBackbone), key
