"Checks of the streamline and branch drafts on inception-small (shapes, output sizes, speed at batch 1 and 64)."
import time, torch
from torch import nn
exec(open("wip-deeprebirth/draft.py").read())
from compress_papers.models import get_model
torch.manual_seed(0); torch.set_num_threads(2)
m = get_model("inception-small").eval()
print([f"{i}:{type(l).__name__}" for i, l in enumerate(m.features)])
f1, i1 = streamline(m.features, 0, 5, (1, 1, 28, 28))                  # conv5x5-BN-ReLU-maxpool-LRN
f2, i2 = streamline(f1, 4, 8, (1, 1, 28, 28), grow_kernel=True)       # conv3x3-ReLU-LRN-maxpool (after the 1x1 conv)
print([f"{i}:{type(l).__name__}" for i, l in enumerate(f2)])
s = copy.deepcopy(m); s.features = f2; s = branch_slim(s).eval()
x = torch.zeros(2, 1, 28, 28)
print(m(x).shape, s(x).shape, sum(p.numel() for p in m.parameters()), sum(p.numel() for p in s.parameters()))
for b in (1, 64):
    x = torch.zeros(b, 1, 28, 28)
    def med(f):
        ts = []
        with torch.no_grad():
            for _ in range(3): f(x)
            for _ in range(30): t = time.perf_counter(); f(x); ts.append(time.perf_counter() - t)
        return sorted(ts)[len(ts) // 2] * 1000
    print(f"batch {b}: unmerged {med(m):.2f} ms, slimmed {med(s):.2f} ms")
try: streamline(m.features, 5, 7, (1, 1, 28, 28))
except ValueError as e: print("ok:", str(e)[:120])
