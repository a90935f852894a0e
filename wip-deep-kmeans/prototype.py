import sys, time, torch, copy
sys.path.insert(0, '/work/main')
from compress_papers.deep_kmeans import *
import torch.nn.functional as F
from torch import nn
from compress_papers.core import set_seed
from compress_papers.data import get_data, Loader
from compress_papers.train import pretrained, evaluate, make_optimizer, TrainConfig
ds = get_data("mnist5k")
base = pretrained("lenet5", "full", "mnist5k", progress=False, seed=0)[0].eval()
print("fp", evaluate(base, ds.test)["acc"], [n for n, m in base.named_modules() if isinstance(m, nn.Conv2d)])
layers = conv_layers(base)
def retrain(model, reg=None, epochs=2, lr=0.01, seed=0):
    set_seed(seed); model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    for ep in range(epochs):
        for x, y in Loader(ds.train, 64, shuffle=True, seed=seed).set_epoch(ep):
            loss = F.cross_entropy(model(x), y) + (reg.penalty() if reg else 0)
            opt.zero_grad(); loss.backward(); opt.step()
        if reg and (ep + 1) % reg.cfg.refresh == 0: reg.refresh()
    return model.eval()
def dist(model, Ks): return sum(distortion(row_matrix(model.get_submodule(n).weight), *kmeans_columns(row_matrix(model.get_submodule(n).weight), K)) for n, K in Ks.items())
t = time.perf_counter(); r0 = retrain(copy.deepcopy(base)); print("retrain 2 epochs", time.perf_counter() - t)
for cr in (8, 32):
    Ks = {n: k_for_ratio(base.get_submodule(n).kernel_size[1], row_matrix(base.get_submodule(n).weight).shape[1], cr) for n in layers}
    res = {"wr": evaluate(share_weights(base, Ks)[0], ds.test)["acc"], "lam0": evaluate(share_weights(r0, Ks)[0], ds.test)["acc"]}
    for lam in (1e-4, 1e-3, 1e-2):
        reg_m = copy.deepcopy(base); reg = DKMRegularizer(reg_m, Ks, DKMConfig(lam=lam, refresh=1))
        retrain(reg_m, reg); res[f"dkm {lam}"] = evaluate(share_weights(reg_m, Ks)[0], ds.test)["acc"]
    for lam in (1e-3, 1e-2, 1e-1):
        reg_m = copy.deepcopy(base); reg = DKMRegularizer(reg_m, Ks, DKMConfig(lam=lam, refresh=1, variant="hard"))
        retrain(reg_m, reg); res[f"hard {lam}"] = evaluate(share_weights(reg_m, Ks)[0], ds.test)["acc"]; res[f"hard {lam} dist"] = dist(reg_m, Ks)
    bits = {n: {4: 8, 8: 4, 16: 2, 32: 1}[cr] for n in layers}
    h = retrain(scalar_share(base, bits)); res["han"] = evaluate(h, ds.test)["acc"]
    print(cr, Ks, {k: round(v, 4) for k, v in res.items()}, "dist base", round(dist(base, Ks), 3), "lam0", round(dist(r0, Ks), 3), flush=True)
