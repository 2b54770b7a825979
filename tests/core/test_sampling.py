"""LLaDA-style generation: no mask left, exact number of forwards, reproducible."""

from __future__ import annotations

import pytest

from harness.diffusion.batching import encode_facts, round_width
from harness.diffusion.sampling import generate, sample_answers, transfer_schedule


def test_transfer_schedule_spreads_tokens_evenly():
    assert transfer_schedule(10, 4) == [3, 3, 2, 2]
    assert transfer_schedule(3, 5) == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="steps must be >= 1"):
        transfer_schedule(3, 0)


def _count_forwards(backbone):
    calls = []
    handle = backbone.model.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("steps,block_length", [(6, None), (12, 4), (3, None)])
def test_generation_uses_exactly_steps_forwards_and_leaves_no_mask(random_backbone, tiny_corpus,
                                                                   steps, block_length):
    facts = tiny_corpus["full"][:5]
    calls, handle = _count_forwards(random_backbone)
    try:
        out = sample_answers(random_backbone, facts, gen_length=12, steps=steps,
                             block_length=block_length, batch_size=8)
    finally:
        handle.remove()
    # One batch per prompt width (rows are padded to their own width), `steps` forwards each.
    widths = {round_width(len(e.prompt_ids) + 12 + 1)
              for e in encode_facts(random_backbone, facts)}
    assert len(calls) == steps * len(widths)
    assert len(out.texts) == 5 and all(len(ids) == 12 for ids in out.token_ids)
    assert all(random_backbone.mask_token_id not in ids for ids in out.token_ids)


def test_generation_is_deterministic_per_seed(random_backbone, tiny_corpus):
    facts = tiny_corpus["full"][:4]
    a = sample_answers(random_backbone, facts, temperature=1.0, seed=3)
    b = sample_answers(random_backbone, facts, temperature=1.0, seed=3)
    c = sample_answers(random_backbone, facts, temperature=1.0, seed=4)
    assert a.token_ids == b.token_ids and a.texts == b.texts
    assert a.token_ids != c.token_ids
    greedy = sample_answers(random_backbone, facts, seed=0).token_ids
    assert greedy == sample_answers(random_backbone, facts, seed=99).token_ids
    assert a.gen_lengths == [len(random_backbone.tokenize_answer(f.answer)) + 4 for f in facts]
    assert a.steps == a.gen_lengths and [len(ids) for ids in a.token_ids] == a.gen_lengths


def test_generation_rejects_too_few_steps_for_the_blocks(random_backbone, tiny_corpus):
    with pytest.raises(ValueError, match=r"steps \(2\) must be >= the number of blocks \(3\)"):
        generate(random_backbone, tiny_corpus["full"][:1], gen_length=9, steps=2, block_length=3)


def test_finetuned_model_reproduces_its_training_answers(finetuned_backbone, tiny_corpus):
    from harness.evaluation.rouge import rouge_l_recall

    facts = tiny_corpus["full"][:16]
    texts = generate(finetuned_backbone, facts)
    recall = rouge_l_recall(texts, [f.answer for f in facts])
    assert sum(recall) / len(recall) >= 0.6, list(zip(texts, recall))
    # Cut at EOS: nothing after the answer, no special tokens in the text.
    assert not any("<|" in t for t in texts)


def test_greedy_generation_does_not_depend_on_the_batch(random_backbone, tiny_corpus):
    """Each row is padded to its own width, so the question with the shortest prompt gets
    the same answer alone as in a batch with longer prompts."""
    facts = tiny_corpus["full"][:12]
    shortest = min(range(len(facts)), key=lambda i: len(facts[i].question))
    assert len(facts[shortest].question) < max(len(f.question) for f in facts)
    together = sample_answers(random_backbone, facts, gen_length=12, steps=6)
    alone = sample_answers(random_backbone, [facts[shortest]], gen_length=12, steps=6)
    assert together.token_ids[shortest] == alone.token_ids[0]


def test_default_generation_length_does_not_depend_on_the_list(random_backbone, tiny_corpus):
    """By default a row generates its own answer's length + 4 tokens: the fact with the
    shortest answer gets the same masks, and the same greedy answer, alone as beside a
    fact with a longer answer (it used to get the longest answer of the list)."""
    facts = tiny_corpus["full"][:12]
    lengths = [len(random_backbone.tokenize_answer(f.answer)) for f in facts]
    shortest = min(range(len(facts)), key=lengths.__getitem__)
    assert lengths[shortest] < max(lengths)
    together = sample_answers(random_backbone, facts)
    alone = sample_answers(random_backbone, [facts[shortest]])
    assert together.token_ids[shortest] == alone.token_ids[0]
    assert alone.gen_lengths == [lengths[shortest] + 4]
