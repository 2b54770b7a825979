"""Weight-editing baselines refuse a parameter-free hook point with a clear, recorded error."""

from __future__ import annotations

import pytest

from harness.backbones import BackboneSpec
from harness.backbones.registry import adapter_class
from harness.methods import EditRequest, MethodNotApplicable, get_method


@pytest.mark.parametrize("method", ["rome", "memit"])
def test_weight_edit_on_moe_combine_point_is_not_applicable(method, tiny_corpus):
    spec = BackboneSpec(name="moe", adapter="llada-moe-twin", options={"size": "micro"})
    texts = [f"{f.question} {f.answer}" for f in tiny_corpus["full"]]
    backbone = adapter_class("llada-moe-twin").initial(spec, texts, 0)
    request = EditRequest(backbone=backbone, forget=tiny_corpus["forget10"][:2],
                          retain=tiny_corpus["retain90"][:4], config={"layer": 0} if method == "rome"
                          else {"layers": [0]})
    with pytest.raises(MethodNotApplicable, match="no 2-D weight"):
        get_method(method, request.config).apply(request)
