"""The robustness probes (harness/evaluation/probes): the registry, and each probe catching
a constructed edit that only looks like forgetting.

The "edits" are forward hooks on a tiny random twin that push the forget facts' answer
tokens down at masked positions, each under a condition: only when the trained prompt's
tokens open the row (an edit that memorised the phrasing), only when the whole answer is
masked (an edit that works at t = 1 only), or always (a robust edit). A probe must report
no change for the first two where it should, and a drop for the robust one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from harness.diffusion.batching import EncodedFact, encode_facts
from harness.evaluation import probes
from harness.evaluation.probes import (NonFiniteProbe, ProbeContext, ProbeError,
                                       check_probe_names, forget_logp, greedy_rouge,
                                       probe_order, register_probe, run_probe)
from harness.evaluation.probes.sampler import level_logps, sampled_rouge
from harness.hooks import forward_hook

When = Callable[[torch.Tensor, EncodedFact, int], bool]


def opens_with_trained_prompt(ids: torch.Tensor, e: EncodedFact, mask: int) -> bool:
    prompt = torch.tensor(e.prompt_ids)
    return ids.shape[0] >= len(prompt) and bool((ids[: len(prompt)] == prompt).all())


def whole_answer_masked(ids: torch.Tensor, e: EncodedFact, mask: int) -> bool:
    start, n = len(e.prompt_ids), len(e.answer_ids)
    return opens_with_trained_prompt(ids, e, mask) and bool((ids[start:start + n] == mask).all())


def always(ids: torch.Tensor, e: EncodedFact, mask: int) -> bool:
    return True


def suppressing(backbone, facts, when: When, nats: float = 30.0):
    """A forward hook: at the masked positions of a row, the answer tokens of every forget
    fact for which `when` holds lose `nats` of logit."""
    encoded = encode_facts(backbone, facts)
    mask = backbone.mask_token_id

    def hook(_module, args, output):
        ids, out = args[0], output.clone()
        for r in range(ids.shape[0]):
            masked = (ids[r] == mask).nonzero().squeeze(-1)
            for e in encoded:
                if len(masked) and when(ids[r].cpu(), e, mask):
                    tokens = torch.tensor(sorted(set(e.answer_ids)))
                    out[r, masked[:, None], tokens[None, :]] -= nats
        return out

    return hook


@pytest.fixture(scope="module")
def ctx(random_backbone, tiny_corpus) -> ProbeContext:
    forget = tuple(tiny_corpus["forget10_perturbed"])  # these carry paraphrased questions
    assert len(forget) == 5 and all(f.paraphrased_question for f in forget)
    return ProbeContext(backbone=random_backbone, method="constructed",
                        method_kind="inference_time", forget=forget,
                        retain=tuple(tiny_corpus["retain90"][:6]), retain_train=(),
                        holdout=tuple(tiny_corpus["holdout10"]), estimator="full_mask",
                        batch_size=32, seed=0, options={})


def edited(ctx: ProbeContext, when: When, name: str, **options):
    """(probe result before, after) the constructed edit, and the trained-phrasing drop."""
    c = ProbeContext(**{**ctx.__dict__, "options": options})
    before, trained_before = run_probe(name, c), forget_logp(c, c.forget)
    with forward_hook(c.backbone.model, suppressing(c.backbone, c.forget, when)):
        after, trained_after = run_probe(name, c), forget_logp(c, c.forget)
    return before, after, trained_after - trained_before


def test_registry_names_orders_and_refuses(monkeypatch):
    assert set(probes.BUILTIN_PROBE_MODULES) == {"paraphrase", "prompt", "sampler",
                                                 "membership", "relearning"}
    assert probe_order(["relearning", "paraphrase", "sampler"]) == [
        "paraphrase", "sampler", "relearning"]
    with pytest.raises(ProbeError, match="unknown probe 'paraphrse' \\(did you mean "
                                         "'paraphrase'\\?\\)"):
        check_probe_names(["paraphrse"])
    # a table entry whose module is not there yet is tolerated until asked for
    monkeypatch.setitem(probes.BUILTIN_PROBE_MODULES, "ghost", "harness.evaluation.probes.ghost")
    assert not probes.probe_available("ghost") and "ghost" not in probes.available_probes()
    with pytest.raises(ProbeError, match="module harness.evaluation.probes.ghost is not present"):
        check_probe_names(["paraphrase", "ghost"])
    with pytest.raises(ProbeError, match="not present"):
        probes.get_probe("ghost")


def test_non_finite_and_non_numeric_results_are_errors(ctx, monkeypatch):
    monkeypatch.setattr(probes, "_PROBES", dict(probes._PROBES))  # test probes: this test only
    register_probe("test_nan")(lambda c: {"ok": 1.0, "bad": float("nan")})
    register_probe("test_text")(lambda c: {"bad": "high"})
    with pytest.raises(NonFiniteProbe, match="probe 'test_nan': column 'bad' is nan"):
        run_probe("test_nan", ctx)
    with pytest.raises(ProbeError, match="column 'bad' is str"):
        run_probe("test_text", ctx)
    register_probe("test_fine")(lambda c: {"n": torch.tensor(3), "none": None})
    assert run_probe("test_fine", ctx) == {"n": 3.0, "none": None}


def test_paraphrase_probe_catches_an_edit_that_memorised_the_phrasing(ctx):
    before, after, trained = edited(ctx, opens_with_trained_prompt, "paraphrase")
    assert trained < -100  # Table 1's phrasing: forgotten
    assert after["logp"] == pytest.approx(before["logp"], abs=1e-3)  # a paraphrase: not
    assert after["n_facts"] == 5 and after["n_skipped"] == 0
    before, after, trained = edited(ctx, always, "paraphrase")
    assert trained < -100 and after["logp"] - before["logp"] < -100  # a robust edit: both


def test_paraphrase_skips_facts_without_one_and_refuses_none(ctx, tiny_corpus):
    plain = tiny_corpus["forget10"][:2]  # the plain split: no paraphrased question
    mixed = ProbeContext(**{**ctx.__dict__, "forget": (*ctx.forget[:3], *plain)})
    result = run_probe("paraphrase", mixed)
    assert result["n_facts"] == 3 and result["n_skipped"] == 2
    none = ProbeContext(**{**ctx.__dict__, "forget": tuple(plain), "forget_split": "forget10"})
    with pytest.raises(ProbeError, match="none of the 2 forget facts of forget10 has a "
                                         "paraphrased_question"):
        run_probe("paraphrase", none)


def test_prompt_probe_catches_a_phrase_keyed_edit_and_restores_the_format(ctx):
    backbone = ctx.backbone
    prompt_before = backbone.format_prompt("Who?")
    before, after, _ = edited(ctx, opens_with_trained_prompt, "prompt")
    variants = ("short", "distractor", "retain_distractor")
    assert before["chat_logp"] is None and before["chat_rougeL"] is None  # no chat template
    for v in variants:
        assert after[f"{v}_logp"] == pytest.approx(before[f"{v}_logp"], abs=1e-3), v
    _, robust, _ = edited(ctx, always, "prompt")
    for v in variants:
        assert robust[f"{v}_logp"] - before[f"{v}_logp"] < -100, v
    # the variants were asked differently from the trained prompt, and the format is back
    assert before["short_logp"] != before["distractor_logp"] != before["retain_distractor_logp"]
    assert backbone.format_prompt("Who?") == prompt_before == "Question: Who?\nAnswer:"
    assert "format_prompt" not in backbone.__dict__


def test_prompt_probe_asks_a_chat_backbone_in_plain(tiny_corpus):
    from harness.backbones.base import BackboneSpec
    from harness.backbones.registry import adapter_class
    from harness.finetune import corpus_texts

    spec = BackboneSpec(name="tiny-chat", adapter="llada-twin",
                        options={"size": "tiny", "vocab_size": 1024, "prompt_format": "chat"})
    chat = adapter_class("llada-twin").initial(spec, corpus_texts(tiny_corpus), 0)
    own = chat.format_prompt("Who?")
    c = ProbeContext(backbone=chat, method="no_edit", method_kind="reference",
                     forget=tuple(tiny_corpus["forget10"][:2]), retain=(), retain_train=(),
                     holdout=(), estimator="full_mask", batch_size=8, seed=0,
                     options={"rouge": False, "retain_distractor": False})
    result = run_probe("prompt", c)
    assert set(result) == {"plain_logp", "short_logp", "distractor_logp"}  # chat is its own
    assert all(math.isfinite(v) for v in result.values())
    assert result["plain_logp"] != forget_logp(c, c.forget)  # not scored in chat
    assert chat.format_prompt("Who?") == own and "<|start_header_id|>" in own


def test_sampler_level_probe_catches_an_edit_that_works_only_at_t1(ctx):
    levels = [0.25, 1.0]
    before = level_logps(ctx.backbone, ctx.forget, levels, 2, 0, 32)
    with forward_hook(ctx.backbone.model, suppressing(ctx.backbone, ctx.forget,
                                                      whole_answer_masked)):
        only_t1 = level_logps(ctx.backbone, ctx.forget, levels, 2, 0, 32)
    with forward_hook(ctx.backbone.model, suppressing(ctx.backbone, ctx.forget, always)):
        robust = level_logps(ctx.backbone, ctx.forget, levels, 2, 0, 32)
    assert only_t1[1.0] - before[1.0] < -20  # nats per token at t = 1: forgotten
    assert only_t1[0.25] == pytest.approx(before[0.25], abs=1e-6)  # t = 0.25: untouched
    assert robust[0.25] - before[0.25] < -20 and robust[1.0] - before[1.0] < -20


def test_sampling_at_temperature_brings_back_an_answer_pushed_below_the_top(ctx):
    """An "edit" that leaves each answer token the second choice (0.1 nats below a decoy):
    greedy generation never says it; sampling at temperature 1 does, often."""
    encoded = encode_facts(ctx.backbone, ctx.forget)
    mask, eos = ctx.backbone.mask_token_id, ctx.backbone.eos_token_id
    answer_tokens = {t for e in encoded for t in e.answer_ids}
    decoy = next(t for t in range(100, 1000) if t not in answer_tokens | {mask, eos})

    def second_best(_module, args, output):
        ids, out = args[0], output.clone()
        for r in range(ids.shape[0]):
            e = next((e for e in encoded if opens_with_trained_prompt(ids[r], e, mask)), None)
            if e is None:
                continue
            start = len(e.prompt_ids)
            for p in (ids[r] == mask).nonzero().squeeze(-1).tolist():
                out[r, p] = -20.0
                if p - start < len(e.answer_ids):
                    out[r, p, e.answer_ids[p - start]] = 0.0
                    out[r, p, decoy] = 0.1
                else:
                    out[r, p, eos] = 5.0
        return out

    with forward_hook(ctx.backbone.model, second_best):
        greedy = greedy_rouge(ctx, ctx.forget)
        default_like = sampled_rouge(ctx, ctx.forget)
        result = run_probe("sampler", ProbeContext(**{**ctx.__dict__, "options": {
            "step_fractions": [], "extra_tokens": [], "block_lengths": [],
            "random_remasking": False, "levels": [1.0], "level_draws": 1}}))
    assert greedy == 0.0 and sum(default_like) / len(default_like) == greedy
    # (measured 0.099 and 0.177: words span several tokens, and low-confidence remasking
    # keeps the decoy's slightly more confident predictions first)
    assert result["temp1_rougeL"] > 0.05 and result["temp1_rougeL_max"] > 0.1
    assert result["max_rougeL"] == result["temp1_rougeL_max"]


def test_sampler_settings_reach_the_sampler(ctx, monkeypatch):
    from harness.diffusion import sampling

    calls = []
    real = sampling.sample_answers

    def spy(backbone, encoded, **kw):
        calls.append(kw)
        return real(backbone, encoded, **kw)

    monkeypatch.setattr(sampling, "sample_answers", spy)
    result = run_probe("sampler", ProbeContext(**{**ctx.__dict__, "options": {
        "step_fractions": [0.5], "extra_tokens": [16], "block_lengths": [4],
        "temperatures": [0.5], "sample_seeds": [7], "levels": [0.5], "level_draws": 1}}))
    assert list(result) == ["steps_x0.5_rougeL", "extra16_rougeL", "block4_rougeL",
                            "random_remask_rougeL", "temp0.5_rougeL", "temp0.5_rougeL_max",
                            "max_rougeL", "logp_t0.5"]
    n_lengths = len({len(e.answer_ids) for e in encode_facts(ctx.backbone, ctx.forget)})
    assert len(calls) == 5 * n_lengths  # one call per setting and answer length
    settings = [calls[i * n_lengths] for i in range(5)]
    half, extra, block, remask, temp = settings
    assert half["steps"] == -(-half["gen_length"] // 2)  # half of one step per token
    assert extra["gen_length"] == extra["steps"] == half["gen_length"] - 4 + 16
    assert block["block_length"] == 4 and remask["remasking"] == "random"
    assert temp["temperature"] == 0.5 and temp["seed"] == 7


def test_probe_options_are_checked(ctx):
    from harness.evaluation.probes import validate_probe_options

    with pytest.raises(ProbeError, match="robustness.options.sampler: unknown key\\(s\\) "
                                         "levls \\(did you mean 'levels'\\?\\)"):
        validate_probe_options("sampler", {"levls": [0.5]})
    with pytest.raises(ProbeError, match="levels: a list of numbers in \\(0, 1\\]"):
        validate_probe_options("sampler", {"levels": [0.0]})
    with pytest.raises(ProbeError, match="unknown format\\(s\\) html"):
        validate_probe_options("prompt", {"formats": ["html"]})
    with pytest.raises(ProbeError, match="unknown key\\(s\\) x"):
        validate_probe_options("paraphrase", {"x": 1})
