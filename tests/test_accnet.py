"AccNet and the classical fast filters beyond the notebook's tests: every filter refuses bad input, lattice geometry, determinism."
import math
import pytest
import torch
from hypothesis import given, settings, strategies as st

from compress_papers.accnet import (AccNet, AccNetConfig, _elevate, bilateral_exact, bilateral_grid, bilateral_permutohedral,
                                    fit_accnet, lattice_simplex, permutohedral_filter)

IM = torch.rand(20, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
FILTERS = {"exact": bilateral_exact, "grid": bilateral_grid, "lattice": bilateral_permutohedral,
           "accnet": lambda img, ss, sr, guide=None, max_pixels=2 ** 24: AccNet(ss, sr).filter(img, guide, max_pixels=max_pixels)}


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("args, kw, msg", [
    ((IM, 0.0, 0.1), {}, "sigma_s must be a number > 0"),
    ((IM, 2.0, -0.1), {}, "sigma_r must be a number > 0"),
    ((torch.zeros(0, 4), 2.0, 0.1), {}, "non-empty 2-D"),
    ((torch.rand(3, 4, 5), 2.0, 0.1), {}, "non-empty 2-D"),
    ((torch.where(IM > 0.5, IM, torch.nan), 2.0, 0.1), {}, "must not contain NaN"),
    ((IM, 2.0, 0.1), {"guide": IM[:, :10]}, "does not match"),
    ((IM, 2.0, 0.1), {"max_pixels": 100}, "above max_pixels=100"),
])
def test_bad_input(name, args, kw, msg):
    if name == "accnet" and "sigma" in msg: pytest.skip("AccNet checks its sigmas at construction (below)")
    with pytest.raises(ValueError, match=msg): FILTERS[name](*args, **kw)


def test_accnet_refuses_bad_sigmas_and_config():
    with pytest.raises(ValueError, match="sigma_s must be a number > 0"): AccNet(0.0, 0.1)
    with pytest.raises(ValueError, match="sigma_r must be a number > 0"): AccNet(2.0, float("nan"))
    with pytest.raises(TypeError, match="knots must be an integer"): AccNetConfig(knots=2.5)
    with pytest.raises(ValueError, match="steps must be an integer in 0.."): AccNetConfig(steps=-1)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 5), n=st.integers(1, 40), seed=st.integers(0, 2 ** 16), scale=st.floats(0.1, 50))
def test_lattice_simplex_interpolates_any_point(d, n, seed, scale):
    feats = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    elev = _elevate(feats)
    verts, b = lattice_simplex(elev)
    assert torch.allclose(b.sum(1), torch.ones(n, dtype=torch.float64))
    assert bool((b >= -1e-9).all())
    assert torch.allclose((b[..., None] * verts).sum(1), elev, atol=1e-8 * max(1.0, scale))
    assert bool((verts.sum(-1) == 0).all())
    assert len({tuple(sorted((verts[i, :, 0] % (d + 1)).tolist())) for i in range(n)}) == 1   # remainders 0..d, every point


def test_lattice_is_a_gaussian_blur_in_two_dimensions():
    "With (x, y) features only, the lattice approximates a normalised spatial Gaussian blur (the exact filter with a huge sigma_r)."
    H = W = 40
    img = torch.rand(H, W, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    feats = torch.stack([xs / 3.0, ys / 3.0], -1).reshape(-1, 2)
    num, den = permutohedral_filter(torch.stack([img.reshape(-1), torch.ones(H * W, dtype=torch.float64)]), feats)
    ref = bilateral_exact(img, 3.0, 1e6)
    psnr = 10 * math.log10(1 / ((num / den).reshape(H, W) - ref).pow(2).mean().item())
    assert psnr > 40


def test_cross_filter_with_a_flat_guide_is_a_spatial_blur():
    guide = torch.full_like(IM, 0.5)
    ref = bilateral_exact(IM, 2.0, 0.1, guide=guide)
    assert torch.allclose(ref, bilateral_exact(IM, 2.0, 1e6), atol=1e-12)
    assert (bilateral_grid(IM, 2.0, 0.1, guide=guide, f=4).double() - ref).abs().max() < 0.01


def test_training_is_deterministic():
    target = bilateral_exact(IM, 2.0, 0.1, kind="exponential").float()
    nets = []
    for _ in range(2):
        net = AccNet(2.0, 0.1, AccNetConfig(rank=2, steps=5, crop=16), seed=4)
        fit_accnet(net, [(IM.float(), target)], seed=7, progress=False); nets.append(net)
    assert all(torch.equal(a, b) for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()))
