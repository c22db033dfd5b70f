"""One RMSprop step of mnistlab.nn.optim (public per-tensor ops) against the same update written
with PyTorch's private multi-tensor `torch._foreach_*` ops (what it used before), on the lab's
parameter shapes.

    .venv/bin/python benchmarks/bench_rmsprop.py     # 2 threads, median of 7 x 200 steps
"""

from __future__ import annotations

import statistics
import time

import torch

from mnistlab.nn.optim import RMSprop

SHAPES = {
    "hog/final": [(200, 392), (200,), (10, 200), (10,)],
    "raw/final": [(250, 784), (250,), (10, 250), (10,)],
    "cnn/final": [(9, 1, 5, 5), (9,), (9, 9, 5, 5), (9,), (16, 9, 3, 3), (16,), (100, 144),
                  (100,), (10, 100), (10,)],
}


@torch.no_grad()
def foreach_step(params, velocities, lr=1e-3, rho=0.9, eps=1e-7) -> None:
    grads = [p.grad for p in params]
    torch._foreach_mul_(velocities, rho)
    torch._foreach_addcmul_(velocities, grads, grads, value=1 - rho)
    denom = torch._foreach_add(velocities, eps)
    torch._foreach_sqrt_(denom)
    torch._foreach_addcdiv_(params, grads, denom, value=-lr)


def microseconds_per_step(fn) -> float:
    for _ in range(50):
        fn()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(200):
            fn()
        times.append((time.perf_counter() - start) / 200 * 1e6)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(2)
    for name, shapes in SHAPES.items():
        params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p)
        ours = microseconds_per_step(RMSprop(params).step)
        velocities = [torch.zeros_like(p) for p in params]
        reference = microseconds_per_step(lambda p=params, v=velocities: foreach_step(p, v))
        print(f"{name}: mnistlab {ours:.0f} us/step, torch._foreach_* {reference:.0f} us/step, "
              f"ratio {ours / reference:.2f}")


if __name__ == "__main__":
    main()
