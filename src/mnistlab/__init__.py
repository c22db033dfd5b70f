"""mnistlab: train, evaluate and compare small neural networks on MNIST-style images.

The library mirrors the CLI: every command has a one-call Python equivalent.

    >>> import mnistlab
    >>> exp = mnistlab.load_experiment("raw/template", ["training.epochs=2"])
    >>> result = mnistlab.run_experiment(exp, runs_dir="runs")  # doctest: +SKIP
"""

import os as _os

__version__ = "0.1.0"

# Read by OpenMP when torch loads, so set before any submodule imports torch: worker threads
# spin between the short parallel regions of a training step instead of sleeping and being
# woken ~100 us later (hog/final epoch 0.30 -> 0.23 s on 2 cores). On a machine shared with
# other busy jobs, export OMP_WAIT_POLICY=PASSIVE instead (the README says when).
_os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

from .config import Experiment, load_experiment  # noqa: E402
from .errors import ConfigError, DataError, MnistlabError, RunError, TrainingError  # noqa: E402

__all__ = [
    "__version__",
    "Experiment",
    "load_experiment",
    "run_experiment",
    "resume_run",
    "load_dataset",
    "list_runs",
    "load_run",
    "MnistlabError",
    "ConfigError",
    "DataError",
    "RunError",
    "TrainingError",
]


def __getattr__(name: str):
    """Heavy parts (torch) load on first use, so `import mnistlab` and the CLI start fast."""
    if name in ("run_experiment", "resume_run"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "load_dataset":
        from .data import load_dataset

        return load_dataset
    if name in ("list_runs", "load_run"):
        from . import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
