"""Everything that exists only for speed, behind one switch (`accelerate`, `fast_enabled`).

    switch.py          the switch, and the entry point: stock model -> a faster TrainingPlan
    rewrite.py         module swaps that keep parameters and results (Dense, convs, pools)
    dense.py gemm.py   Dense layers' products on oneDNN
    fused_conv.py      first Conv2D + ReLU + 2x2 pool as one compiled kernel
    pooling.py         2x2 max pool (+ ReLU) as strided maxima or a compiled kernel
    native.py csrc/    building and loading the compiled kernels
    mlp_step.py        an MLP's training step written out by hand
    sparse_input.py    mostly-zero inputs as a dense core + a sparse rest
    chunking.py        cache-sized chunks for CNN batches
    cpu.py             flush-to-zero, allocator, cores shared between trainers
    openmp.py          how long idle OpenMP threads spin (set before torch loads)
    torch_internals.py the private PyTorch APIs used above, each probed with a fallback
"""

__all__ = ["accelerate", "fast_enabled", "plan_for", "FAST_ENV"]


def __getattr__(name: str):
    """torch loads on first use, so `mnistlab.fast.openmp` can run before it."""
    if name in __all__:
        from mnistlab.fast import switch

        return getattr(switch, name)
    raise AttributeError(f"module 'mnistlab.fast' has no attribute {name!r}")
