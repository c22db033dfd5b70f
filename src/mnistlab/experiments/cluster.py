"""Running experiments on Dask: a local cluster of single-task worker processes (`--jobs N`)
or an existing scheduler (`--cluster ADDRESS`). A worker that dies mid-task costs only that task:
the scheduler reschedules it on another worker (up to `distributed.scheduler.allowed-failures`).
Runs are submitted longest first (`cost.longest_first`, with matching Dask priorities), so the
last minutes are short runs side by side rather than one long run beside idle cores.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
import uuid
from collections.abc import Callable

from mnistlab.config.identity import config_digest
from mnistlab.config.sections import Experiment
from mnistlab.errors import RunError
from mnistlab.experiments.cost import longest_first
from mnistlab.experiments.remote import EVENT_TOPIC, run_remote
from mnistlab.training.device import usable_cores

__all__ = ["run_on_dask", "TASK_RETRIES"]

TASK_RETRIES = 2  # extra attempts for a task whose result could not be delivered


def _connect(address: str | None, jobs: int):
    """(client, cluster or None, torch threads per task or None to keep the config's)."""
    from distributed import Client, LocalCluster

    if address is not None:
        try:
            return Client(address, timeout="20s"), None, None
        except (OSError, TimeoutError) as exc:
            raise RunError(f"--cluster {address}: cannot reach the Dask scheduler ({exc}); "
                           "start one with `dask scheduler` or check MNISTLAB_DASK") from None
    threads = max(1, usable_cores() // jobs)
    # One task per worker process: torch's thread count is per process, so two trainings in one
    # worker would fight over it; the worker's cores go to torch instead (workers x threads).
    local = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=None,
                         silence_logs=logging.ERROR)  # not "worker still alive, killing"
    return Client(local), local, threads


def run_on_dask(experiments: list[Experiment], todo: list[int], data_dir, jobs: int,
                address: str | None, on_started: Callable[[int, str | None], None],
                on_result: Callable[[int, dict | BaseException], None],
                on_interrupted: Callable[[list[int]], None]) -> None:
    """Run `experiments[i]` for i in `todo` on Dask. `on_started(i, worker)` as each task starts,
    `on_result(i, payload or the exception its future raised)` as each ends,
    `on_interrupted(indices under way)` on Ctrl-C (the tasks are lost with the cluster), before
    the KeyboardInterrupt goes on up."""
    client, local, threads = _connect(address, jobs)
    started: queue.Queue = queue.Queue()

    def announced(event) -> None:  # runs on the client's event-loop thread
        msg = event[1] if isinstance(event, tuple) else event
        started.put(msg)

    data_arg = str(data_dir) if data_dir is not None else None  # else: the worker's own lookup
    running: set[int] = set()
    try:
        client.subscribe_topic(EVENT_TOPIC, announced)
        pending = {}
        order = longest_first(experiments, todo)
        for rank, i in enumerate(order):
            exp = experiments[i]
            if threads is not None and exp.training.threads == 0:
                exp = dataclasses.replace(
                    exp, training=dataclasses.replace(exp.training, threads=threads))
            pending[i] = client.submit(run_remote, exp, data_arg, i, key=f"mnistlab-{i}-"
                                       f"{config_digest(exp)}-{uuid.uuid4().hex[:6]}",
                                       retries=TASK_RETRIES, pure=False,
                                       priority=len(order) - rank)
        while pending:
            while not started.empty():
                msg = started.get()
                i = msg.get("index") if isinstance(msg, dict) else None
                if i in pending and i not in running:
                    running.add(i)
                    on_started(i, msg.get("worker"))
            finished = [i for i, f in pending.items() if f.done()]
            for i in finished:
                future = pending.pop(i)
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker after many deaths
                    result = exc
                running.discard(i)
                on_result(i, result)
            if not finished:
                time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C here: the tasks under way are lost with the cluster
        on_interrupted(sorted(running))
        raise
    finally:
        client.close()
        if local is not None:
            local.close()
