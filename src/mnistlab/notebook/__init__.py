"""mnistlab from Python and Jupyter: a run as one object, shown as HTML, with a progress bar.

    result.py    `Run` (history, metrics, the trained model, `predict`), `run_experiment`,
                 `resume_run`, `load_run`: what `import mnistlab` offers
    images.py    arrays of images -> `mnistlab predict`'s preparation -> classes
    display.py   HTML for a run, its history and metrics (figures embedded, nothing fetched)
    progress.py  whether we run in a Jupyter kernel; a rich progress bar that draws there
"""
