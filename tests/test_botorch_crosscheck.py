"Our (log) expected improvement and constrained EI against BoTorch's analytic acquisitions, on the same GP posteriors."
import warnings
import pytest
import torch

botorch = pytest.importorskip("botorch")
from botorch.acquisition import analytic
from botorch.models import ModelListGP, SingleTaskGP

from compress_papers.constraint_aware import (constrained_ei, expected_improvement, log_constrained_ei,
                                              log_expected_improvement)

HAS_LOG = hasattr(analytic, "LogExpectedImprovement") and hasattr(analytic, "LogConstrainedExpectedImprovement")


@pytest.fixture
def models():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 3, generator=g, dtype=torch.float64)
    f = (X.sin().sum(1, keepdim=True) + 0.05 * torch.randn(12, 1, generator=g, dtype=torch.float64))
    c = X[:, :1] ** 2 + X[:, 1:2]
    gp_f, gp_c = SingleTaskGP(X, f), SingleTaskGP(X, c)   # default hyper-parameters: the same posterior for both codes
    cand = torch.rand(200, 1, 3, generator=g, dtype=torch.float64)
    return gp_f, gp_c, cand, float(f.max())


def _mean_sd(model, cand):
    with torch.no_grad():
        p = model.posterior(cand)
    return p.mean.reshape(-1), p.variance.clamp_min(1e-12).sqrt().reshape(-1)


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # BoTorch recommends its log versions when the plain ones are built
        with torch.no_grad(): return fn()


def test_expected_improvement_matches_botorch(models):
    gp_f, _, cand, best = models
    mu, sd = _mean_sd(gp_f, cand)
    ref = _quiet(lambda: analytic.ExpectedImprovement(gp_f, best_f=best)(cand))
    assert torch.allclose(expected_improvement(mu, sd, best), ref, rtol=1e-5, atol=1e-9)   # posterior paths differ in the last digits


@pytest.mark.parametrize("g", [0.3, 0.8, 1.5])
def test_constrained_ei_matches_botorch(models, g):
    gp_f, gp_c, cand, best = models
    (mu_f, sd_f), (mu_c, sd_c) = _mean_sd(gp_f, cand), _mean_sd(gp_c, cand)
    ref = _quiet(lambda: analytic.ConstrainedExpectedImprovement(ModelListGP(gp_f, gp_c), best_f=best, objective_index=0,
                                                                  constraints={1: (None, g)})(cand))
    assert torch.allclose(constrained_ei(mu_f, sd_f, best, mu_c, sd_c, g), ref, rtol=1e-5, atol=1e-9)


@pytest.mark.skipif(not HAS_LOG, reason="this BoTorch has no LogExpectedImprovement / LogConstrainedExpectedImprovement")
@pytest.mark.parametrize("shift", [0.0, 2.0, 10.0])    # best_f raised by `shift` posterior sds: z down to about -30
def test_log_expected_improvement_matches_botorch_in_the_tail(models, shift):
    gp_f, _, cand, best = models
    mu, sd = _mean_sd(gp_f, cand)
    best_f = best + shift * float(sd.max())
    ref = _quiet(lambda: analytic.LogExpectedImprovement(gp_f, best_f=best_f)(cand))
    ours = log_expected_improvement(mu, sd, best_f)
    assert torch.isfinite(ours).all() and ours.min() < (-100 if shift == 10.0 else 0)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not HAS_LOG, reason="this BoTorch has no LogConstrainedExpectedImprovement")
@pytest.mark.parametrize("g", [-3.0, 0.3, 0.8, 1.5])   # g = -3: every candidate deep in the infeasible tail
def test_log_constrained_ei_matches_botorch(models, g):
    gp_f, gp_c, cand, best = models
    (mu_f, sd_f), (mu_c, sd_c) = _mean_sd(gp_f, cand), _mean_sd(gp_c, cand)
    ref = _quiet(lambda: analytic.LogConstrainedExpectedImprovement(ModelListGP(gp_f, gp_c), best_f=best, objective_index=0,
                                                                     constraints={1: (None, g)})(cand))
    ours = log_constrained_ei(mu_f, sd_f, best, mu_c, sd_c, g)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-6)
    assert int(ours.argmax()) == int(ref.argmax())
