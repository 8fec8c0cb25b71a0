"""Why the tests' tiny run is in the seed architecture: CPU seconds of one AE training step (a batch
of 100) and of a forward pass over 10,000 images (the test set every model is scored on), per
architecture, on one thread. CPU time, so a busy machine changes it little.

    python benchmarks/tiny_arch_cost.py
"""

import resource

import torch

from fmnist.config import ARCHS, Config
from fmnist.training.models import AutoEncoder


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def step(model: AutoEncoder, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad()
    ((model(x) - x) ** 2).mean().backward()
    opt.step()


def main() -> None:
    torch.set_num_threads(1)
    x = torch.rand(100, 1, 28, 28)
    for arch in ARCHS:
        model = AutoEncoder(Config(arch=arch))
        opt = torch.optim.Adam(model.parameters())
        step(model, opt, x)  # warm-up: allocations
        t = cpu()
        for _ in range(10):
            step(model, opt, x)
        train = (cpu() - t) / 10
        model.eval()
        t = cpu()
        with torch.inference_mode():
            for _ in range(10):
                model(torch.rand(1000, 1, 28, 28))
        print(f"{arch}: {train * 1000:.0f} ms CPU per training step; {cpu() - t:.2f} s CPU per 10,000-image pass")


if __name__ == "__main__":
    main()
