"""The JSON endpoints under /api/ (documented in docs/serve.md), for the pages and for scripts.

Handlers are thin: they look runs up in the `RunIndex` (404 for a name it does not list), call
the library (`runs`, `report.compare`/`verdicts`, `predict`) and return JSON. Blocking work runs
in Starlette's thread pool so one slow request never stalls the event loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mnistlab.errors import MnistlabError
from mnistlab.runs.directory import RunInfo, load_run
from mnistlab.serve.details import progress, run_detail
from mnistlab.serve.draw import MAX_BODY_BYTES, PredictorCache, decode_data_url, predict_image
from mnistlab.serve.examples import TestImages, cell_examples
from mnistlab.serve.index import RunIndex, run_file, run_row
from mnistlab.serve.live import run_events

__all__ = ["ServeState", "api_routes", "json_safe", "compare_payload"]


@dataclass
class ServeState:
    """What every handler shares: the runs, the report folders and the networks loaded."""

    index: RunIndex
    reports: list[Path] = field(default_factory=list)  # folders holding a report.html
    test_images: TestImages = field(default_factory=TestImages)
    predictors: PredictorCache = field(default_factory=PredictorCache)


def json_safe(value: Any) -> Any:
    """NaN and infinities as null (JSON has neither), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json_safe(data), status_code=status)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def _lookup(request: Request) -> RunInfo | JSONResponse:
    state = _state(request)
    name = request.path_params["name"]
    info = state.index.get(name)
    if info is None:
        return _error(f"{name}: no run of that name in the runs folder; GET /api/runs lists "
                      "them", 404)
    return info


async def runs_list(request: Request) -> Response:
    state = _state(request)
    rows = await run_in_threadpool(lambda: [run_row(i) for i in state.index.runs()])
    return _json({"root": str(state.index.root), "error": state.index.error, "runs": rows})


async def run_one(request: Request) -> Response:
    info = _lookup(request)
    if isinstance(info, Response):
        return info
    root = _state(request).index.root
    return _json(await run_in_threadpool(run_detail, info, root))


async def run_examples(request: Request) -> Response:
    info = _lookup(request)
    if isinstance(info, Response):
        return info
    state = _state(request)
    try:
        true = int(request.query_params.get("true", ""))
        predicted = int(request.query_params.get("predicted", ""))
        limit = int(request.query_params.get("limit", "24"))
    except ValueError:
        return _error("true, predicted (and limit) must be integers, e.g. ?true=4&predicted=9",
                      400)
    try:
        data = await run_in_threadpool(cell_examples, info, state.index.root, true, predicted,
                                       state.test_images, limit)
    except MnistlabError as exc:
        return _error(str(exc), 404 if "missing" in str(exc) else 422)
    return _json(data)


async def run_events_stream(request: Request) -> Response:
    info = _lookup(request)
    if isinstance(info, Response):
        return info
    root = _state(request).index.root
    try:
        after = max(0, int(request.query_params.get("after", "0")))
    except ValueError:
        return _error("after must be an integer (epochs the page already has)", 400)
    history = run_file(info, "history.csv", root) or info.path / "history.csv"
    if not history.resolve().is_relative_to(root.resolve()):
        return _error(f"{info.name}/history.csv: leads outside the runs folder", 403)

    def current(rows: list[dict]) -> dict:
        fresh = load_run(info.path)  # read on change only: the status may have just moved on
        keys = list(rows[0]) if rows else []
        hist = {k: [r[k] for r in rows] for k in keys if k != "epoch"}
        return json_safe(progress(fresh, root, hist))

    events = run_events(history, info.path / "status.json", current, request.is_disconnected,
                        after)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def predict(request: Request) -> Response:
    """POST {"run": name, "image": "data:image/png;base64,..."} -> top-3 and the 28x28 frame."""
    state = _state(request)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return _error(f"request body over {MAX_BODY_BYTES:,} bytes; send a smaller image", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _error(f"request body over {MAX_BODY_BYTES:,} bytes; send a smaller image",
                          413)
    import json

    try:
        payload = json.loads(bytes(body))
        name = payload["run"]
        data = decode_data_url(payload.get("image"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return _error('body must be JSON {"run": NAME, "image": "data:image/png;base64,..."}',
                      400)
    except MnistlabError as exc:
        return _error(str(exc), 400)
    info = state.index.get(name) if isinstance(name, str) else None
    if info is None:
        return _error(f"{name}: no run of that name in the runs folder", 404)

    def work() -> dict:
        predictor = state.predictors.get(info, state.index.root)
        return {"run": info.name, **predict_image(predictor, data)}

    try:
        result = await run_in_threadpool(work)
    except MnistlabError as exc:
        return _error(str(exc), 422)
    return _json(result, 200 if result["error"] is None else 422)


def compare_payload(infos: list[RunInfo], root: Path) -> dict[str, Any]:
    """`mnistlab compare`'s table and verdicts for these runs, and their validation curves."""
    from mnistlab.report.compare import compare, groups_test_validation_warning
    from mnistlab.report.verdicts import QUESTIONS, experiment_tests

    comp = compare([i.path for i in infos], root)
    rows = []
    for r in comp.rows():
        rows.append({**r, **{k: {"mean": r[k].mean, "std": r[k].std, "low": r[k].low,
                                 "high": r[k].high, "n": r[k].n, "text": r[k].text()}
                             for k in ("test_loss", "test_accuracy", "f1_macro")}})
    verdicts = []
    for metric in ("test_accuracy", "f1_macro"):
        for v in experiment_tests(comp, metric):
            res = v.result
            verdicts.append({
                "question": v.question, "metric": v.metric, "a": v.a.label, "b": v.b.label,
                "a_run": v.a_run, "b_run": v.b_run, "verdict": v.verdict, "effect": v.effect,
                "test": res.test if res else None, "p": res.p_value if res else None,
                "p_holm": v.p_adjusted, "reason": v.reason})
    curves = {i.name: {k: (i.history or {}).get(k, []) for k in ("val_loss", "val_accuracy")}
              for i in infos}
    return {"runs": [i.name for i in infos], "configurations": rows, "verdicts": verdicts,
            "questions": QUESTIONS, "curves": curves,
            "skipped": [{"run": Path(p).name, "reason": why} for p, why in comp.skipped],
            "warning": groups_test_validation_warning(comp.groups)}


async def compare_runs(request: Request) -> Response:
    """GET /api/compare?run=A&run=B..."""
    state = _state(request)
    names = request.query_params.getlist("run")
    if not names:
        return _error("name the runs to compare: /api/compare?run=A&run=B", 400)
    infos = []
    for name in dict.fromkeys(names):
        info = state.index.get(name)
        if info is None:
            return _error(f"{name}: no run of that name in the runs folder", 404)
        infos.append(info)
    try:
        data = await run_in_threadpool(compare_payload, infos, state.index.root)
    except MnistlabError as exc:
        return _error(str(exc), 422)
    return _json(data)


async def reports_list(request: Request) -> Response:
    state = _state(request)
    out = []
    for i, folder in enumerate(state.reports):
        html = folder / "report.html"
        if html.is_file():
            out.append({"id": i, "folder": str(folder), "url": f"/reports/{i}",
                        "modified": html.stat().st_mtime})
    return _json({"reports": out})


def api_routes() -> list[Route]:
    return [
        Route("/api/runs", runs_list),
        Route("/api/runs/{name}", run_one),
        Route("/api/runs/{name}/examples", run_examples),
        Route("/api/runs/{name}/events", run_events_stream),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/compare", compare_runs),
        Route("/api/reports", reports_list),
    ]
