"""Many clients against `mnistlab serve` on 127.0.0.1, and a training run beside it.

    MNISTLAB_DATA=../shared/data .venv/bin/python benchmarks/serve_load.py \\
        [--clients 50] [--seconds 10] [--think 0.5] [--train raw/template --epochs 3]

Builds a runs folder of a few small real runs (plus one 'still training', so every client also
holds a live-curves stream open), starts `mnistlab serve` in its own process, then runs
`--clients` concurrent clients for `--seconds` (or as long as `--train` trains). Each keeps one
server-sent-events stream open and loops over what the pages do (runs list, a run, a confusion
cell's images, a drawing to predict, a comparison, a page), waiting `--think` seconds between
requests (0: as fast as it can).
Prints requests per second and p50 / p99 / max latency per endpoint, and errors.

With `--train`, a training run (`mnistlab run PRESET --epochs N`) is timed alone and with the
same load running beside it, `--rounds` times, alternating which goes first; its median epoch
seconds are compared (the first epoch of each run is warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

MNISTLAB = [sys.executable, "-m", "mnistlab"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_runs(root: Path) -> list[str]:
    """Four small real MNIST runs and one 'training' (status running, by a live process)."""
    from mnistlab import load_experiment, run_experiment
    from mnistlab.rundir.directory import read_history, write_history

    names = []
    for i, hidden in enumerate((16, 32, 64, 128)):
        exp = load_experiment("raw/template", [
            "data.train_samples=2000", "data.test_samples=1000", "data.validation=0.1",
            "training.epochs=2", f"model.hidden=[{hidden}]", "output.plots=false",
            f'output.name="load-{i}"'])
        names.append(run_experiment(exp, root).run_dir.name)
    live = root / "20990101-000000-live"
    live.mkdir()
    (live / "config.toml").write_text((root / names[0] / "config.toml").read_text())
    full = read_history(root / names[0] / "history.csv")
    write_history(live / "history.csv", {k: v[:1] for k, v in full.items()})
    (live / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
    return names


def _drawing() -> str:
    from PIL import Image, ImageDraw

    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).line([(70, 50), (210, 50), (120, 245)], fill=0, width=20)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _requests(names: list[str], k: int) -> list[tuple[str, str, str, dict | None]]:
    """(label, method, path, JSON body) of what client `k` asks, in turn."""
    drawing = _drawing()
    return [
        ("runs", "GET", "/api/runs", None),
        ("run", "GET", f"/api/runs/{names[k % len(names)]}", None),
        ("examples", "GET", f"/api/runs/{names[k % len(names)]}/examples?true=4&predicted=9",
         None),
        ("predict", "POST", "/api/predict", {"run": names[k % len(names)], "image": drawing}),
        ("compare", "GET", f"/api/compare?run={names[0]}&run={names[1]}", None),
        ("page", "GET", "/", None),
    ]


async def _client(client: httpx.AsyncClient, names: list[str], stop, think: float,
                  times: dict[str, list[float]], errors: list[str], k: int) -> None:
    requests = _requests(names, k)

    async def stream() -> None:  # the run page's live curves, held open all along
        try:
            async with client.stream("GET", "/api/runs/20990101-000000-live/events") as r:
                async for _ in r.aiter_lines():
                    if stop():
                        return
        except httpx.HTTPError as exc:
            errors.append(f"events: {type(exc).__name__}")

    task = asyncio.create_task(stream())
    i = k
    while not stop():
        label, method, path, body = requests[i % len(requests)]
        i += 1
        start = time.perf_counter()
        try:
            r = await client.request(method, path, json=body)
            if r.status_code != 200:
                errors.append(f"{label}: HTTP {r.status_code}")
        except httpx.HTTPError as exc:
            errors.append(f"{label}: {type(exc).__name__}")
            continue
        times.setdefault(label, []).append(time.perf_counter() - start)
        if think:
            await asyncio.sleep(think)
    task.cancel()


async def load(base: str, names: list[str], clients: int, stop, think: float
               ) -> tuple[dict[str, list[float]], list[str]]:
    """`clients` clients until the predicate `stop()` returns says so (made when they start)."""
    times: dict[str, list[float]] = {}
    errors: list[str] = []
    # each client its own connections (one for requests, one for its stream), all made before
    # the clock starts: an httpx client costs ~40 ms of CPU to make (its TLS context)
    limits = httpx.Limits(max_connections=2)
    async with contextlib.AsyncExitStack() as stack:
        pool = [await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30,
                                                                  limits=limits))
                for _ in range(clients)]
        await asyncio.gather(*(_client(pool[k], names, stop(), think, times, errors, k)
                               for k in range(clients)))
    return times, errors


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(times: dict[str, list[float]], errors: list[str], seconds: float) -> None:
    total = sum(len(v) for v in times.values())
    print(f"{total} requests in {seconds:.0f} s = {total / seconds:.0f} req/s; "
          f"{len(errors)} errors {sorted(set(errors))[:5]}")
    print(f"{'endpoint':<10} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    everything = [t for v in times.values() for t in v]
    for label, values in [*sorted(times.items()), ("all", everything)]:
        ms = np.array(values) * 1000
        print(f"{label:<10} {len(ms):>6} {np.percentile(ms, 50):>8.1f} "
              f"{np.percentile(ms, 99):>8.1f} {ms.max():>8.1f}")


def _train(preset: str, epochs: int, runs_dir: Path) -> float:
    """Median epoch seconds of one `mnistlab run`, the first (warm-up) epoch left out."""
    subprocess.run([*MNISTLAB, "run", preset, "--epochs", str(epochs), "--quiet", "--runs-dir",
                    str(runs_dir), "--set", "output.plots=false"], check=True,
                   stdout=subprocess.DEVNULL)
    newest = max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    from mnistlab.rundir.directory import read_history

    return statistics.median(read_history(newest / "history.csv")["seconds"][1:])


def _load_phase(base: str, names: list[str], args, server_pid: int, trainer) -> None:
    """The clients for `args.seconds`, or for as long as `trainer` trains; then the report."""
    clock = {}

    def stop():
        clock["start"] = time.monotonic()
        until = clock["start"] + args.seconds
        return ((lambda: trainer.poll() is not None) if trainer else
                (lambda: time.monotonic() > until))

    server_cpu, own_cpu = _cpu_seconds(server_pid), time.process_time()
    times, errors = asyncio.run(load(base, names, args.clients, stop, args.think))
    wall = time.monotonic() - clock["start"]
    _report(times, errors, wall)
    print(f"CPU: server {(_cpu_seconds(server_pid) - server_cpu) / wall:.0%} of one core, "
          f"load generator {(time.process_time() - own_cpu) / wall:.0%}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--think", type=float, default=0.5,
                        help="seconds each client waits between requests (0: none)")
    parser.add_argument("--train", metavar="PRESET", help="also time this training beside it")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --train: alone/beside pairs, alternating which goes first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        names = make_runs(root)
        port = _free_port()
        server = subprocess.Popen([*MNISTLAB, "serve", "--runs-dir", str(root), "--port",
                                   str(port)], stdout=subprocess.PIPE, text=True)
        try:
            server.stdout.readline()  # the URL line: printed just before it listens
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(base + "/api/runs", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # warm-up: one of each request (imports, dataset, network), as a running server has
            for _label, method, path, body in _requests(names, 0):
                httpx.request(method, base + path, json=body, timeout=120)
            print(f"{args.clients} clients, think time {args.think} s, each holding a "
                  "live-curves stream open")
            if not args.train:
                _load_phase(base, names, args, server.pid, None)
                return
            alone, beside = [], []
            for r in range(args.rounds):  # alternate which side goes first
                for side in (("alone", "beside") if r % 2 == 0 else ("beside", "alone")):
                    runs_dir = Path(tmp) / f"t{r}-{side}"
                    if side == "alone":
                        alone.append(_train(args.train, args.epochs, runs_dir))
                        continue
                    trainer = subprocess.Popen(  # the load lasts as long as this training
                        [sys.executable, "-c", "import sys, json; sys.path[:0] = [sys.argv[1]]; "
                         "import serve_load as b; print(json.dumps(b._train(sys.argv[2], "
                         "int(sys.argv[3]), __import__('pathlib').Path(sys.argv[4]))))",
                         str(Path(__file__).parent), args.train, str(args.epochs),
                         str(runs_dir)], stdout=subprocess.PIPE, text=True)
                    _load_phase(base, names, args, server.pid, trainer)
                    beside.append(json.loads(trainer.communicate()[0].strip().splitlines()[-1]))
                print(f"round {r + 1}: {args.train} median epoch {alone[-1]:.2f} s alone, "
                      f"{beside[-1]:.2f} s beside the load")
            a, b = statistics.median(alone), statistics.median(beside)
            print(f"training {args.train}: median epoch {a:.2f} s alone, {b:.2f} s beside the "
                  f"load ({(b / a - 1) * 100:+.0f}%), medians over {args.rounds} round(s)")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
