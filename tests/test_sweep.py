"""Sweeps: points and validation, runs that resume, tables and plots, and a real Dask cluster
(scheduler + two workers on 127.0.0.1, one killed mid-sweep)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mnistlab.commands.main import main
from mnistlab.errors import ConfigError
from mnistlab.experiments.sweep import load_sweep, run_sweep, sweep_points, sweep_results

TINY_SET = """
"data.train_samples" = 60
"data.test_samples" = 20
"data.validation" = 0.2
"training.epochs" = 2
"training.batch_size" = 16
"output.plots" = false
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tiny_sweep(tmp_path: Path, axes: str, head: str = "seeds = 2", name: str = "s") -> Path:
    return write(tmp_path / f"{name}.toml",
                 f'base = "raw/template"\n{head}\n[set]\n{TINY_SET}\n[axes]\n{axes}\n')


def run_names(root: Path) -> list[str]:
    """Run names (timestamp stripped) of every run directory in `root`."""
    return sorted(p.name.split("-", 2)[2] for p in root.iterdir() if not p.name.startswith("."))


def test_grid_points_names_and_overrides(tmp_path):
    path = tiny_sweep(tmp_path, '"model.hidden" = [[8], [16, 8]]\n'
                      '"model.activation" = ["relu", "tanh", "sigmoid"]')
    points = sweep_points(load_sweep(path))
    assert len(points) == 2 * 3 * 2
    assert points[0].experiment.output.name == "s-p001-s0"
    assert points[-1].experiment.output.name == "s-p006-s1"
    p4 = [pt for pt in points if pt.point == 4][0]
    assert p4.values == {"model.hidden": [16, 8], "model.activation": "relu"}
    exp = p4.experiment
    assert exp.model.hidden == (16, 8) and exp.model.activation == "relu"
    assert exp.training.epochs == 2 and exp.data.train_samples == 60  # [set] applied
    assert exp.data.validation == 0.2 and exp.model.dropout == 0.0  # the rest from the base
    assert [pt.seed for pt in points[:2]] == [0, 1]


def test_random_mode_draws_distinct_points_reproducibly(tmp_path):
    axes = '"model.hidden" = [[8], [16], [32], [64]]\n"optimizer.learning_rate" = [0.1, 0.01, ' \
           '0.001]\n"model.dropout" = [0.0, 0.2, 0.5]'
    path = tiny_sweep(tmp_path, axes, 'seeds = [3]\nmode = "random"\ntrials = 5')
    first = sweep_points(load_sweep(path))
    again = sweep_points(load_sweep(path))
    combos = [tuple(json.dumps(v) for v in pt.values.values()) for pt in first]
    assert len(first) == 5 and len(set(combos)) == 5 and {pt.seed for pt in first} == {3}
    assert [pt.values for pt in first] == [pt.values for pt in again]
    everything = tiny_sweep(tmp_path, axes, 'mode = "random"\ntrials = 500', name="all")
    assert len(sweep_points(load_sweep(everything))) == 36  # capped at the grid


@pytest.mark.parametrize("axes, head, match", [
    ('"model.activation" = ["relu", "tanhh"]', "", r"axis model\.activation\[1\] = 'tanhh'.*"
     r"must be one of"),
    ('"model.hiden" = [[8]]', "", r"axis model\.hiden\[0\].*unknown key model\.hiden.*hidden"),
    ('"model.hidden" = [[8], [0]]', "", r"axis model\.hidden\[1\] = \[0\].*hidden\[0\] must be"),
    ('"features.pixels_per_cell" = [4, 29]', "", r"axis features\.pixels_per_cell\[1\] = 29"),
    ('"hidden" = [1]', "", r'\[axes\] key must be a config field "section\.key"'),
    ('"model.dropout" = []', "", r"axis model\.dropout must be a non-empty list"),
    ('"model.dropout" = [0.1, 0.1]', "", r"axis model\.dropout\[1\] must be a value not already"),
    ('"training.seed" = [1, 2]', "", r"training\.seed is not allowed \(use seeds"),
    ('"model.dropout" = [0.1]', "seeds = 0", r"seeds must be"),
    ('"model.dropout" = [0.1]', 'mode = "random"', r"trials must be an int >= 1"),
    ('"model.dropout" = [0.1]', 'mode = "bayes"', r"mode must be one of"),
])
def test_invalid_sweeps_fail_before_anything_runs(tmp_path, axes, head, match):
    path = tiny_sweep(tmp_path, axes, head)
    with pytest.raises(ConfigError, match=match):
        run_sweep(load_sweep(path))
    assert not (tmp_path / "runs").exists()
    assert main(["sweep", "run", str(path)]) == 2


