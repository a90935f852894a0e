"Our constrained expected improvement against BoTorch's analytic ConstrainedExpectedImprovement, on the same GP posteriors."
import warnings
import pytest
import torch

botorch = pytest.importorskip("botorch")
from botorch.acquisition.analytic import ConstrainedExpectedImprovement, ExpectedImprovement
from botorch.models import ModelListGP, SingleTaskGP

from compress_papers.constraint_aware import constrained_ei, expected_improvement


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


def test_expected_improvement_matches_botorch(models):
    gp_f, _, cand, best = models
    mu, sd = _mean_sd(gp_f, cand)
    with torch.no_grad(): ref = ExpectedImprovement(gp_f, best_f=best)(cand)
    assert torch.allclose(expected_improvement(mu, sd, torch.tensor(best, dtype=torch.float64)), ref, rtol=1e-5, atol=1e-9)   # posterior paths differ in the last digits


@pytest.mark.parametrize("g", [0.3, 0.8, 1.5])
def test_constrained_ei_matches_botorch(models, g):
    gp_f, gp_c, cand, best = models
    (mu_f, sd_f), (mu_c, sd_c) = _mean_sd(gp_f, cand), _mean_sd(gp_c, cand)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # BoTorch recommends its log version; the plain one is the paper's quantity
        acq = ConstrainedExpectedImprovement(ModelListGP(gp_f, gp_c), best_f=best, objective_index=0, constraints={1: (None, g)})
        with torch.no_grad(): ref = acq(cand)
    ours = constrained_ei(mu_f, sd_f, torch.tensor(best, dtype=torch.float64), mu_c, sd_c, torch.tensor(g, dtype=torch.float64))
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-9)   # posterior paths differ in the last digits
