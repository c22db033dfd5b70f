"""Nothing lost: checkpoints, Ctrl-C, SIGTERM, SIGKILL + resume (bit-identical), run locks,
damaged run folders, path safety and full disks."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, same_run_result

from mnistlab import load_experiment
from mnistlab.commands.main import main
from mnistlab.errors import ConfigError, RunError, RunInterrupted
from mnistlab.rundir.directory import list_runs, load_run, resolve_run_dir
from mnistlab.rundir.execute import resume_run, run_experiment


def _tiny(**training) -> list[str]:
    opts = {"epochs": 4, "batch_size": 4, "seed": 7, "threads": 1, **training}
    return ["model.hidden=[32]", "model.dropout=0.3", "output.plots=false", "data.validation=0.1",
            *(f"training.{k}={v}" for k, v in opts.items())]


class _CtrlC:
    """A reporter that presses Ctrl-C (a real SIGINT to this process) at given batch counts."""

    def __init__(self, *at: int):
        self.at, self.seen = list(at), 0  # a count listed twice presses twice in that batch

    def start(self, name, epochs, first_epoch): ...
    def epoch(self, epoch, logs): ...
    def stop(self): ...

    def batch(self, done, total):
        self.seen += 1
        for _ in range(self.at.count(self.seen)):
            signal.raise_signal(signal.SIGINT)


# --- Ctrl-C, in process, on the tiny generated dataset ------------------------------------------

@pytest.mark.parametrize("press_at", [6, 14, 30])  # mid-epoch 1, end of epoch 1, mid-epoch 3
def test_ctrl_c_saves_the_exact_position_and_resume_is_bit_identical(tiny_dataset, tmp_path,
                                                                      press_at):
    exp = load_experiment("raw/template", _tiny())  # 54 train samples / 4 = 14 batches per epoch
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_CtrlC(press_at))
    run_dir = info.value.run_dir
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert status["epochs_done"] == press_at // 14
    assert status["batches_done"] == press_at % 14
    assert "mnistlab resume" in str(info.value)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    position = checkpoint["position"]
    assert (position or {}).get("batch", 0) == press_at % 14
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = resume_run(run_dir)
    same_run_result(reference.run_dir, resumed.run_dir)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    with pytest.raises(RunError, match="already complete"):
        resume_run(run_dir)


@pytest.mark.parametrize("optimizer, press_at", [
    (["optimizer.name=adam", "optimizer.amsgrad=true"], 14),  # end of epoch 1: 1 + resume 1
    (["optimizer.name=adamw", "optimizer.weight_decay=0.1"], 20),  # mid-epoch 2
    (["optimizer.name=nadam"], 20),
    (["optimizer.name=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=true"], 20),
])
def test_resume_is_bit_identical_with_every_optimiser(tiny_dataset, tmp_path, optimizer,
                                                      press_at):
    """The slots and step count of Adam/AdamW (bias correction), Nadam (its u_product) and SGD's
    momentum buffer all travel in the checkpoint: 2 epochs straight = cut + resume."""
    exp = load_experiment("raw/template", [*_tiny(epochs=2), *optimizer])
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_CtrlC(press_at))
    resumed = resume_run(info.value.run_dir)
    same_run_result(reference.run_dir, resumed.run_dir)


def test_a_resumed_run_can_be_interrupted_again_mid_epoch(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", _tiny())
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_CtrlC(6))
    run_dir = info.value.run_dir
    with pytest.raises(RunInterrupted, match=r"after epoch 0 \+ 9 batches"):
        resume_run(run_dir, reporter=_CtrlC(3))  # batches 7, 8, 9 of the same epoch
    with pytest.raises(RunInterrupted, match=r"after epoch 2 \+ 3 batches"):
        resume_run(run_dir, reporter=_CtrlC(22))  # 5 to end epoch 1, 14 in epoch 2, 3 more
    same_run_result(reference.run_dir, resume_run(run_dir).run_dir)


def test_second_ctrl_c_aborts_at_once_and_keeps_the_epoch_checkpoint(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", _tiny())
    reference = run_experiment(exp, tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt) as info:
        run_experiment(exp, tmp_path / "cut", reporter=_CtrlC(20, 20))  # two presses, one batch
    assert not isinstance(info.value, RunInterrupted)
    (run_dir,) = (tmp_path / "cut").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["epochs_done"] == 1 and checkpoint["position"] is None
    same_run_result(reference.run_dir, resume_run(run_dir).run_dir)


def test_resume_refuses_a_damaged_or_foreign_checkpoint(tiny_dataset, tmp_path):
    exp = load_experiment("raw/template", _tiny())
    with pytest.raises(RunInterrupted) as info:
        run_experiment(exp, tmp_path, reporter=_CtrlC(20))
    run_dir = info.value.run_dir
    good = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(RunError, match="checkpoint.pt: unreadable"):
        resume_run(run_dir)
    torch.save({"hello": 1}, run_dir / "checkpoint.pt")
    with pytest.raises(RunError, match="not a mnistlab checkpoint"):
        resume_run(run_dir)
    (run_dir / "checkpoint.pt").write_bytes(good)
    config = (run_dir / "config.toml").read_text().replace("seed = 7", "seed = 8")
    (run_dir / "config.toml").write_text(config)
    with pytest.raises(RunError, match="does not belong"):
        resume_run(run_dir)


# --- SIGKILL and SIGINT on real `mnistlab run` processes ----------------------------------------

EXPERIMENT = """
[data]
dataset = "mnist"
train_samples = 1200
test_samples = 500
[model]
hidden = [64]
dropout = 0.3
[training]
epochs = 4
batch_size = 4
seed = 11
threads = 1
[output]
name = "killme"
plots = false
"""


def _cli(cache: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MNISTLAB_CACHE": str(cache),
           "MNISTLAB_DATA": str(SHARED_DATA)}
    return subprocess.Popen([sys.executable, "-m", "mnistlab", *args, "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_epoch(runs: Path, epochs: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Poll the real checkpoint file until it records `epochs` finished epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        for path in runs.glob("*/checkpoint.pt"):
            try:
                if torch.load(path, weights_only=False)["epochs_done"] >= epochs:
                    return
            except Exception:  # noqa: BLE001,S110 - being replaced right now; poll again
                pass
        time.sleep(0.02)
    raise AssertionError("training never reached the epoch")


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """An experiment file and its uninterrupted reference run (real MNIST, subprocess)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present")
    root = tmp_path_factory.mktemp("kill")
    toml = root / "killme.toml"
    toml.write_text(EXPERIMENT)
    cache = root / "cache"  # shared by every process here: the dataset is verified once
    proc = _cli(cache, "run", str(toml), "--runs-dir", str(root / "ref"))
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    return toml, next((root / "ref").iterdir()), cache


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_results(real_runs, tmp_path):
    toml, reference, cache = real_runs
    proc = _cli(cache, "run", str(toml), "--runs-dir", str(tmp_path))
    _wait_for_epoch(tmp_path, 2, proc)
    time.sleep(0.1)  # an epoch takes ~0.4 s: die inside epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = tmp_path.iterdir()
    info = load_run(run_dir)
    assert info.status == "running" and not (run_dir / "metrics.json").exists()
    assert any("is gone" in p for p in info.problems)  # `runs` tells it apart from a live run
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["epochs_done"] >= 2
    resume = _cli(cache, "resume", run_dir.name, "--runs-dir", str(tmp_path))  # a name, not a path
    assert resume.wait(timeout=120) == 0, resume.stderr.read()
    same_run_result(reference, run_dir)


