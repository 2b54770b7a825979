import pytest
import torch

from baselines.layer_choice import memit_layers, rome_layer
from baselines.memit import memit_update
from baselines.rome import rank_one_update
from harness.methods import EditRequest, get_method


def _spd(n: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(n, 4 * n, generator=gen, dtype=torch.float64)
    return a @ a.T / (4 * n)


def test_rank_one_update_maps_the_key_to_the_target():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    k = torch.randn(10, generator=gen, dtype=torch.float64)
    v = torch.randn(6, generator=gen, dtype=torch.float64)
    c = _spd(10, gen)
    new = w + rank_one_update(w, k, v, c)
    torch.testing.assert_close(new @ k, v)
    # the update is rank one and moves keys C-orthogonal to k* not at all
    assert torch.linalg.matrix_rank(new - w) == 1
    other = torch.randn(10, generator=gen, dtype=torch.float64)
    other -= (other @ torch.linalg.solve(c, k)) / (k @ torch.linalg.solve(c, k)) * k
    torch.testing.assert_close(new @ other, w @ other)


def test_memit_update_solves_its_normal_equations():
    gen = torch.Generator().manual_seed(1)
    d_k, d_v, n, lam = 12, 5, 4, 3.0
    keys = torch.randn(d_k, n, generator=gen, dtype=torch.float64)
    res = torch.randn(d_v, n, generator=gen, dtype=torch.float64)
    c = _spd(d_k, gen)
    delta = memit_update(keys, res, c, lam)
    torch.testing.assert_close(delta @ (lam * c + keys @ keys.T), res @ keys.T)
    # lambda -> 0 with n <= d_k: the keys are mapped onto their residuals exactly
    exact = memit_update(keys, res, c, 1e-9)
    torch.testing.assert_close(exact @ keys, res, atol=1e-5, rtol=1e-5)


def test_layer_choice_never_picks_the_last_layer(tiny_backbone):
    n = tiny_backbone.num_layers
    assert rome_layer(tiny_backbone, None) < n - 1
    assert max(memit_layers(tiny_backbone, None)) < n - 1
    with pytest.raises(ValueError, match="layer"):
        rome_layer(tiny_backbone, n - 1)
    with pytest.raises(ValueError, match="'layers'"):
        memit_layers(tiny_backbone, [0, 0])


@pytest.mark.parametrize("name", ["rome", "memit"])
def test_edit_undo_restores_the_weights(name, tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    original = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    out = get_method(name, {"v_steps": 3, "n_prefixes": 1, "mask_ratios": [1.0]}).apply(
        EditRequest(tiny_backbone, forget, retain, seed=0))
    changed = [k for k, v in tiny_backbone.model.state_dict().items()
               if not torch.equal(v, original[k])]
    assert changed and all("ff_out" in k for k in changed)
    assert "covariance" in out.phase_seconds and out.steps is None
    out.undo()
    for k, v in tiny_backbone.model.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_unknown_config_key_is_named(tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    with pytest.raises(ValueError, match="clampp"):
        get_method("rome", {"clampp": 2}).apply(EditRequest(tiny_backbone, forget, retain))
    with pytest.raises(ValueError, match="learning_rate"):
        get_method("npo", {"learning_rate": 2}).apply(EditRequest(tiny_backbone, forget, retain))


def test_rome_layer_from_tie_tracing(tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    out = get_method("rome", {"layer": "tie", "v_steps": 1, "n_prefixes": 0,
                              "mask_ratios": [1.0]}).apply(
        EditRequest(tiny_backbone, forget, retain, seed=0))
    ties = out.details["tie_per_layer"]
    assert "tracing" in out.phase_seconds
    assert len(ties) == tiny_backbone.num_layers - 1  # the last layer is never a candidate
    finite = [t for t in ties if t is not None]
    assert out.details["layer"] == ties.index(max(finite))
