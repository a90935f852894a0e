"Constrained EI in the far tails, the key ingredient (the probability of feasibility), and the inputs the search refuses."
import math
import numpy as np
import pytest
import torch

from compress_papers.constraint_aware import (bayes_opt, cooling_schedule, expected_improvement, log_constrained_ei,
                                              log_expected_improvement, log_h, log_prob_feasible, prob_feasible,
                                              random_search)

mpmath = pytest.importorskip("mpmath")   # installed with torch

Z = np.concatenate([np.linspace(-37, 8, 901), [-1.0, -1 - 1e-12, -100.0, -100 - 1e-12, -250.0, -1e4]])


def _ref(fn):
    with mpmath.workdps(60):
        return np.array([float(fn(mpmath.mpf(float(z)))) for z in Z])


def test_log_h_matches_a_high_precision_reference():
    ref = _ref(lambda z: mpmath.log(z * mpmath.ncdf(z) + mpmath.npdf(z)))
    err = np.abs(log_h(Z).numpy() - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() < 1e-12, (Z[err.argmax()], err.max())


def test_log_prob_feasible_matches_a_high_precision_reference():
    ref = _ref(lambda u: mpmath.log(mpmath.ncdf(u)))
    err = np.abs(log_prob_feasible(0.0, 1.0, Z).numpy() - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() < 1e-12
    assert prob_feasible(0.0, 1.0, -20.0).item() == pytest.approx(float(mpmath.ncdf(-20)), rel=1e-12)   # 2.8e-89, not 0


def test_expected_improvement_is_positive_and_increasing_in_the_tail():
    z = torch.linspace(-37, 8, 4001, dtype=torch.float64)
    ei = expected_improvement(z, torch.ones_like(z), 0.0)
    assert (ei > 0).all() and (ei.diff() > 0).all()
    zw = torch.linspace(-1e4, 8, 40001, dtype=torch.float64)
    lei = log_expected_improvement(zw, torch.ones_like(zw), 0.0)
    assert torch.isfinite(lei).all() and (lei.diff() > 0).all()
    # sd scales EI: EI(mu, s*sd, best) at the same z is s * EI
    assert torch.allclose(log_expected_improvement(-3.0, 2.0, 0.0 + 3.0), math.log(2.0) + log_h(-3.0 / 2.0 - 1.5 + 0.0))


def test_argmax_is_right_when_every_candidate_is_deep_in_the_infeasible_tail():
    mu_c = torch.linspace(40, 10, 9, dtype=torch.float64)     # u = (0 - mu_c) / 1 from -40 to -10
    sd_c = torch.ones(9, dtype=torch.float64)
    mu_f, sd_f = torch.full((9,), 0.5, dtype=torch.float64), torch.full((9,), 0.02, dtype=torch.float64)
    for best in (None, 1.0):                                 # with best = 1: z = -25 for every candidate as well
        a = log_constrained_ei(mu_f, sd_f, best, mu_c, sd_c, 0.0)
        assert torch.isfinite(a).all() and int(a.argmax()) == 8 and (a.diff() > 0).all()


# ---- the key ingredient: the probability of feasibility --------------------------------------------------------

def test_constrained_ei_prefers_the_feasible_candidate():
    mu_f, sd_f = torch.tensor([0.9, 0.6], dtype=torch.float64), torch.tensor([0.05, 0.05], dtype=torch.float64)
    mu_c, sd_c = torch.tensor([0.8, 0.2], dtype=torch.float64), torch.tensor([0.05, 0.05], dtype=torch.float64)
    assert int(expected_improvement(mu_f, sd_f, 0.55).argmax()) == 0           # EI alone: the infeasible one
    assert int(log_constrained_ei(mu_f, sd_f, 0.55, mu_c, sd_c, 0.3).argmax()) == 1


def test_constrained_bo_ends_feasible_and_near_the_constrained_optimum():
    # maximise th1 + th2 s.t. th1^2 + th2^2 <= 0.5: the unconstrained optimum (1, 1) is infeasible, the constrained one is 1
    toy = lambda th: (float(th[0] + th[1]), float(th[0] ** 2 + th[1] ** 2))
    for s in range(2):
        s_ = bayes_opt(toy, [[0, 1], [0, 1]], 0.5, n_init=5, n_iter=15, seed=s, gp_iters=30, warm_iters=10, n_candidates=1000)
        assert s_.best_feasible()["objective"] > 0.97, (s, s_.best_feasible())


# ---- inputs ------------------------------------------------------------------------------------------------------

def test_cooling_schedule_accepts_numpy_scalars():
    ref = cooling_schedule(207, 70, 5)
    assert cooling_schedule(207, np.float32(70), 5) == ref
    assert cooling_schedule(np.float64(207), np.int64(70), 5) == ref
    assert all(type(g) is float for g in cooling_schedule(np.float32(207), np.float32(70), 3, "linear"))


@pytest.mark.parametrize("L0", [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, np.float64("nan"), "207", True])
def test_cooling_schedule_rejects_bad_L0(L0):
    with pytest.raises(ValueError, match="L0 must be > 0 and finite"):
        cooling_schedule(L0, 70, 5)


@pytest.mark.parametrize("C", [float("nan"), float("inf"), 0, -5])
def test_cooling_schedule_rejects_bad_C(C):
    with pytest.raises(ValueError, match="C must be > 0 and finite"):
        cooling_schedule(207, C, 5)


@pytest.mark.parametrize("g", [float("nan"), float("inf"), None])
def test_search_rejects_a_non_finite_target(g):
    f = lambda th: (float(th[0]), float(th[0]))
    with pytest.raises(ValueError, match="target g must be a finite number"):
        random_search(f, [[0, 1]], g, 3)
    with pytest.raises(ValueError, match="target g must be a finite number"):
        bayes_opt(f, [[0, 1]], g, 2, 1)
