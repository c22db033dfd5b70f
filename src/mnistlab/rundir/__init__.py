"""Runs: one experiment end to end into a run directory, and the directory contract every other
command reads.

    execute.py    `run_experiment`, `resume_run`: data -> features -> model -> training -> outputs
    outputs.py    what a finished run writes: metrics.json, predictions, weights, plots
    directory.py  create, lock, status, history, list and load run directories
    metrics.py    test-set scores from scikit-learn
    tensorboard.py      TensorBoard event files: while training, or for a finished run
    mlflow_export.py    finished runs into an MLflow tracking store
    tracking.py         what the two share: optional extras, config as flat params
"""
