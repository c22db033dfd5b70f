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
from mnistlab.experiments.sweep import load_sweep, run_sweep, sweep_points
from mnistlab.experiments.sweep_results import sweep_results

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


# --- size limit, refusals before anything is written, the appended record, Ctrl-C -------------

BIG_AXES = ('"model.dropout" = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]\n'
            '"optimizer.learning_rate" = [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, '
            '0.0002, 0.0001]\n'
            '"training.batch_size" = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256]')


def test_more_than_1000_runs_needs_max_points(tmp_path, capsys):
    path = tiny_sweep(tmp_path, BIG_AXES, "seeds = 1")  # 11 x 10 x 10 = 1,100 points
    assert main(["sweep", "run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "1,100 runs (1,100 points x 1 seeds) is more than --max-points 1,000" in err
    assert main(["sweep", "run", str(path)]) == 2
    assert not (tmp_path / "runs").exists()
    capsys.readouterr()
    assert main(["sweep", "run", str(path), "--dry-run", "--max-points", "1100"]) == 0
    assert "1100 runs (1100 points x 1 seeds)" in capsys.readouterr().out
    from mnistlab.commands.sweep import MAX_POINTS as CLI_DEFAULT
    from mnistlab.experiments.sweep import MAX_POINTS, sweep_size

    assert CLI_DEFAULT == MAX_POINTS == 1000
    assert sweep_size(load_sweep(path)) == (1100, 1100)
    # seeds count: 400 points x 3 seeds is 1,200 trainings
    seeded = tiny_sweep(tmp_path, '"model.hidden" = [' + ", ".join(f"[{n}]" for n in
                                                                     range(1, 401)) + "]",
                        "seeds = 3", name="seeded")
    with pytest.raises(ConfigError, match=r"1,200 runs \(400 points x 3 seeds\)"):
        sweep_points(load_sweep(seeded))
    assert len(sweep_points(load_sweep(seeded), max_points=1200)) == 1200
    # a grid of 10^12 points is refused from its size alone, at once
    huge = tiny_sweep(tmp_path, BIG_AXES + '\n"model.hidden" = [' + ", ".join(
        f"[{n}]" for n in range(1, 1001)) + "]\n" + '"training.epochs" = ' + str(
        list(range(1, 1001))), "seeds = 1", name="huge")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="1,100,000,000 runs"):
        run_sweep(load_sweep(huge))
    assert time.monotonic() - start < 10
    assert main(["sweep", "run", str(path), "--dry-run", "--max-points", "0"]) == 2


def test_random_draw_from_a_grid_past_sys_maxsize():
    from mnistlab.experiments.sweep import Sweep, _combos, sweep_size

    axes = {f"model.x{i}": list(range(1000)) for i in range(7)}  # 10^21 > sys.maxsize points
    sweep = Sweep("r", "r.toml", "raw/template", (0,), "random", 4, 3, {}, axes)
    assert sweep_size(sweep) == (4, 4)
    first, again = _combos(sweep), _combos(sweep)
    assert first == again and len(set(first)) == 4 and all(len(c) == 7 for c in first)


def test_jobs_0_and_a_runs_folder_that_is_a_file_are_refused_before_anything_is_written(
        tmp_path, capsys):
    path = tiny_sweep(tmp_path, '"model.hidden" = [[8], [12]]')
    assert main(["sweep", "run", str(path), "--jobs", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--jobs must be an int >= 1; got 0" in err
    assert not (tmp_path / "runs").exists()  # no manifest either
    with pytest.raises(ConfigError, match="--jobs"):
        run_sweep(load_sweep(path), jobs=0)
    assert not (tmp_path / "runs").exists()
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    for runs_dir, says in ((blocker, "is a file"), (blocker / "runs", "lies under")):
        assert main(["sweep", "run", str(path), "--jobs", "1", "--quiet",
                     "--runs-dir", str(runs_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err and "unexpected" not in err
    assert blocker.read_text() == "keep me"


def test_manifest_is_written_once_and_outcomes_are_appended(tiny_dataset, tmp_path,
                                                            monkeypatch):
    import mnistlab.atomic as atomic

    path = tiny_sweep(tmp_path, '"model.hidden" = [[8], [12], [16]]', "seeds = 1")
    writes: list[str] = []
    real = atomic.atomic_write_bytes

    def spy(target, data):
        writes.append(Path(target).name)
        return real(target, data)

    monkeypatch.setattr(atomic, "atomic_write_bytes", spy)
    outcomes = run_sweep(load_sweep(path))
    assert [o.status for o in outcomes] == ["complete"] * 3
    assert writes.count("manifest.json") == 1  # not once per finished run
    folder = tmp_path / "runs" / ".sweeps" / "s"
    lines = [json.loads(x) for x in (folder / "outcomes.jsonl").read_text().splitlines()]
    assert [(x["point"], x["status"]) for x in lines] == [(1, "complete"), (2, "complete"),
                                                         (3, "complete")]
    assert [x["run"] for x in lines] == [o.run_dir.name for o in outcomes]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [p["digest"] for p in manifest["points"]] == [x["digest"] for x in lines]
    run_sweep(load_sweep(path))  # a rerun appends "skipped" lines; readers take the latest
    lines = (folder / "outcomes.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all('"skipped"' in x for x in lines[3:])
    with open(folder / "outcomes.jsonl", "a") as fh:
        fh.write('{"digest": "cut sho')  # a crash mid-append leaves half a line
    _, _, rows = sweep_results(path)
    _, _, by_name = sweep_results("s")
    assert [len(r.accuracies) for r in rows] == [len(r.accuracies) for r in by_name] == [1, 1, 1]


def test_ctrl_c_marks_the_running_point_interrupted(tiny_dataset, tmp_path, monkeypatch,
                                                    capsys):
    import signal

    from mnistlab.errors import RunInterrupted
    from mnistlab.rundir import execute

    path = tiny_sweep(tmp_path, '"model.hidden" = [[8], [12], [16]]', "seeds = 1")
    real_fit, calls = execute.fit, []

    def fit_with_ctrl_c_in_the_second_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # as a Ctrl-C: training stops at a batch boundary
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(execute, "fit", fit_with_ctrl_c_in_the_second_run)
    with pytest.raises(RunInterrupted) as info:
        run_sweep(load_sweep(path))
    folder = tmp_path / "runs" / ".sweeps" / "s"
    lines = [json.loads(x) for x in (folder / "outcomes.jsonl").read_text().splitlines()]
    assert [(x["point"], x["status"]) for x in lines] == [(1, "complete"), (2, "interrupted")]
    run_dir = tmp_path / "runs" / lines[1]["run"]
    assert run_dir.is_dir() and run_dir.name.endswith("s-p002-s0")
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    assert info.value.run_dir == run_dir and str(run_dir) in str(info.value)  # not the temp dir
    _, _, rows = sweep_results("s")
    assert [len(r.accuracies) for r in rows] == [1, 0, 0] and rows[1].errors == []
    calls.clear()
    assert main(["sweep", "run", str(path), "--jobs", "1"]) == 130
    out = capsys.readouterr().out
    assert "s-p003-s0: interrupted; continue with: mnistlab resume" in out  # p002 trained anew


def test_sweep_table_ranks_by_last_epoch_validation_accuracy(tiny_dataset, tmp_path):
    from mnistlab.experiments.sweep_table import TABLE_COLUMNS, table_rows
    from mnistlab.rundir.directory import read_history

    path = tiny_sweep(tmp_path, '"model.hidden" = [[4], [16]]\n"data.validation" = [0.2, "test"]')
    assert main(["sweep", "run", str(path), "--jobs", "1", "--quiet"]) == 0
    name, axes, rows = sweep_results(path)
    expected = {}
    for row in rows:
        vals = []
        for seed in (0, 1):
            run, = (p for p in (tmp_path / "runs").iterdir()
                    if p.name.endswith(f"{name}-p{row.point:03d}-s{seed}"))
            vals.append(read_history(run / "history.csv")["val_accuracy"][-1])
        assert row.val_accuracies == pytest.approx(vals)
        expected[row.point] = statistics.mean(vals)
        assert row.validated_on_test == (row.values["data.validation"] == "test")
    table = table_rows(axes, rows)
    order = sorted(expected, key=lambda p: (-expected[p], p))
    assert [cells[0] for cells in table] == [f"p{p:03d}" for p in order]
    col = {c: len(axes) + 1 + i for i, c in enumerate(TABLE_COLUMNS)}
    assert [cells[col["rank"]] for cells in table] == ["1", "2", "3", "4"]
    by_point = {int(cells[0][1:]): cells for cells in table}
    for row in rows:
        val_cell = by_point[row.point][col["val accuracy (last epoch, mean +/- std)"]]
        assert val_cell.startswith(f"{expected[row.point]:.4f} +/- ")
        assert val_cell.endswith("(test set)") == row.validated_on_test
        test_cell = by_point[row.point][col["test accuracy (mean +/- std)"]]
        assert test_cell == f"{row.mean:.4f} +/- {row.std:.4f}"


def test_sweep_on_a_lab_preset_trains_on_the_held_out_split(tiny_dataset, tmp_path, capsys):
    """A sweep on a lab preset without its own data.validation validates on 10% of train, and
    the CLI says so in one line; one that chooses "test" itself keeps the lab's test set."""
    tiny = TINY_SET.replace('"data.validation" = 0.2\n', "")
    path = write(tmp_path / "lab.toml", f'base = "raw/template"\n[set]\n{tiny}\n'
                 '[axes]\n"model.hidden" = [[8]]\n')
    with pytest.warns(UserWarning, match="validates on 10% of train held out"):
        points = sweep_points(load_sweep(path))
    assert points[0].experiment.data.validation == 0.1
    capsys.readouterr()
    assert main(["sweep", "run", str(path), "--jobs", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "raw/template" in notes[0], err
    assert "validated on the test set" not in err
    run = next(p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"] == 0.1  # trained on the split, not the test set
    own = write(tmp_path / "own.toml", f'base = "raw/template"\n[set]\n{tiny}'
                '"data.validation" = "test"\n[axes]\n"model.hidden" = [[8]]\n')
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        assert sweep_points(load_sweep(own))[0].experiment.data.validation == "test"
    assert main(["sweep", "run", str(own), "--jobs", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sweep", "show", str(own), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "validated on the test set" in line]
    assert len(said) == 1 and said[0].startswith("mnistlab sweep: warning: 1 run(s)"), err
    assert "own-p001-s0" in said[0] and "note:" not in err


def test_sweep_overlay_legend_names_the_axis_values_not_the_points(tiny_dataset, tmp_path,
                                                                   monkeypatch):
    from mnistlab.report.compare import compare

    monkeypatch.chdir(tmp_path)
    path = tiny_sweep(tmp_path, '"model.hidden" = [[8], [16]]', head="seeds = 1", name="legend")
    outcomes = run_sweep(load_sweep(path), data_dir=tiny_dataset)
    assert {o.status for o in outcomes} == {"complete"}
    figure = compare([path]).overlay_figure()
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["hidden=[16]", "hidden=[8]"]
