"""Fine-tuning memorises the corpus; the retain model does not know the excluded split."""

from __future__ import annotations

import json

import pytest

from harness.backbones import BackboneSpec, load_backbone
from harness.evaluation.answer_logprob import score_facts
from harness.finetune import FinetuneConfig, REPORT_FILE, lr_factor, training_facts

EXCLUDED = "forget10"  # conftest.RETAIN_EXCLUDED_SPLIT


def test_finetuned_model_memorises_its_training_facts(finetuned_backbone, random_backbone,
                                                      tiny_corpus):
    facts = tiny_corpus["full"]
    trained = score_facts(finetuned_backbone, facts)
    untrained = score_facts(random_backbone, facts)
    # ~24-token answers: a random model sits near -24 * log(V) ~ -160 nats; the recipe
    # measured about -10 nats per answer on these facts (about 0.4 nat per token).
    assert untrained.mean < -80.0
    assert trained.mean > -20.0, trained.logp.tolist()


def test_finetune_report_is_written_with_the_checkpoint(finetuned_checkpoint_dir):
    report = json.loads((finetuned_checkpoint_dir / REPORT_FILE).read_text())
    assert report["n_facts"] == 48 and report["splits"] == {"full": 48}
    assert report["epoch_losses"][-1] < 0.5 * report["epoch_losses"][0]
    assert (finetuned_checkpoint_dir / "model.safetensors").is_file()


def test_retain_model_scores_the_excluded_split_lower(retain_checkpoint_dir, finetuned_backbone,
                                                      tiny_corpus):
    retain_model = load_backbone(BackboneSpec(name="retain", adapter="llada-twin",
                                              path=str(retain_checkpoint_dir)))
    excluded = tiny_corpus[EXCLUDED]
    kept = tiny_corpus["full"][:len(excluded)]
    retain_on_excluded = score_facts(retain_model, excluded).mean
    assert retain_on_excluded < score_facts(retain_model, kept).mean - 10.0
    assert retain_on_excluded < score_facts(finetuned_backbone, excluded).mean - 10.0
    report = json.loads((retain_checkpoint_dir / REPORT_FILE).read_text())
    assert report["excluded_splits"] == [EXCLUDED] and report["excluded_facts"] == len(excluded)


def test_training_facts_drop_the_excluded_split(tiny_corpus):
    facts, counts, dropped = training_facts(tiny_corpus, ("forget10",))
    forget = {(f.question, f.answer) for f in tiny_corpus["forget10"]}
    assert dropped == len(forget) == 5
    assert not forget & {(f.question, f.answer) for f in facts}
    assert counts["full"] == 48 - 5 and len(facts) == sum(counts.values())


def test_training_facts_name_a_missing_split(tiny_corpus):
    with pytest.raises(KeyError, match="forget42"):
        training_facts(tiny_corpus, ("forget42",))
    with pytest.raises(ValueError, match="share no fact"):
        training_facts(tiny_corpus, ("holdout10",))


def test_lr_schedule_warms_up_then_decays():
    cfg = FinetuneConfig(warmup_ratio=0.1, min_lr_ratio=0.0)
    factors = [lr_factor(s, 100, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] < 0.01
    with pytest.raises(ValueError, match="unknown lr schedule 'step'"):
        lr_factor(0, 10, FinetuneConfig(schedule="step"))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        FinetuneConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        FinetuneConfig(lr=-1.0)


def test_epoch_batches_cover_every_fact_once_and_group_similar_lengths():
    import torch

    from harness.finetune.loop import epoch_batches

    lengths = [(7 * i) % 41 + 10 for i in range(200)]
    grouped = epoch_batches(lengths, 16, 4, torch.Generator().manual_seed(0))
    plain = epoch_batches(lengths, 16, 1, torch.Generator().manual_seed(0))
    for batches in (grouped, plain):
        assert sorted(i for b in batches for i in b) == list(range(200))
        assert all(1 <= len(b) <= 16 for b in batches)

    def padding(batches):  # padded cells a batch computes beyond its rows' own lengths
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
                   for b in batches)

    assert padding(grouped) < 0.5 * padding(plain), (padding(grouped), padding(plain))
    again = epoch_batches(lengths, 16, 4, torch.Generator().manual_seed(0))
    assert again == grouped
