"AccNet and the classical fast filters beyond the notebook's tests: every filter refuses bad input, lattice geometry, determinism."
import math
import pytest
import torch
from hypothesis import given, settings, strategies as st

import numpy as np
from compress_papers.accnet import (AccNet, AccNetConfig, _elevate, _exp_nonpos, bilateral_exact, bilateral_grid, bilateral_permutohedral,
                                    fit_accnet, lattice_simplex, permutohedral_filter)

IM = torch.rand(20, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
FILTERS = {"exact": bilateral_exact, "grid": bilateral_grid, "lattice": bilateral_permutohedral,
           "accnet": lambda img, ss, sr, guide=None, max_pixels=2 ** 24: AccNet(ss, sr).filter(img, guide, max_pixels=max_pixels)}


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("args, kw, msg", [
    ((IM, 0.0, 0.1), {}, "sigma_s must be a number > 0"),
    ((IM, 2.0, -0.1), {}, "sigma_r must be a number > 0"),
    ((torch.zeros(0, 4), 2.0, 0.1), {}, "non-empty \\(H, W\\)"),
    ((torch.rand(3, 4, 5), 2.0, 0.1), {}, "gray or \\(H, W, 3\\) colour"),
    ((255 * IM, 2.0, 25.5), {}, "values in \\[0, 1\\], the units of sigma_r"),
    ((IM, 2.0, 0.1), {"guide": IM - 0.5}, "values in \\[0, 1\\]"),
    ((torch.where(IM > 0.5, IM, torch.nan), 2.0, 0.1), {}, "must not contain NaN"),
    ((IM, 2.0, 0.1), {"guide": IM[:, :10]}, "does not match"),
    ((IM, 2.0, 0.1), {"max_pixels": 100}, "above max_pixels=100"),
])
def test_bad_input(name, args, kw, msg):
    if name == "accnet" and msg.startswith("sigma"): pytest.skip("AccNet checks its sigmas at construction (below)")
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


@settings(max_examples=40, deadline=None)
@given(a=st.floats(-745.0, 0.0))
def test_vectorised_exp_is_exact_to_the_last_bits(a):
    x = np.array([a, 0.0, a / 7]); out = np.empty(3)
    _exp_nonpos(x, out, np.empty(3, np.int64))
    assert out[1] == 1.0
    for v, e in zip(x, out):
        assert abs(e / math.exp(max(v, -700.0)) - 1) < 5e-16


def _brute_force(img, ss, sr, guide, kind, r):
    "The bilateral filter written out pixel by pixel in numpy, the window clipped to the image."
    H, W = img.shape[:2]; x, gd = img.reshape(H, W, -1), guide.reshape(H, W, -1); out = np.empty_like(x)
    for i in range(H):
        for j in range(W):
            ys, xs = np.mgrid[max(0, i - r):min(H, i + r + 1), max(0, j - r):min(W, j + r + 1)]
            d = np.sqrt(((gd[ys, xs] - gd[i, j]) ** 2).sum(-1)) / sr
            wr = np.exp(-0.5 * d * d) if kind == "gaussian" else np.exp(-d) if kind == "exponential" else 1 / (1 + d * d)
            w = np.exp(-((ys - i) ** 2 + (xs - j) ** 2) / (2 * ss * ss)) * wr
            out[i, j] = (w[..., None] * x[ys, xs]).sum((0, 1)) / w.sum()
    return out.reshape(img.shape)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), colour_img=st.booleans(), colour_guide=st.booleans(), cross=st.booleans(),
       kind=st.sampled_from(["gaussian", "exponential", "cauchy"]), ss=st.floats(0.3, 3.0), sr=st.floats(0.03, 2.0),
       radius=st.one_of(st.none(), st.integers(0, 5)), seed=st.integers(0, 2 ** 16))
def test_exact_filter_is_the_formula(h, w, colour_img, colour_guide, cross, kind, ss, sr, radius, seed):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w, 3) if colour_img else (h, w))
    guide = rng.random((h, w, 3) if colour_guide else (h, w)) if cross else None
    gd = img if guide is None else guide
    r = math.ceil(4 * ss) if radius is None else radius
    out = bilateral_exact(img, ss, sr, guide=guide, kind=kind, radius=radius).numpy()
    assert out.shape == img.shape
    assert np.allclose(out, _brute_force(img, ss, sr, gd, kind, r), rtol=0, atol=1e-12)


def test_exact_filter_does_not_depend_on_the_thread_count():
    img = torch.rand(40, 33, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    n = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t); outs.append(bilateral_exact(img, 3.0, 0.2, kind="exponential"))
    finally:
        torch.set_num_threads(n)
    assert torch.equal(outs[0], outs[1])


def test_a_colour_guide_of_three_equal_channels_is_a_gray_guide_with_a_smaller_sigma_r():
    "|(g, g, g)_i - (g, g, g)_j| = sqrt(3) |g_i - g_j|."
    g = IM[:, :, None].expand(-1, -1, 3)
    assert torch.allclose(bilateral_exact(IM, 2.0, 0.3, guide=g), bilateral_exact(IM, 2.0, 0.3 / math.sqrt(3), guide=IM), atol=1e-13)


def test_colour_images_take_a_gray_guide_in_the_grid_filters_and_any_guide_in_the_lattice():
    rgb = torch.rand(20, 24, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for fn in (bilateral_grid, lambda img, ss, sr, **k: AccNet(ss, sr).filter(img, **k)):
        with pytest.raises(ValueError, match="gray \\(H, W\\) guide"): fn(rgb, 2.0, 0.1)
        assert fn(rgb, 2.0, 0.1, guide=IM).shape == rgb.shape
    out = bilateral_permutohedral(rgb, 2.0, 0.1)
    assert out.shape == rgb.shape and bool(torch.isfinite(out).all())
    assert torch.allclose(bilateral_grid(rgb, 2.0, 0.1, guide=IM)[..., 1], bilateral_grid(rgb[..., 1], 2.0, 0.1, guide=IM), atol=1e-6)
