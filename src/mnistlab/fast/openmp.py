"""How long OpenMP's idle threads spin before they sleep, chosen before torch loads.

Why: a training step is a string of short parallel regions; a worker thread that sleeps between
them is woken a long while later, and on two cores that made hog/final epochs about twice as
slow (OMP_WAIT_POLICY=PASSIVE, benchmarks/RESULTS.md). Spinning forever (ACTIVE) is as fast
but starves every other process on the machine, even after torch is told to use fewer threads
(the idle threads keep spinning).
libgomp's middle way: spin GOMP_SPINCOUNT times, then sleep. Three million spins (a few ms) keep
ACTIVE's speed and let idle threads sleep (figures: benchmarks/RESULTS.md); libgomp itself cuts
the spinning to almost nothing when threads outnumber cores.

libgomp reads these variables once, when torch loads it, so the CLI calls `choose_wait_policy`
before importing torch. Library users set them in their own environment if they like.
"""

from __future__ import annotations

import os

__all__ = ["SPIN_COUNT", "FAST_ENV", "choose_wait_policy", "off_by_environment"]

SPIN_COUNT = "3000000"
FAST_ENV = "MNISTLAB_FAST"  # "0" turns every speed-up off for the process and its children


def off_by_environment() -> bool:
    """Whether MNISTLAB_FAST switches the speed-ups off (0, false, no, off)."""
    return os.environ.get(FAST_ENV, "1").strip().lower() in ("0", "false", "no", "off")


def choose_wait_policy() -> str | None:
    """Set GOMP_SPINCOUNT for this process and its children unless the user chose an OpenMP
    wait setting or switched mnistlab's speed-ups off; returns what was set."""
    if any(os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        return None
    if off_by_environment():
        return None
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return SPIN_COUNT
