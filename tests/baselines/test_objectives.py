import math

import pytest
import torch

from baselines.objectives import npo_loss, paired_answer_nll
from baselines.training import frozen_reference
from harness.diffusion.batching import collate, encode_facts


def test_npo_loss_matches_closed_form():
    theta = torch.tensor([3.0, 5.0, 10.0])
    ref = torch.tensor([4.0, 2.0, 10.0])
    beta = 0.1
    expected = -(2 / beta) * sum(math.log(1 / (1 + math.exp(-beta * (t - r))))
                                 for t, r in zip([3.0, 5.0, 10.0], [4.0, 2.0, 10.0])) / 3
    assert float(npo_loss(theta, ref, beta)) == pytest.approx(expected, rel=1e-6)
    # theta == ref: every term is -(2/beta) log(1/2)
    assert float(npo_loss(ref, ref, 0.5)) == pytest.approx(4 * math.log(2), rel=1e-6)


def test_npo_loss_rejects_nonpositive_beta():
    with pytest.raises(ValueError, match="beta"):
        npo_loss(torch.zeros(1), torch.zeros(1), 0.0)


def test_paired_nll_uses_the_same_mask_draw(tiny_backbone, tiny_facts):
    forget, _ = tiny_facts
    batch = collate(tiny_backbone, encode_facts(tiny_backbone, forget))
    reference = frozen_reference(tiny_backbone)
    gen = torch.Generator().manual_seed(3)
    theta, ref = paired_answer_nll(tiny_backbone, reference, batch, gen)
    assert theta.requires_grad and not ref.requires_grad
    # identical weights + identical masks -> identical estimates (independent draws differ)
    torch.testing.assert_close(theta.detach(), ref)
    other, _ = paired_answer_nll(tiny_backbone, reference, batch, gen)
    assert not torch.allclose(other.detach(), ref)
