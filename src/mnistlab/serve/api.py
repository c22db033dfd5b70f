"""The JSON endpoints under /api/ (documented in docs/serve.md), for the pages and for scripts.

Handlers are thin: they look runs up in the `RunIndex` (404 for a name it does not list), call
the library (`runs`, `report.compare`/`verdicts`, `predict`) and return JSON. The work runs in
worker threads, at most `WORKERS` at once, so the event loop stays free to answer and stream;
answers about finished runs are cached by their files' signatures (`cache.AnswerCache`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mnistlab.errors import MnistlabError
from mnistlab.rundir.directory import RunInfo, read_status
from mnistlab.serve.cache import AnswerCache, json_safe
from mnistlab.serve.details import progress, run_detail
from mnistlab.serve.draw import MAX_BODY_BYTES, PredictorCache, decode_data_url, predict_image
from mnistlab.serve.examples import TestImages, cell_examples
from mnistlab.serve.index import RunIndex, run_file, run_row
from mnistlab.serve.live import run_events

__all__ = ["ServeState", "api_routes", "compare_payload", "WORKERS"]

WORKERS = 4  # requests computing at once; more would only fight over the GIL and the cores


@dataclass
class ServeState:
    """What every handler shares: the runs, the report folders, the networks loaded, the
    cached answers and the limit on work running at once."""

    index: RunIndex
    reports: list[Path] = field(default_factory=list)  # folders holding a report.html
    test_images: TestImages = field(default_factory=TestImages)
    predictors: PredictorCache = field(default_factory=PredictorCache)
    answers: AnswerCache = field(default_factory=AnswerCache)
    workers: anyio.CapacityLimiter | None = None  # made on first use, inside the event loop


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json_safe(data), status_code=status)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def _no_run(name: object) -> tuple[int, dict]:
    return 404, {"error": f"{name}: no run of that name in the runs folder; GET /api/runs "
                          "lists them"}


async def _answer(request: Request, work: Callable[[ServeState], tuple[int, bytes]]) -> Response:
    """Run `work(state)` in a worker thread (at most WORKERS at once); its bytes are JSON."""
    state = _state(request)
    if state.workers is None:
        state.workers = anyio.CapacityLimiter(WORKERS)
    status, body = await anyio.to_thread.run_sync(work, state, limiter=state.workers)
    return Response(body, status_code=status, media_type="application/json")


def _cache_key(state: ServeState, info: RunInfo, *rest: object) -> tuple | None:
    """None (do not cache) while the run trains: its ETA moves with the clock."""
    return None if info.status == "running" else (*rest, state.index.key(info))


async def runs_list(request: Request) -> Response:
    def work(state: ServeState) -> tuple[int, bytes]:
        return state.answers.get(("runs", state.index.version()), lambda: (200, {
            "root": str(state.index.root), "error": state.index.error,
            "runs": [run_row(i) for i in state.index.runs()]}))

    return await _answer(request, work)


async def run_one(request: Request) -> Response:
    name = request.path_params["name"]

    def work(state: ServeState) -> tuple[int, bytes]:
        info = state.index.get(name)
        if info is None:
            return state.answers.get(None, lambda: _no_run(name))
        return state.answers.get(_cache_key(state, info, "run"),
                                 lambda: (200, run_detail(info, state.index.root)))

    return await _answer(request, work)


async def run_examples(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        true = int(request.query_params.get("true", ""))
        predicted = int(request.query_params.get("predicted", ""))
        limit = int(request.query_params.get("limit", "24"))
    except ValueError:
        return _error("true, predicted (and limit) must be integers, e.g. ?true=4&predicted=9",
                      400)

    def work(state: ServeState) -> tuple[int, bytes]:
        info = state.index.get(name)

        def make() -> tuple[int, dict]:
            if info is None:
                return _no_run(name)
            try:
                return 200, cell_examples(info, state.index.root, true, predicted,
                                          state.test_images, limit)
            except MnistlabError as exc:
                return (404 if "missing" in str(exc) else 422), {"error": str(exc)}

        key = None if info is None else _cache_key(state, info, "examples", true, predicted,
                                                   limit)
        return state.answers.get(key, make)

    return await _answer(request, work)


async def run_events_stream(request: Request) -> Response:
    name = request.path_params["name"]
    state = _state(request)
    info = await anyio.to_thread.run_sync(state.index.get, name)
    if info is None:
        return _error(_no_run(name)[1]["error"], 404)
    root = state.index.root
    try:
        after = max(0, int(request.query_params.get("after", "0")))
    except ValueError:
        return _error("after must be an integer (epochs the page already has)", 400)
    history = run_file(info, "history.csv", root) or info.path / "history.csv"
    if not history.resolve().is_relative_to(root.resolve()):
        return _error(f"{info.name}/history.csv: leads outside the runs folder", 403)

    def current(rows: list[dict]) -> dict:
        # status.json read now (it may have just moved on); the rest from the cached listing
        listed = state.index.get(name) or info
        fresh = dataclasses.replace(listed, status=read_status(info.path)["status"])
        keys = list(rows[0]) if rows else []
        hist = {k: [r[k] for r in rows] for k in keys if k != "epoch"}
        return json_safe(progress(fresh, root, hist))

    events = run_events(history, info.path / "status.json", current, request.is_disconnected,
                        after)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def predict(request: Request) -> Response:
    """POST {"run": name, "image": "data:image/png;base64,..."} -> top-3 and the 28x28 frame."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return _error(f"request body over {MAX_BODY_BYTES:,} bytes; send a smaller image", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _error(f"request body over {MAX_BODY_BYTES:,} bytes; send a smaller image",
                          413)
    try:
        payload = json.loads(bytes(body))
        name = payload["run"]
        data = decode_data_url(payload.get("image"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return _error('body must be JSON {"run": NAME, "image": "data:image/png;base64,..."}',
                      400)
    except MnistlabError as exc:
        return _error(str(exc), 400)

    def work(state: ServeState) -> tuple[int, bytes]:
        def make() -> tuple[int, dict]:
            info = state.index.get(name)
            if info is None:
                return _no_run(name)
            try:
                predictor = state.predictors.get(info, state.index.root)
            except MnistlabError as exc:
                return 422, {"error": str(exc)}
            result = {"run": info.name, **predict_image(predictor, data)}
            return (200 if result["error"] is None else 422), result

        return state.answers.get(None, make)  # drawings differ: never cached

    return await _answer(request, work)


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
    names = list(dict.fromkeys(request.query_params.getlist("run")))
    if not names:
        return _error("name the runs to compare: /api/compare?run=A&run=B", 400)

    def work(state: ServeState) -> tuple[int, bytes]:
        infos = [state.index.get(name) for name in names]
        if None in infos:
            return state.answers.get(None, lambda: _no_run(names[infos.index(None)]))

        def make() -> tuple[int, dict]:
            try:
                return 200, compare_payload(infos, state.index.root)
            except MnistlabError as exc:
                return 422, {"error": str(exc)}

        keys = [_cache_key(state, info, "compare") for info in infos]
        return state.answers.get(None if None in keys else tuple(keys), make)

    return await _answer(request, work)


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
