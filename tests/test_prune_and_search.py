"Pruning surgery and the constrained search beyond the notebooks."
import copy, io
import numpy as np
import torch

from compress_papers.models import get_model
from compress_papers.prune import magnitude_prune, make_permanent, nonzero_fraction, remove_channels
from compress_papers.constraint_aware import bayes_opt, cooling_schedule, random_search


def test_removed_model_saves_and_loads_into_a_model_of_its_shape():
    m = get_model("vgg-small").eval()
    r = remove_channels(m, {"features.0": 0.5, "features.4": 0.25, "features.8": 0.5}).eval()
    buf = io.BytesIO(); torch.save(r.state_dict(), buf); buf.seek(0)
    fresh = remove_channels(get_model("vgg-small"), {"features.0": 0.5, "features.4": 0.25, "features.8": 0.5})
    fresh.load_state_dict(torch.load(buf)); fresh.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad(): assert torch.equal(fresh(x), r(x))
    assert r.features[0].out_channels == 16 and r.features[4].out_channels == 48


def test_permanent_pruning_survives_a_state_dict_round_trip():
    p = make_permanent(magnitude_prune(get_model("lenet5"), {"classifier.1": 0.8}))
    q = get_model("lenet5"); q.load_state_dict(copy.deepcopy(p.state_dict()))
    assert abs(nonzero_fraction(q, ["classifier.1"]) - 0.2) < 1e-3


def test_constrained_bo_beats_random_on_a_narrow_feasible_corner():
    # maximise sum(theta) subject to a cost that only a small corner of the box meets
    f = lambda th: (float(np.sum(th)), float(np.sum((1 - np.asarray(th)) ** 2)))
    box = [[0, 1]] * 4
    wins = 0
    for s in range(3):
        cb = bayes_opt(f, box, 0.05, n_init=5, n_iter=15, seed=s).best_feasible()
        rs = random_search(f, box, 0.05, 20, seed=s).best_feasible()
        wins += cb is not None and (rs is None or cb["objective"] >= rs["objective"])
    assert wins == 3


def test_search_is_deterministic_for_a_seed():
    f = lambda th: (float(th[0]), float(th[0] ** 2))
    a = bayes_opt(f, [[0, 1]], 0.25, 3, 4, seed=7); b = bayes_opt(f, [[0, 1]], 0.25, 3, 4, seed=7)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.objective, b.objective)


def test_linear_schedule_ends_at_the_constraint():
    assert cooling_schedule(1.0, 0.05, 4, "linear")[-1] == 0.05
