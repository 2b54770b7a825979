"""Shared fixtures for TimeROME tests: a tiny corpus and a tiny model fitted to it.

The model is the embedded backbone at size "tiny" (2 layers, d_model 64), fitted with a
short masked-diffusion loop (t ~ U(0.3, 1]) until it reproduces its 6 facts well enough
that corrupting the subject changes the answer's log-probability.
"""

from __future__ import annotations


import pytest
import torch

from harness.backbones.base import BackboneSpec
from harness.backbones.registry import adapter_class, load_backbone
from harness.data import load_corpus, write_synthetic
from harness.diffusion.batching import collate, encode_facts

FIT_STEPS = 200
FIT_LR = 5e-3


def fit_masked_diffusion(backbone, facts, steps: int = FIT_STEPS, lr: float = FIT_LR,
                         seed: int = 0) -> None:
    batch = collate(backbone, encode_facts(backbone, facts))
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster than two contended ones
    opt = torch.optim.Adam(backbone.model.parameters(), lr=lr)
    backbone.model.train()
    try:
        for _ in range(steps):
            t = 0.3 + 0.7 * torch.rand(len(batch), 1, generator=gen)
            masked = (torch.rand(batch.input_ids.shape, generator=gen) < t) & batch.target_mask
            logits = backbone.logits(batch.input_ids.masked_fill(masked, backbone.mask_token_id))
            loss = torch.nn.functional.cross_entropy(logits[masked], batch.input_ids[masked])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    backbone.model.eval()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    directory = write_synthetic(tmp_path_factory.mktemp("timerome_synth"), authors=3,
                                facts_per_author=2, seed=1, answer_style="restated")
    return load_corpus(directory, ["full"])["full"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_corpus):
    """Directory of the fitted tiny model (saved once per session)."""
    torch.manual_seed(0)
    texts = [f"{f.question} {f.answer}" for f in tiny_corpus]
    spec = BackboneSpec(name="tiny-timerome", adapter="llada-twin",
                        options={"size": "tiny", "vocab_size": 400})
    backbone = adapter_class("llada-twin").initial(spec, texts, seed=0)
    fit_masked_diffusion(backbone, tiny_corpus)
    out = tmp_path_factory.mktemp("timerome_tiny_ckpt")
    backbone.save_pretrained(str(out))
    return out


@pytest.fixture()
def tiny_backbone(tiny_checkpoint):
    """A fresh load of the fitted tiny model (tests may hook it freely)."""
    spec = BackboneSpec(name="tiny-timerome", adapter="llada-twin", path=str(tiny_checkpoint))
    return load_backbone(spec)


@pytest.fixture()
def other_backbone(tiny_checkpoint, tiny_corpus):
    """Same architecture and tokenizer, different weights (for the identity check)."""
    spec = BackboneSpec(name="tiny-timerome", adapter="llada-twin", path=str(tiny_checkpoint))
    backbone = load_backbone(spec)
    with torch.no_grad():
        for p in backbone.model.parameters():
            p.add_(0.01)
    return backbone


@pytest.fixture(scope="session")
def forget_retain(tiny_corpus):
    """Forget: the last author's facts; retain: the others."""
    last = tiny_corpus[-1].author_id
    return ([f for f in tiny_corpus if f.author_id == last],
            [f for f in tiny_corpus if f.author_id != last])