@pytest.mark.slow
def test_sigint_on_a_real_process_saves_its_position_and_exits_130(real_runs, tmp_path):
    # Resuming from a Ctrl-C position is proven bit-identical in process (tests above); here
    # the real signal path: handler, message, exit code, status and checkpoint on disk.
    toml, _, cache = real_runs
    proc = _cli(cache, "run", str(toml), "--runs-dir", str(tmp_path))
    _wait_for_epoch(tmp_path, 1, proc)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    err = proc.stderr.read()
    assert err.count("\n") == 1 and "mnistlab resume" in err and "Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert status["status"] == "interrupted" and status["epochs_done"] == checkpoint["epochs_done"]
    assert status["batches_done"] == (checkpoint["position"] or {}).get("batch", 0)
    assert f"epoch {status['epochs_done']}" in err


@pytest.mark.slow
def test_sigterm_on_a_real_process_stops_like_ctrl_c_exits_143_and_resumes_identically(
        real_runs, tmp_path):
    # What `kill`, systemd and batch schedulers send: same clean stop as Ctrl-C, exit 143.
    toml, reference, cache = real_runs
    proc = _cli(cache, "run", str(toml), "--runs-dir", str(tmp_path))
    _wait_for_epoch(tmp_path, 1, proc)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    err = proc.stderr.read()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "terminated (SIGTERM) after epoch" in err and "mnistlab resume" in err
    (run_dir,) = tmp_path.iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (status["status"], status["signal"]) == ("interrupted", "SIGTERM")
    assert status["epochs_done"] == checkpoint["epochs_done"] >= 1
    assert status["batches_done"] == (checkpoint["position"] or {}).get("batch", 0)
    resume = _cli(cache, "resume", str(run_dir))
    assert resume.wait(timeout=120) == 0, resume.stderr.read()
    same_run_result(reference, run_dir)


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def _refused(cache: Path, run_dir: Path, holder: int) -> None:
    """A `resume` of a run that process `holder` writes stops at once: exit 2, one line naming
    the holder, and not one byte of the run directory changed."""
    before = _files(run_dir)
    second = _cli(cache, "resume", str(run_dir))
    assert second.wait(timeout=60) == 2
    err = second.stderr.read()
    assert err.count("\n") == 1 and f"run is in use by process {holder} " in err, err
    assert _files(run_dir) == before


