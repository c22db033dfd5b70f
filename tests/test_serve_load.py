"""Fifty clients at once against `mnistlab serve` on 127.0.0.1 (a real uvicorn server): every
request answered, every client served, the live streams kept. Timings are measured by
benchmarks/serve_load.py (results in benchmarks/RESULTS.md); here the bounds are loose enough for
a busy CI machine and still fail a server that serialises or drops requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import threading
import time

import pytest
from conftest import SHARED_DATA

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx", reason="httpx is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the `serve` extra (uvicorn) is not installed")

from mnistlab import load_experiment  # noqa: E402
from mnistlab.rundir.directory import read_history, write_history  # noqa: E402
from mnistlab.rundir.execute import run_experiment  # noqa: E402
from mnistlab.serve.app import create_app  # noqa: E402

CLIENTS, SECONDS = 50, 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _clients(base: str, names: list[str], live: str) -> tuple[list[list[float]], list]:
    paths = ["/api/runs", f"/api/runs/{names[0]}", f"/api/runs/{names[1]}/examples?true=4&"
             "predicted=9", f"/api/compare?run={names[0]}&run={names[1]}", "/"]
    errors: list[str] = []
    streams: list[int] = []

    async def client(k: int, http: httpx.AsyncClient) -> list[float]:
        times: list[float] = []

        async def stream() -> None:
            async with http.stream("GET", f"/api/runs/{live}/events") as r:
                async for line in r.aiter_lines():
                    if line.startswith("event: status"):
                        streams.append(k)
                        return

        task = asyncio.create_task(stream())
        until, i = time.monotonic() + SECONDS, k
        while time.monotonic() < until:
            start = time.perf_counter()
            try:
                r = await http.get(paths[i % len(paths)])
                if r.status_code != 200:
                    errors.append(f"{paths[i % len(paths)]}: {r.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"{paths[i % len(paths)]}: {type(exc).__name__}")
            times.append(time.perf_counter() - start)
            i += 1
            await asyncio.sleep(0.2)
        await asyncio.wait_for(task, timeout=30)
        return times

    async with contextlib.AsyncExitStack() as stack:  # each client its own two connections
        pool = [await stack.enter_async_context(httpx.AsyncClient(
            base_url=base, timeout=30, limits=httpx.Limits(max_connections=2)))
            for _ in range(CLIENTS)]
        times = await asyncio.gather(*(client(k, pool[k]) for k in range(CLIENTS)))
    return times, errors + [f"stream {k} got no status" for k in range(CLIENTS)
                            if k not in streams]


def test_fifty_clients_at_once_are_all_served(tmp_path, session_cache, monkeypatch):
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present")
    monkeypatch.setenv("MNISTLAB_CACHE", str(session_cache))
    root = tmp_path / "runs"
    names = []
    for hidden in (16, 32):
        exp = load_experiment("raw/template", [
            "data.train_samples=300", "data.test_samples=500", "data.validation=0.2",
            "training.epochs=2", f"model.hidden=[{hidden}]", "output.plots=false"])
        names.append(run_experiment(exp, root, SHARED_DATA).run_dir.name)
    live = root / "20990101-000000-live"
    live.mkdir()
    shutil.copy(root / names[0] / "config.toml", live / "config.toml")
    full = read_history(root / names[0] / "history.csv")
    write_history(live / "history.csv", {k: v[:1] for k, v in full.items()})
    (live / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(root, data_dir=SHARED_DATA),
                                           host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        times, errors = asyncio.run(_clients(f"http://127.0.0.1:{port}", names, live.name))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert errors == []
    assert all(len(t) >= 3 for t in times), [len(t) for t in times]  # nobody starved
    everything = [x for t in times for x in t]
    assert statistics.median(everything) < 2.0, statistics.median(everything)
