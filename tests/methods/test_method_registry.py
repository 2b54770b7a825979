"""What methods are (MethodInfo): known without torch, declared by each method class, and
the facts the table, the tuning wiring and the jobs derive from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.methods import registry
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import (BUILTIN_CONFIG_VALIDATORS, BUILTIN_METHOD_INFO,
                                      MethodInfo, method_info, method_names, methods_of_kind,
                                      tuned_methods)

ROOT = Path(__file__).resolve().parents[2]


def assert_runs(code: str) -> None:
    """Run `code` in a fresh interpreter (nothing imported yet) and require success."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_method_info_needs_no_torch_and_no_method_module():
    code = ("import sys\n"
            "from harness.methods.registry import method_info, methods_of_kind, tuned_methods\n"
            "assert methods_of_kind('gradient') == ['graddiff', 'gradient_ascent', 'npo']\n"
            "assert tuned_methods() == ['timerome']\n"
            "assert method_info('rome').kind == 'weight_edit'\n"
            "loaded = [m for m in ('torch', 'harness.timerome.method', 'baselines.npo')\n"
            "          if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    assert_runs(code)


def test_get_method_imports_only_the_method_it_builds():
    """A TimeROME-DLM job loads no baseline code (and a baseline job no TimeROME code)."""
    code = ("import sys\n"
            "from harness.methods.registry import get_method\n"
            "get_method('timerome')\n"
            "assert 'harness.timerome.method' in sys.modules\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'baselines')\n"
            "assert not loaded, loaded\n")
    assert_runs(code)


def test_builtin_modules_and_info_name_the_same_methods():
    assert set(registry.BUILTIN_METHOD_MODULES) == set(BUILTIN_METHOD_INFO)


def test_every_method_class_declares_the_info_of_the_builtin_table():
    names = method_names()  # imports the method modules
    assert set(names) == set(BUILTIN_METHOD_INFO) == set(BUILTIN_CONFIG_VALIDATORS)
    for name in names:
        cls = type(registry.get_method(name))
        assert "info" in vars(cls), f"{cls.__name__} declares no info"
        assert cls.info == BUILTIN_METHOD_INFO[name], name
        assert method_info(name) is cls.info


def test_kinds_tunable_keys_and_retain_use():
    assert methods_of_kind("gradient") == ["graddiff", "gradient_ascent", "npo"]
    assert methods_of_kind("weight_edit") == ["memit", "rome"]
    assert methods_of_kind("inference_time") == ["timerome"]
    assert tuned_methods() == ["timerome"]
    assert method_info("timerome").tunable_keys == ("alpha", "lam", "q", "gate_margin", "sites",
                                                    "gate_span", "gate_own_floor")
    assert registry.sequential_methods() == ["timerome"]  # it implements sequential_editor
    assert [n for n in method_names() if method_info(n).needs_retain] == \
        ["graddiff", "memit", "npo", "rome", "timerome"]
    with pytest.raises(ValueError, match="unknown method kind 'gradients'"):
        methods_of_kind("gradients")


def test_gradient_objectives_use_retain_facts_as_their_info_says():
    """The retain batches of the training loop are drawn iff the objective needs them."""
    from baselines.graddiff import GradDiffObjective
    from baselines.graddiff_config import GradDiffConfig
    from baselines.gradient_ascent import GradientAscentObjective
    from baselines.npo import NPOObjective
    from baselines.npo_config import NPOConfig

    objectives = {
        "gradient_ascent": GradientAscentObjective(eps=1e-3),
        "graddiff": GradDiffObjective(GradDiffConfig(), eps=1e-3),
        "npo": NPOObjective(NPOConfig(), eps=1e-3)}
    for name, objective in objectives.items():
        assert objective.needs_retain == method_info(name).needs_retain, name


def test_sequential_is_declared_by_the_methods_that_insert_one_at_a_time():
    for name in method_names():
        cls = type(registry.get_method(name))
        implements = cls.sequential_editor is not Method.sequential_editor
        assert method_info(name).sequential == implements, name


def test_unknown_method_names_the_closest():
    with pytest.raises(KeyError, match="unknown method 'memitt' \\(did you mean 'memit'\\?\\)"):
        method_info("memitt")
    with pytest.raises(KeyError, match="did you mean 'gradient_ascent'"):
        registry.get_method("gradient_ascnt")


class _Echo(Method):
    def apply(self, request: EditRequest) -> MethodOutcome:
        return MethodOutcome(request.backbone, {})


def test_a_registered_method_describes_itself(monkeypatch):
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    undeclared = type("Undeclared", (_Echo,), {})
    with pytest.raises(ValueError, match="must declare info"):
        registry.register_method("undeclared")(undeclared)
    misnamed = type("Misnamed", (_Echo,), {"info": MethodInfo("other", "gradient")})
    with pytest.raises(ValueError, match="must declare info"):
        registry.register_method("misnamed")(misnamed)
    echo = type("EchoGradient", (_Echo,), {"info": MethodInfo("echo", "gradient",
                                                              tunable_keys=("lr",))})
    registry.register_method("echo")(echo)
    assert "echo" in methods_of_kind("gradient") and "echo" in tuned_methods()
    assert method_info("echo").tunable_keys == ("lr",)
    with pytest.raises(ValueError, match="unknown kind 'edit'"):
        MethodInfo("x", "edit")
