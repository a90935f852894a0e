"""Every tensor of two training steps of LeNet-5 and of a small ResNet (activations, loss, gradients, updated weights),
plus a matrix product, least squares, a Cholesky factor and exp, saved to argv[1] for `test_cross_vendor.py` to compare
between this processor and an emulated one (the same binaries under `qemu-x86_64 -cpu MODEL`)."""
import os, sys
import torch, torch.nn.functional as F
from compress_papers.models import get_model

torch.set_num_threads(int(os.environ.get("PROBE_THREADS", "2")))
rec, g = {}, torch.Generator().manual_seed(1)
A, B = torch.randn(64, 300, generator=g), torch.randn(300, 120, generator=g)
rec["mm"] = A @ B
M, b = torch.randn(200, 30, generator=g, dtype=torch.float64), torch.randn(200, 2, generator=g, dtype=torch.float64)
rec["lstsq"] = torch.linalg.lstsq(M, b).solution
rec["cholesky"] = torch.linalg.cholesky(M.T @ M + torch.eye(30, dtype=torch.float64))
rec["exp"] = torch.exp(torch.linspace(-5, 5, 1000))
for name in ("lenet5", "resnet8"):
    torch.manual_seed(0); m = get_model(name, 1, 10, 28)
    x, t = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    acts = {}
    for n, mod in m.named_modules():
        if n: mod.register_forward_hook(lambda mod, i, o, n=n: acts.__setitem__(n, o.detach().clone()))
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    for step in range(2):
        loss = F.cross_entropy(m(x), t); opt.zero_grad(); loss.backward(); opt.step()
        rec[f"{name}.loss{step}"] = loss.detach()
        rec.update({f"{name}.act{step}.{n}": a for n, a in acts.items()})
        rec.update({f"{name}.grad{step}.{n}": p.grad.clone() for n, p in m.named_parameters()})
    rec.update({f"{name}.weight.{n}": p.detach().clone() for n, p in m.named_parameters()})
torch.save(rec, sys.argv[1])
