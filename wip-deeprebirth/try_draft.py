import torch, copy, sys
from torch import nn
exec(open("/tmp/dr/mod.py").read())
torch.manual_seed(0)
conv, bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
bn.running_mean.uniform_(-1, 1); bn.running_var.uniform_(0.5, 2); bn.weight.data.uniform_(0.5, 2); bn.bias.data.uniform_(-1, 1)
x = torch.randn(2, 3, 12, 12)
conv.eval(); bn.eval()
print("bn fold", (fold_conv_bn(conv, bn)(x) - bn(conv(x))).abs().max().item())
for k, s, p, pad in [(3, 1, 2, 1), (5, 1, 2, 0), (3, 2, 2, 1), (3, 1, 3, 0)]:
    c = nn.Conv2d(3, 4, k, s, pad); pool = nn.AvgPool2d(p)
    x = torch.randn(2, 3, 24, 24)
    y0 = pool(c(x)); y1 = fold_conv_avgpool(c, pool)(x)
    print("avg fold", k, s, p, pad, y0.shape, y1.shape, (y0 - y1).abs().max().item() if y0.shape == y1.shape else "shape")
bn.train()
try: fold_conv_bn(conv, bn)
except ValueError as e: print("ok:", e)
from compress_papers.models import get_model
m = get_model("inception-small")
for b in (1, 64):
    t = time_by_type(m, (b, 1, 28, 28), repeats=10); print(b, {k: round(v, 3) for k, v in t.items()}, "non-tensor share", round(non_tensor_share(t), 3))
