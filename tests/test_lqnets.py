"LQ-Nets beyond the notebook: residual models, GPU-agnostic state, export round trips, the one-pass CPU kernel against the torch path."
import io
import pytest
from hypothesis import given, settings, strategies as st
import torch

from compress_papers.core import set_seed
from compress_papers.models import get_model
from compress_papers.quant import QuantizedLayer
from compress_papers.lqnets import (LQConfig, LQQuantizer, _qem_pass_torch, export_lq, export_size, load_lq, lq_levels, lq_model,
                                    lq_quantize, midpoints, qem_pass, qem_step)


def test_resnet_quantizes_every_inner_conv_including_shortcuts():
    m = get_model("resnet8")
    q = lq_model(m, LQConfig(2, 2))
    names = [n for n, l in q.named_modules() if isinstance(l, QuantizedLayer)]
    assert "features.4.shortcut.0" in names and "features.0" not in names and "classifier.2" not in names
    assert q(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_export_round_trip_on_a_residual_model():
    set_seed(0)
    m = lq_model(get_model("resnet8"), LQConfig(3, 3))
    m.train(); m(torch.randn(16, 1, 28, 28)); m.eval()          # move the activation bases once
    ex = export_lq(m)
    buf = io.BytesIO(); torch.save(ex, buf); buf.seek(0)
    r = load_lq(torch.load(buf), lq_model(get_model("resnet8"), LQConfig(3, 3))).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad(): assert torch.allclose(r(x), m(x), atol=1e-5)
    s = export_size(ex)
    assert s["codes_bytes"] + s["bases_bytes"] <= 1.02 * s["theory_bytes"]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_weight_quantizer_has_at_most_2_to_the_K_levels_per_channel(bits):
    w = torch.randn(6, 50, generator=torch.Generator().manual_seed(bits))
    q = LQQuantizer(bits, "weight", 6).init_from(w)(w)
    assert all(q[c].unique().numel() <= 2 ** bits for c in range(6))


def test_activation_quantizer_output_is_non_negative_and_bounded():
    aq = LQQuantizer(3, "activation").eval()
    x = torch.relu(torch.randn(1000)) * 5
    q = aq(x)
    assert q.min() >= 0 and q.max() <= aq.basis.sum() + 1e-6


def test_values_map_to_the_nearest_level():
    v = torch.tensor([0.5, 1.0])
    q, _ = lq_quantize(torch.tensor([0.0, 0.7, 3.0]), v, signed=False)
    assert q.tolist() == [0.0, 0.5, 1.5]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 4), st.booleans(), st.integers(1, 4), st.integers(1, 40_000), st.booleans(), st.sampled_from([0.0, 1e-4]),
       st.integers(0, 2**31))
def test_one_pass_kernel_equals_the_torch_path(K, signed, C, N, ties, ridge, seed):
    "The numba pass (float32 on the CPU) against searchsorted/gather/bincount and the torch v-step (what runs on a GPU)."
    gen = torch.Generator().manual_seed(seed)
    v = (torch.rand(C, K, generator=gen) + 0.01) * 2.0 ** torch.arange(K)
    x = torch.randn(C, N, generator=gen) * v.sum(1, keepdim=True)
    if not signed: x = x.relu()
    if ties: x[:, :min(N, 2 ** K - 1)] = midpoints(lq_levels(v, signed)[0])[:, :N]
    v1, v2 = v.clone(), v.clone()
    q, counts, sums, mask = qem_pass(x, v1, signed, True, ridge, momentum=0.9)
    q0, counts0, sums0, mask0 = _qem_pass_torch(x, v2, signed, True, ridge, momentum=0.9)
    assert torch.equal(q, q0) and torch.equal(counts, counts0) and torch.equal(mask, mask0)
    assert torch.allclose(sums, sums0, rtol=0, atol=1e-9 * (1 + x.abs().sum().item()))
    assert torch.allclose(v1, v2, rtol=1e-5, atol=1e-6)


def test_training_step_updates_the_basis_like_the_reference_qem_step():
    "One training forward moves the basis by one QEM alternation and the 0.9 moving average."
    for kind, x in (("weight", torch.randn(8, 72)), ("activation", torch.randn(4, 8, 9, 9).relu())):
        qz = LQQuantizer(2, kind, channels=8).train()
        v0, flat = qz.basis.clone(), (x.reshape(8, -1) if kind == "weight" else x.reshape(1, -1))
        qz(x)
        assert torch.allclose(qz.basis, qem_step(flat, v0, kind == "weight", qz.ridge, momentum=0.9), rtol=1e-5, atol=1e-7)


