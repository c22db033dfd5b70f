"""However a run ends, status.json says how: SIGTERM stops like Ctrl-C, a signal while the final
outputs are written or before training starts leaves "interrupted", a crash after the run
directory exists leaves "failed" with the reason, and a run directory is locked while a process
writes it (a second `resume` is refused before any work)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import same_run_result

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.errors import RunInterrupted, RunInUse, Terminated
from mnistlab.experiments.suite import load_suite, run_suite, suite_experiments
from mnistlab.rundir import execute, outputs
from mnistlab.rundir.directory import LOCK_FILE, list_runs, lock_run_dir
from mnistlab.rundir.execute import resume_run, run_experiment


class _Unhandled(Exception):
    """What SIGTERM raises when nothing in mnistlab handled it (instead of killing pytest)."""


@pytest.fixture(autouse=True)
def sigterm_reaches_us():
    """Without this a SIGTERM that mnistlab failed to handle would kill the test session."""

    def fallback(signum, frame):
        raise _Unhandled("SIGTERM reached the default handler")

    before = signal.signal(signal.SIGTERM, fallback)
    yield fallback
    signal.signal(signal.SIGTERM, before)


def _tiny(*extra: str, epochs: int = 3) -> list[str]:
    return ["model.hidden=[32]", "model.dropout=0.3", "output.plots=false",
            "data.validation=0.1", f"training.epochs={epochs}", "training.batch_size=4",
            "training.seed=7", "training.threads=1", *extra]


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


class _Signals:
    """A reporter that sends real signals to this process at given batch counts, and can run a
    check from inside training (`during`)."""

    def __init__(self, *at: tuple[int, int], during=None):
        self.at, self.seen, self.during = list(at), 0, during

    def start(self, name, epochs, first_epoch): ...
    def epoch(self, epoch, logs): ...
    def stop(self): ...

    def batch(self, done, total):
        self.seen += 1
        for count, signum in self.at:
            if count == self.seen:
                signal.raise_signal(signum)
        if self.during is not None and self.seen == 3:
            self.during()


# --- SIGTERM ------------------------------------------------------------------------------------

def test_sigterm_stops_at_a_batch_boundary_like_ctrl_c(tiny_dataset, tmp_path,
                                                        sigterm_reaches_us):
    exp = load_experiment("raw/template", _tiny())  # 54 train samples / 4 = 14 batches per epoch
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_Signals((20, signal.SIGTERM)))
    run_dir = info.value.run_dir
    assert info.value.exit_code == 143
    assert str(info.value).startswith("terminated (SIGTERM) after epoch 1 + 6 batches")
    assert f"mnistlab resume {run_dir}" in str(info.value)
    status = _status(run_dir)
    assert (status["status"], status["epochs_done"], status["batches_done"],
            status["signal"]) == ("interrupted", 1, 6, "SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is sigterm_reaches_us  # handlers restored
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    same_run_result(reference.run_dir, resume_run(run_dir).run_dir)


def test_ctrl_c_status_names_its_signal_and_exits_130(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", _tiny())
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path, reporter=_Signals((5, signal.SIGINT)))
    assert info.value.exit_code == 130 and str(info.value).startswith("interrupted after")
    assert _status(info.value.run_dir)["signal"] == "SIGINT"


def test_a_second_sigterm_aborts_at_once_and_keeps_the_epoch_checkpoint(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", _tiny())
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(Terminated) as info:  # a KeyboardInterrupt that exits 143
        run_experiment(exp, tmp_path / "cut",
                       reporter=_Signals((18, signal.SIGINT), (18, signal.SIGTERM)))
    assert info.value.exit_code == 143 and not isinstance(info.value, RunInterrupted)
    (run_dir,) = (tmp_path / "cut").iterdir()
    assert _status(run_dir)["status"] == "interrupted" and _status(run_dir)["epochs_done"] == 1
    same_run_result(reference.run_dir, resume_run(run_dir).run_dir)


# --- signals outside the batch loop --------------------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("writing", ["metrics.json", "confusion.png"])
def test_a_signal_while_the_outputs_are_written_leaves_interrupted_and_resume_writes_them(
        tiny_dataset, tmp_path, monkeypatch, signum, code, writing):
    exp = load_experiment("raw/template", _tiny("output.plots=true", epochs=2))
    reference = run_experiment(exp, tmp_path / "ref")
    import mnistlab.plots

    real_json, real_figure = outputs.write_json, mnistlab.plots.save_figure

    def write_json(path, data):
        if path.name == writing:
            signal.raise_signal(signum)
        real_json(path, data)

    def save_figure(figure, path):
        if path.name == writing:
            signal.raise_signal(signum)
        real_figure(figure, path)

    with monkeypatch.context() as patch:
        patch.setattr(outputs, "write_json", write_json)
        patch.setattr(mnistlab.plots, "save_figure", save_figure)
        with pytest.raises(RunInterrupted, match="while writing the final outputs") as info:
            run_experiment(exp, tmp_path / "cut")
    run_dir = info.value.run_dir
    assert info.value.exit_code == code and f"mnistlab resume {run_dir}" in str(info.value)
    assert _status(run_dir)["status"] == "interrupted" and _status(run_dir)["epochs_done"] == 2
    assert not (run_dir / writing).exists()
    result = resume_run(run_dir)
    assert _status(run_dir)["status"] == "complete"
    same_run_result(reference.run_dir, result.run_dir)
    assert all((run_dir / f).is_file() for f in ("loss.png", "accuracy.png", "confusion.png"))


def test_ctrl_c_while_the_model_is_built_leaves_interrupted(tiny_dataset, tmp_path, monkeypatch):
    exp = load_experiment("raw/template", _tiny())
    real_build = execute.build_model

    def slow_build(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # e.g. while a huge model is initialised
        return real_build(*args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(execute, "build_model", slow_build)
        run_experiment(exp, tmp_path / "cut")
    (run_dir,) = (tmp_path / "cut").iterdir()
    assert _status(run_dir)["status"] == "interrupted" and _status(run_dir)["epochs_done"] == 0
    assert _status(resume_run(run_dir).run_dir)["status"] == "complete"


# --- failures after the run directory exists ----------------------------------------------------

def test_out_of_memory_while_building_marks_the_run_failed_with_the_reason(
        tiny_dataset, tmp_path, monkeypatch, capsys):
    exp = load_experiment("raw/template", _tiny())
    reference = run_experiment(exp, tmp_path / "ref")
    oom = ("DefaultCPUAllocator: not enough memory: you tried to allocate 68719476736 bytes.\n"
           "second line of the message")

    def huge(*args, **kwargs):
        raise RuntimeError(oom)

    with monkeypatch.context() as patch:
        patch.setattr(execute, "build_model", huge)
        with pytest.raises(RuntimeError, match="not enough memory"):
            run_experiment(exp, tmp_path / "cut")
        run_dir = next((tmp_path / "cut").iterdir())
        code = main(["resume", str(run_dir), "--quiet"])  # the CLI: one line, exit 1
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "not enough memory" in err
    assert len(list((tmp_path / "cut").iterdir())) == 1
    status = _status(run_dir)
    assert status["status"] == "failed" and status["epochs_done"] == 0
    assert status["error"] == ("RuntimeError: DefaultCPUAllocator: not enough memory: you tried "
                               "to allocate 68719476736 bytes.")
    assert list_runs(tmp_path / "cut")[0].status == "failed"
    with lock_run_dir(run_dir):  # released on the way out
        pass
    same_run_result(reference.run_dir, resume_run(run_dir).run_dir)  # then it trains from scratch


# --- the run directory's lock -------------------------------------------------------------------

def test_a_training_run_holds_its_lock_and_a_resume_meanwhile_is_refused(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", _tiny(epochs=1))
    refused = []

    def try_resume():
        (run_dir,) = (tmp_path / "runs").iterdir()
        with pytest.raises(RunInUse, match=f"run is in use by process {os.getpid()}") as info:
            resume_run(run_dir)
        refused.append(info.value.pid)

    result = run_experiment(exp, tmp_path / "runs", reporter=_Signals(during=try_resume))
    assert refused == [os.getpid()]
    assert _status(result.run_dir)["status"] == "complete"  # the refusal touched nothing
    with lock_run_dir(result.run_dir):  # released once the run is written
        pass


def test_resume_of_a_locked_run_is_refused_before_any_work(tiny_dataset, tmp_path, capsys):
    exp = load_experiment("raw/template", _tiny())
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_Signals((20, signal.SIGINT)))
    run_dir = info.value.run_dir
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != LOCK_FILE}
    with lock_run_dir(run_dir):
        with pytest.raises(RunInUse, match=f"in use by process {os.getpid()}"):
            resume_run(run_dir)
        assert main(["resume", str(run_dir), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"mnistlab resume: error: {run_dir}: run is in use by process {os.getpid()}" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != LOCK_FILE} == before
    same_run_result(reference.run_dir, resume_run(run_dir).run_dir)


_HOLD = """
import sys, time
from pathlib import Path
from mnistlab.rundir.directory import lock_run_dir
with lock_run_dir(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_the_lock_dies_with_its_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunInUse, match=f"run is in use by process {holder.pid} ") as info:
            with lock_run_dir(tmp_path):
                pass
        assert info.value.pid == holder.pid
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
        holder.wait()
    with lock_run_dir(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_suite_reports_an_interrupted_run_that_another_process_holds(tiny_dataset, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('experiments = ["raw/template"]')
    suite = load_suite(path)
    runs = tmp_path / "runs"
    quick = ["training.epochs=2", "model.hidden=[8]", "training.batch_size=8"]
    first_exp = suite_experiments(suite, seeds=2, overrides=quick)[0]
    with pytest.raises(RunInterrupted):
        run_experiment(first_exp, runs, reporter=_Signals((3, signal.SIGINT)))
    (first,) = list_runs(runs)
    assert first.status == "interrupted"
    events = []
    with lock_run_dir(first.path):  # as if another `suite run` or `resume` were resuming it
        outcomes = run_suite(suite, seeds=2, runs_dir=runs, overrides=quick,
                             on_event=lambda kind, i, p: events.append((kind, i)))
    assert [o.status for o in outcomes] == ["failed", "complete"]
    assert f"run is in use by process {os.getpid()}" in outcomes[0].error
    assert outcomes[0].run_dir == first.path
    assert events == [("started", 0), ("failed", 0), ("started", 1), ("complete", 1)]
    assert sorted(r.status for r in list_runs(runs)) == ["complete", "interrupted"]  # no copy
    again = run_suite(suite, seeds=2, runs_dir=runs, overrides=quick)  # lock gone: resumed
    assert [o.status for o in again] == ["skipped", "skipped"] and again[0].run_dir == first.path
