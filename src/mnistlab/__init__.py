"""mnistlab: train, evaluate and compare small neural networks on MNIST-style images.

The library mirrors the CLI: every command has a one-call Python equivalent.

    >>> import mnistlab
    >>> exp = mnistlab.load_experiment("raw/template", ["training.epochs=2"])
    >>> run = mnistlab.run_experiment(exp, runs_dir="runs")  # doctest: +SKIP
    >>> run.metrics["test_accuracy"], run.model, run.predict(images)  # doctest: +SKIP

In Jupyter a run shows itself (summary, curves, confusion matrix) and training shows a bar.
"""

__version__ = "0.1.0"

from mnistlab.config.load import load_experiment  # noqa: E402 - after __version__, which it may read
from mnistlab.config.sections import Experiment  # noqa: E402
from mnistlab.errors import ConfigError, DataError, MnistlabError, RunError, TrainingError  # noqa: E402

__all__ = [
    "__version__",
    "Experiment",
    "load_experiment",
    "run_experiment",
    "resume_run",
    "load_dataset",
    "list_runs",
    "load_run",
    "Run",
    "MnistlabError",
    "ConfigError",
    "DataError",
    "RunError",
    "TrainingError",
]


def __getattr__(name: str):
    """Heavy parts (torch) load on first use, so `import mnistlab` and the CLI start fast."""
    if name in ("run_experiment", "resume_run", "load_run", "Run"):
        from mnistlab.notebook import result  # the runs' Python face: model, predict, HTML

        return getattr(result, name)
    if name == "load_dataset":
        from mnistlab.data.load import load_dataset

        return load_dataset
    if name == "list_runs":
        from mnistlab.rundir.directory import list_runs

        return list_runs
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