# --- the v-step is the key ingredient: these fail when it is made a no-op (in the numba kernel, in torch, or in the module)

def _ls_basis(x, v, signed):
    "The v-step written out: B-step codes by brute force, then least squares on the explicit K x N code matrix."
    from compress_papers.lqnets import b_step_bruteforce, code_matrix
    out = []
    for c in range(x.shape[0]):
        B = code_matrix(v.shape[1], signed).double()[b_step_bruteforce(x[c].double(), v[c].double(), signed)]   # (N, K)
        out.append(torch.linalg.lstsq(B, x[c].double()[:, None], driver="gelsd").solution[:, 0])
    return torch.stack(out)


@pytest.mark.parametrize("signed", [True, False])
def test_v_step_is_the_least_squares_basis_on_every_path(signed):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5000, generator=gen) * torch.tensor([[0.5], [1.0], [2.0]])
    if not signed: x = x.relu()
    v = (torch.rand(3, 2, generator=gen) + 0.2) * torch.tensor([1.0, 2.0])
    ref = _ls_basis(x, v, signed)
    v_kernel = v.clone(); qem_pass(x, v_kernel, signed, momentum=0.0)                    # the numba one-pass kernel
    v_torch = v.clone(); _qem_pass_torch(x, v_torch, signed, momentum=0.0)               # the torch path (GPU)
    v_step = qem_step(x.double(), v.double(), signed)                                   # the reference alternation
    for got in (v_kernel, v_torch, v_step):
        assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-6), (got, ref)
    assert not torch.allclose(ref.float(), v, atol=1e-3)                                 # and it is not where it started


@pytest.mark.parametrize("kind", ["weight", "activation"])
def test_training_forwards_learn_a_known_basis(kind):
    "Values that sit on the levels of v_true: from the initial uniform grid, QEM in training forwards finds v_true."
    signed = kind == "weight"
    v_true = torch.tensor([[0.5, 0.7]]) if not signed else torch.tensor([[0.025, 0.06]])   # non-uniform levels
    gen = torch.Generator().manual_seed(0)
    levels = lq_levels(v_true, signed)[0][0]
    x = levels[torch.randint(0, 4, (1, 4000), generator=gen)]
    qz = LQQuantizer(2, kind, channels=1).train()
    if signed: qz.init_from(x, steps=0)                                                   # the best uniform grid, no QEM yet
    err0 = (qz(x).detach() - x).pow(2).sum().item()
    assert err0 > 1e-3 * x.pow(2).sum().item()
    for _ in range(80): qz(x)
    assert torch.allclose(qz.basis.abs().sort(1).values, v_true.abs().sort(1).values, atol=1e-4), qz.basis
    assert (qz.eval()(x) - x).abs().max().item() < 1e-4


def test_every_basis_of_an_lq_model_moves_in_training_and_lowers_the_error():
    set_seed(0)
    from compress_papers.quant import relative_error
    q = lq_model(get_model("resnet8"), LQConfig(2, 2)).train()
    quants = {n: m for n, m in q.named_modules() if isinstance(m, LQQuantizer)}
    before = {n: m.basis.clone() for n, m in quants.items()}
    opt = torch.optim.SGD(q.parameters(), lr=0.05)
    for _ in range(2):                                          # forward (the bases move), then an SGD step moves the weights
        loss = torch.nn.functional.cross_entropy(q(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,)))
        opt.zero_grad(); loss.backward(); opt.step()
    assert all(not torch.equal(before[n], m.basis) for n, m in quants.items())
    # on a fixed activation tensor, training forwards lower the activation quantizer's error well below the initial grid's
    aq = LQQuantizer(2, "activation").train()
    a = torch.randn(1, 20_000, generator=torch.Generator().manual_seed(1)).relu() * 0.3
    e0 = relative_error(aq.eval()(a), a); aq.train()
    for _ in range(40): aq(a)
    assert relative_error(aq.eval()(a), a) < 0.7 * e0


# --- numerics