def _wait_for_lock(run_dir: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if (run_dir / ".lock").read_text().strip() == str(proc.pid):
            return
        time.sleep(0.01)
    raise AssertionError("the resume never took the run's lock")


@pytest.mark.slow
def test_resume_of_a_run_that_a_live_process_writes_is_refused(real_runs, tmp_path):
    # SIGSTOP keeps the holder alive (and its lock held) without it writing anything meanwhile.
    toml, reference, cache = real_runs
    proc = _cli(cache, "run", str(toml), "--runs-dir", str(tmp_path))
    _wait_for_epoch(tmp_path, 1, proc)
    (run_dir,) = tmp_path.iterdir()
    proc.send_signal(signal.SIGSTOP)
    try:
        _refused(cache, run_dir, proc.pid)  # the original run still trains
    finally:
        proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    first = _cli(cache, "resume", str(run_dir))
    _wait_for_lock(run_dir, first)
    first.send_signal(signal.SIGSTOP)
    try:
        _refused(cache, run_dir, first.pid)  # two resumes at once
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    same_run_result(reference, run_dir)


# --- damaged run folders: listed as such, never a crash -----------------------------------------

def test_listing_survives_every_kind_of_damage(tiny_dataset, tmp_path, capsys):
    exp = load_experiment("raw/template", _tiny(epochs=1))
    runs = tmp_path / "runs"
    good = run_experiment(exp, runs).run_dir
    damage = {
        "status-garbage": {"status.json": b"\x00\xff{"},
        "config-truncated": {"config.toml": b"[model]\nhidden = [3"},
        "config-odd": {"config.toml": b"model = 3\n"},
        "metrics-list": {"metrics.json": b"[1, 2]"},
        "metrics-truncated": {"metrics.json": b'{"test_accuracy": 0.9'},
        "history-ragged": {"history.csv": b"epoch,loss,val_loss\n1,0.5\n"},
        "model-truncated": {"model.pt": b"PK\x03\x04"},
        "predictions-missing": {"predictions.npz": None},
        "markup-[bold]": {},
    }
    for name, files in damage.items():
        target = runs / name
        target.mkdir()
        for f in good.iterdir():
            (target / f.name).write_bytes(f.read_bytes())
        for fname, data in files.items():
            (target / fname).unlink()
            if data is not None:
                (target / fname).write_bytes(data)
    cut = runs / "checkpoint-truncated"
    cut.mkdir()
    (cut / "status.json").write_text('{"status": "interrupted"}')
    (cut / "config.toml").write_bytes((good / "config.toml").read_bytes())
    (cut / "checkpoint.pt").write_bytes(b"PK\x03\x04garbage")
    (runs / "empty").mkdir()
    (runs / "a-file").write_text("not a run")

    infos = {i.name: i for i in list_runs(runs)}
    assert infos[good.name].status == "complete" and not infos[good.name].problems
    for name in (*damage.keys() - {"markup-[bold]", "status-garbage"}, "checkpoint-truncated"):
        assert infos[name].problems, name
    for name in ("status-garbage", "config-truncated", "metrics-list", "metrics-truncated",
                 "model-truncated", "predictions-missing", "empty"):
        assert infos[name].status == "corrupt", name
    assert infos["metrics-list"].metrics is None and infos["config-odd"].config is None
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "corrupt" in out and "checkpoint.pt: unreadable" in out and "markup-[bold]" in out


# --- path safety ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs", "..", "a/../../b", "~/x", "\\..\\x"])
def test_run_names_cannot_leave_the_runs_folder(tiny_dataset, tmp_path, name):
    runs = tmp_path / "inner" / "runs"
    code = main(["run", "raw/template", "--name", name, "--runs-dir", str(runs), "--quiet",
                 *sum((["--set", s] for s in _tiny(epochs=1)), [])])
    assert code == 0
    made = [p for p in tmp_path.rglob("status.json")]
    assert len(made) == 1 and made[0].parent.parent == runs
    assert made[0].parent.name not in (".", "..")  # one plain component ("a-..-b" is fine)


def test_preset_names_and_run_lookups_with_dot_dot_are_refused(tmp_path, capsys, monkeypatch):
    with pytest.raises(ConfigError, match="not a preset"):
        load_experiment("raw/../../../etc/passwd")
    assert main(["run", "raw/../template", "--runs-dir", str(tmp_path)]) == 2
    assert "not a preset" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "cwd" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd" / "deep")  # where these are not paths to folders
    for run in ("../outside", "x/../../outside", ""):  # a name resolves inside runs/ only
        with pytest.raises(RunError, match="no such run"):
            resolve_run_dir(run, tmp_path / "runs")
    (tmp_path / "runs" / "good").mkdir()
    assert resolve_run_dir("good", tmp_path / "runs") == tmp_path / "runs" / "good"
    assert not list(tmp_path.rglob("status.json"))


# --- full disks and unwritable folders ----------------------------------------------------------

def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("fail_on", ["status.json", "checkpoint.pt", "model.pt"])
def test_disk_full_is_reported_and_earlier_runs_are_untouched(tiny_dataset, tmp_path,
                                                              monkeypatch, fail_on):
    exp = load_experiment("raw/template", _tiny(epochs=2))
    runs = tmp_path / "runs"
    earlier = run_experiment(exp, runs).run_dir
    before = _tree_digest(earlier)
    real_replace = os.replace

    def full_disk(src, dst, *a, **kw):
        if Path(dst).name == fail_on and Path(dst).parent != earlier:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(RunError, match=r"No space left on device\); the disk is full") as info:
        run_experiment(exp, runs)
    assert fail_on in str(info.value)
    assert _tree_digest(earlier) == before
    others = [p for p in runs.iterdir() if p != earlier]
    for run in others:  # a run that could not start is removed; one that could says "failed"
        assert not list(run.glob(".*.tmp"))
        if fail_on != "status.json":
            assert json.loads((run / "status.json").read_text())["status"] == "failed"
    if fail_on == "status.json":
        assert not others
    monkeypatch.setattr(os, "replace", real_replace)
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    for run in others:  # once there is space again, resume finishes the very same run
        same_run_result(earlier, resume_run(run).run_dir)


def test_an_unwritable_runs_folder_is_reported_in_one_line(tiny_dataset, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the runs folder should be")
    code = main(["run", "raw/template", "--runs-dir", str(blocker / "runs"), "--quiet",
                 *sum((["--set", s] for s in _tiny(epochs=1)), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot create the runs folder" in err