def test_cross_field_problem_names_the_point(tmp_path):
    path = tiny_sweep(tmp_path, '"optimizer.clipnorm" = [1.0]\n"optimizer.global_clipnorm" = '
                      '[2.0]', "")
    with pytest.raises(ConfigError, match=r"point 1 \(optimizer\.clipnorm=1\.0, optimizer\."
                       r"global_clipnorm=2\.0\): .*global_clipnorm"):
        sweep_points(load_sweep(path))


def test_failed_point_is_recorded_and_rerun_skips_finished(tiny_dataset, tmp_path, capsys):
    path = tiny_sweep(tmp_path, '"data.dataset" = ["mnist", "fashion-mnist"]\n'
                      '"model.hidden" = [[8]]')
    assert main(["sweep", "run", str(path), "--jobs", "1", "--quiet"]) == 1
    name, axes, rows = sweep_results(path)
    assert name == "s" and axes == ["data.dataset", "model.hidden"]
    assert [len(r.accuracies) for r in rows] == [2, 0]
    assert len(rows[1].errors) == 2 and "fashion-mnist" in rows[1].errors[0]
    assert run_names(tmp_path / "runs") == ["s-p001-s0", "s-p001-s1"]
    capsys.readouterr()
    assert main(["sweep", "run", str(path), "--jobs", "1"]) == 1  # the failure is retried
    assert "skipped 2" in capsys.readouterr().out
    assert run_names(tmp_path / "runs") == ["s-p001-s0", "s-p001-s1"]


def test_interrupted_sweep_keeps_finished_points(tiny_dataset, tmp_path):
    sweep = load_sweep(tiny_sweep(tmp_path, '"model.hidden" = [[8], [12], [16]]'))
    seen = []

    def interrupt(kind, index, payload):
        seen.append(kind)
        if seen.count("complete") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, on_event=interrupt)
    assert len(run_names(tmp_path / "runs")) == 2
    outcomes = run_sweep(sweep)
    assert [o.status for o in outcomes].count("skipped") == 2
    assert all(o.status in ("complete", "skipped") for o in outcomes)
    names = run_names(tmp_path / "runs")
    assert names == sorted(pt.experiment.output.name for pt in sweep_points(sweep))


def _check_table_and_plots(path: Path, runs: Path, out: Path) -> None:
    """Table mean/std are the statistics of the runs' own metrics.json; the plot draws them."""
    from mnistlab.experiments.sweep_table import axis_figure

    name, axes, rows = sweep_results(path)
    for row in rows:
        accs = []
        for seed in (0, 1):
            run = [p for p in runs.iterdir() if p.name.endswith(f"{name}-p{row.point:03d}-s{seed}")]
            assert len(run) == 1
            accs.append(json.loads((run[0] / "metrics.json").read_text())["test_accuracy"])
        assert row.accuracies == pytest.approx(accs)
        assert row.mean == pytest.approx(statistics.mean(accs))
        assert row.std == pytest.approx(statistics.stdev(accs))
    fig = axis_figure(name, axes, rows, axes[0])
    series = [c.lines[0] for c in fig.axes[0].containers]  # errorbar: (data line, caps, bars)
    drawn = sorted(y for line in series for y in line.get_ydata())
    assert drawn == pytest.approx(sorted(r.mean for r in rows))
    for axis in axes:
        assert (out / f"accuracy-vs-{axis}.png").stat().st_size > 5000
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(rows)


