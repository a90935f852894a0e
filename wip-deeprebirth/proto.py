"A first prototype of DeepRebirth's experiment on inception-small (seed 0): merge, fine-tune layer-wise (10x lr on the new layers), compare."
import time, copy, torch
from torch import nn
exec(open("wip-deeprebirth/draft.py").read())
from compress_papers.data import get_data
from compress_papers.train import pretrained, evaluate, fit, Loader, make_optimizer, TrainConfig
from compress_papers.core import set_seed
torch.set_num_threads(2)
ds = get_data("mnist5k"); SHAPE = (1, 1, 28, 28)
base = pretrained("inception-small", "full", "mnist5k", progress=False, seed=0)[0].eval()
print("float", evaluate(base, ds.test)["acc"])

def finetune_new(model, new_params, epochs, lr, seed=0, limit=2048):
    "SGD: the new layers at 10x lr, the others at lr; cosine-free constant lr for the prototype."
    set_seed(seed); new_ids = {id(p) for p in new_params}
    old = [p for p in model.parameters() if id(p) not in new_ids]
    opt = torch.optim.SGD([{"params": old, "lr": lr}, {"params": list(new_params), "lr": 10 * lr}], momentum=0.9, weight_decay=5e-4)
    fit(model, Loader(ds.train.take(limit), 64, shuffle=True, seed=seed), epochs, opt, progress=False)
    return model.eval()

def slim_all(m):
    f1, i1 = streamline(m.features, 0, 5, SHAPE); f2, i2 = streamline(f1, 4, 8, SHAPE)
    s = copy.deepcopy(m); s.features = f2; s = branch_slim(s)
    new = [s.features[0], s.features[4]] + [l for mod in s.modules() if isinstance(mod, SlimInception) for l in mod.new_layers()]
    return s, [p for l in new for p in l.parameters()]

t0 = time.perf_counter()
# layer-wise: one merge at a time, each followed by a short fine-tune
m = copy.deepcopy(base)
f1, _ = streamline(m.features, 0, 5, SHAPE); m.features = f1; m = finetune_new(m, list(m.features[0].parameters()), 1, 0.01)
print("after stem 1 + ft", evaluate(m, ds.test)["acc"], f"{time.perf_counter() - t0:.1f}s")
f2, _ = streamline(m.features, 4, 8, SHAPE); m.features = f2; m = finetune_new(m, list(m.features[4].parameters()), 1, 0.01)
print("after stem 2 + ft", evaluate(m, ds.test)["acc"], f"{time.perf_counter() - t0:.1f}s")
m = branch_slim(m); new = [p for mod in m.modules() if isinstance(mod, SlimInception) for l in mod.new_layers() for p in l.parameters()]
m = finetune_new(m, new, 2, 0.01)
print("layer-wise, all merged", evaluate(m, ds.test)["acc"], f"{time.perf_counter() - t0:.1f}s")
# all merged at once, the same total budget (4 epochs)
s, new = slim_all(base); s = finetune_new(s, new, 4, 0.01)
print("merged at once + ft", evaluate(s, ds.test)["acc"], f"{time.perf_counter() - t0:.1f}s")
# the merged architecture from scratch, same budget
s, _ = slim_all(base)
for mod in s.modules():
    if hasattr(mod, "reset_parameters"): mod.reset_parameters()
s = finetune_new(s, [], 4, 0.05)
print("from scratch", evaluate(s, ds.test)["acc"], f"{time.perf_counter() - t0:.1f}s")
