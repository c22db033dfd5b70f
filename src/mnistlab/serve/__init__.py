"""`mnistlab serve`: a local web app over the runs folder (read-only).

    index.py     the runs listing, cached by each run's file signatures; names -> runs
    details.py   one run as JSON: curves, summary, scores, status and ETA
    examples.py  the test images of one (true, predicted) cell of the confusion matrix
    live.py      server-sent events: new history.csv rows as the trainer writes them
    draw.py      a PNG from the browser -> `predict`'s checks and preparation -> top classes
    cache.py     answers kept as JSON bytes, keyed by the signatures of the run files read
    api.py       the JSON endpoints under /api/ (work in a few worker threads)
    app.py       `create_app`: pages, static files, reports, the API

Nothing here writes into the runs folder. A run named in a URL is looked up in the listing,
never joined into a path. Starlette and uvicorn are the `serve` extra: import them only here.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):
    """`mnistlab.serve.app.create_app`, imported on first use (Starlette loads only then)."""
    from mnistlab.serve.app import create_app as make

    return make(*args, **kwargs)