@pytest.mark.slow
def test_local_jobs_2_on_real_mnist_table_and_plots(shared_data, tmp_path, capsys):
    path = write(tmp_path / "real.toml", """
base = "raw/template"
seeds = 2
[set]
"data.train_samples" = 500
"data.test_samples" = 300
"training.epochs" = 2
"output.plots" = false
[axes]
"model.hidden" = [[16], [64]]
""")
    assert main(["sweep", "run", str(path), "--jobs", "2", "--quiet"]) == 0
    assert main(["sweep", "show", "real", "--out", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().out
    assert "p002" in shown and "2/2" in shown
    _check_table_and_plots(path, tmp_path / "runs", tmp_path / "out")
    assert len(run_names(tmp_path / "runs")) == 4
    # compare and the report take a sweep, by file or by name
    from mnistlab.report.compare import collect_runs

    by_file, _ = collect_runs([path])
    by_name, _ = collect_runs(["real"])
    assert sorted(i.name for i in by_file) == sorted(i.name for i in by_name)
    assert len(by_file) == 4
    assert sorted(i.name.split("-", 2)[2] for i in by_file) == sorted(run_names(tmp_path / "runs"))
    assert main(["report", "real", "-o", str(tmp_path / "report")]) == 0
    assert "model.hidden" in (tmp_path / "report" / "report.md").read_text()


# --- a real cluster: `dask scheduler` and two `dask worker` processes on loopback ---------------

def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture
def dask_cluster(tmp_path, session_cache, shared_data):
    """(scheduler address, {worker name: Popen}); every process is torn down afterwards."""
    dask = Path(sys.executable).with_name("dask")
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "MNISTLAB_DATA": str(shared_data), "MNISTLAB_CACHE": str(session_cache),
           "TMPDIR": str(tmp_path)}
    logs = open(tmp_path / "dask.log", "wb")  # noqa: SIM115 - closed in finally
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["scheduler"] = subprocess.Popen(
            [str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)], env=env, stdout=logs, stderr=logs)
        _wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, 30, "scheduler")
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for name in ("w1", "w2"):
            procs[name] = subprocess.Popen(
                [str(dask), "worker", address, "--nthreads", "1", "--no-nanny", "--name", name,
                 "--host", "127.0.0.1", "--no-dashboard"], env=env, stdout=logs, stderr=logs)
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=30)
        yield address, procs
    finally:
        for proc in procs.values():  # a test cluster holds nothing worth a graceful close
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        logs.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cluster_sweep_survives_a_killed_worker(dask_cluster, tmp_path):
    address, procs = dask_cluster
    path = write(tmp_path / "remote.toml", """
base = "raw/template"
seeds = 2
[set]
"data.train_samples" = 2000
"data.test_samples" = 200
"training.epochs" = 3
"training.threads" = 1
"output.plots" = false
[axes]
"model.hidden" = [[16], [32]]
""")
    killed = {}

    def kill_w2_mid_task():
        from distributed import Client

        with Client(address, timeout=30) as client:
            def w2_busy():
                info = client.scheduler_info(n_workers=-1)["workers"]
                addr = [a for a, w in info.items() if w.get("name") == "w2"]
                return addr and client.processing(workers=addr).get(addr[0])

            killed["tasks"] = _wait_for(w2_busy, 60, "a task on w2")
            time.sleep(1.0)  # inside the task, past its start
            procs["w2"].send_signal(signal.SIGKILL)
            killed["rc"] = procs["w2"].wait(timeout=10)

    killer = threading.Thread(target=kill_w2_mid_task, daemon=True)
    killer.start()
    assert main(["sweep", "run", str(path), "--cluster", address, "--quiet"]) == 0
    killer.join(timeout=30)
    assert killed.get("rc") == -signal.SIGKILL and killed["tasks"]
    assert procs["w1"].poll() is None  # the survivor did the rest
    # the killed task's temporary run folder is left on the worker: it died mid-task
    assert list(tmp_path.glob("mnistlab-job-*"))
    expected = sorted(f"remote-p{p:03d}-s{s}" for p in (1, 2) for s in (0, 1))
    assert run_names(tmp_path / "runs") == expected  # every point exactly once
    for run in (tmp_path / "runs").iterdir():
        if not run.name.startswith("."):
            assert json.loads((run / "status.json").read_text())["status"] == "complete"
            assert {"config.toml", "metrics.json", "model.pt", "predictions.npz"} <= {
                p.name for p in run.iterdir()}
    _, _, rows = sweep_results(path)
    assert [len(r.accuracies) for r in rows] == [2, 2]


def test_dry_run_lists_runs_and_runs_nothing(tmp_path, capsys):
    path = tiny_sweep(tmp_path, '"model.dropout" = [0.0, 0.5]', "seeds = [4, 9]")
    assert main(["sweep", "run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "s-p001-s4 model.dropout=0.0" in out and "s-p002-s9 model.dropout=0.5" in out
    assert "4 runs (2 points x 2 seeds)" in out
    assert not (tmp_path / "runs").exists()