def test_the_ridge_survives_float32_counts_and_a_dead_filter_initialises():
    "With N >= 2048 values a float32 count swallows a ridge of 1e-4; the v-step solves in float64, so a dead filter is fine."
    from compress_papers.lqnets import v_step
    assert float(torch.tensor(2304.0) + 1e-4) == 2304.0
    wq = LQQuantizer(2, "weight", channels=4).init_from(torch.zeros(4, 256, 3, 3))        # fan-in 2304, all zero
    assert torch.isfinite(wq.basis).all()
    w = torch.randn(4, 256, 3, 3); w[1] = 0                                               # one dead filter among live ones
    wq = LQQuantizer(2, "weight", channels=4).init_from(w)
    assert torch.isfinite(wq.basis).all() and wq(w)[1].abs().max() < 1e-6
    counts = torch.tensor([[0.0, 4096.0, 0.0, 0.0]]); sums = torch.zeros(1, 4)               # one code used: singular without ridge
    v = torch.tensor([[0.5, 1.0]])
    got = v_step(counts, sums, v, True, ridge=1e-4)
    ref = v_step(counts.double(), sums.double(), v.double(), True, ridge=1e-4)
    assert got.dtype == torch.float32 and torch.allclose(got.double(), ref, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])   # float32: the numba kernel; float64: the torch path
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_pixel_raises_instead_of_corrupting_the_model(dtype, bad):
    set_seed(0)
    q = lq_model(get_model("lenet5"), LQConfig(2, 2)).to(dtype).train()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    x = torch.rand(4, 1, 28, 28, dtype=dtype); x[2, 0, 13, 13] = bad
    with pytest.raises(ValueError, match="non-finite value"):
        q(x)
    assert all(torch.equal(v, q.state_dict()[k]) for k, v in state.items())               # no basis was touched
    with pytest.raises(ValueError, match="non-finite value"):
        lq_quantize(x, torch.tensor([0.5, 1.0], dtype=dtype), False)


def test_weights_with_nan_raise_in_training_and_in_export():
    q = lq_model(get_model("lenet5"), LQConfig(2, 2))
    with torch.no_grad(): q.features[3].layer.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite value"): q.train()(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="non-finite value"): export_lq(q)


@pytest.mark.parametrize("ridge, momentum, msg", [(-1e-4, 0.9, "ridge must be"), (float("nan"), 0.9, "ridge must be"),
                                                  (0.0, 1.0, "momentum must be"), (0.0, -0.1, "momentum must be"),
                                                  (0.0, float("nan"), "momentum must be")])
def test_bad_ridge_or_momentum_is_refused_everywhere(ridge, momentum, msg):
    x, v = torch.rand(2, 100), torch.tensor([[0.5, 1.0], [0.4, 0.9]])
    for call in (lambda: qem_step(x, v, True, ridge, momentum), lambda: qem_pass(x, v.clone(), True, ridge=ridge, momentum=momentum),
                 lambda: LQQuantizer(2, "weight", 2, momentum=momentum, ridge=ridge)):
        with pytest.raises(ValueError, match=msg): call()
    with pytest.raises(ValueError, match=msg): LQConfig(momentum=momentum, weight_ridge=ridge)


def test_layer_wise_basis_and_uniform_export_round_trip():
    set_seed(0)
    for cfg in (LQConfig(2, 2, weight_basis="layer"), LQConfig(2, 2, "uniform")):
        m = lq_model(get_model("resnet8"), cfg, calib=torch.rand(8, 1, 28, 28))
        m.train(); m(torch.randn(8, 1, 28, 28)); m.eval()
        r = load_lq(export_lq(m), lq_model(get_model("resnet8"), cfg)).eval()
        x = torch.randn(2, 1, 28, 28)
        with torch.no_grad(): assert torch.allclose(r(x), m(x), atol=1e-5)


def test_the_torch_path_can_be_forced_and_agrees():
    import compress_papers.lqnets as L
    set_seed(0)
    x = torch.randn(4, 1, 28, 28)
    q1, q2 = lq_model(get_model("resnet8"), LQConfig(2, 2)).train(), lq_model(get_model("resnet8"), LQConfig(2, 2)).train()
    q2.load_state_dict(q1.state_dict())
    y1 = q1(x)
    L.ONE_PASS = False
    try: y2 = q2(x)
    finally: L.ONE_PASS = True
    assert torch.allclose(y1, y2, atol=1e-4)
    for (n, b1), b2 in zip(q1.state_dict().items(), q2.state_dict().values()):
        if n.endswith("basis"): assert torch.allclose(b1, b2, rtol=1e-4, atol=1e-7), n
