"""Process settings of mnistlab.fast: OpenMP's spin count chosen before torch loads, and cores
shared between the trainers running on one machine."""

from __future__ import annotations

import os

import pytest
import torch

from mnistlab.fast import openmp
from mnistlab.fast.cpu import CoreShare
from mnistlab.training.device import usable_cores


@pytest.fixture
def clean_omp_env(monkeypatch):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", openmp.FAST_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_spin_count_is_set_unless_the_user_chose(clean_omp_env):
    assert openmp.choose_wait_policy() == openmp.SPIN_COUNT
    assert os.environ["GOMP_SPINCOUNT"] == openmp.SPIN_COUNT
    clean_omp_env.setenv("GOMP_SPINCOUNT", "1000")
    assert openmp.choose_wait_policy() is None and os.environ["GOMP_SPINCOUNT"] == "1000"
    clean_omp_env.delenv("GOMP_SPINCOUNT")
    clean_omp_env.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert openmp.choose_wait_policy() is None and "GOMP_SPINCOUNT" not in os.environ


def test_switched_off_no_spin_count_is_set(clean_omp_env):
    clean_omp_env.setenv(openmp.FAST_ENV, "0")
    assert openmp.off_by_environment()
    assert openmp.choose_wait_policy() is None and "GOMP_SPINCOUNT" not in os.environ


def test_trainers_split_the_cores_and_take_them_back_when_alone(tmp_path):
    before = torch.get_num_threads()
    share = CoreShare(folder=tmp_path / "trainers")
    with share.training():
        assert share.live_trainers() == 1
        assert share.rebalance() == usable_cores()
        (tmp_path / "trainers" / f"{os.getppid()}.pid").touch()  # a second live process
        (tmp_path / "trainers" / "999999999.pid").touch()  # a trainer that died
        assert share.live_trainers() == 2
        assert share.rebalance() == max(1, usable_cores() // 2) == torch.get_num_threads()
        assert not (tmp_path / "trainers" / "999999999.pid").exists()
        (tmp_path / "trainers" / f"{os.getppid()}.pid").unlink()
        assert share.rebalance() == usable_cores()
    assert torch.get_num_threads() == before
    assert not (tmp_path / "trainers").exists()  # the last trainer leaves no folder behind


def test_explicit_threads_are_kept(tmp_path):
    torch_threads = torch.get_num_threads()
    share = CoreShare(threads=1, folder=tmp_path)
    (tmp_path / f"{os.getppid()}.pid").touch()
    with share.training():
        assert share.rebalance() == torch_threads


def test_the_wrapped_step_rebalances_between_batches(tmp_path, monkeypatch):
    share = CoreShare(folder=tmp_path)
    calls = []
    monkeypatch.setattr(share, "rebalance", lambda: calls.append(1))
    step = share.wrap(lambda xb, yb: (xb, yb))
    with share.training():
        assert step(1, 2) == (1, 2) and step(3, 4) == (3, 4)
    assert calls == [1]  # polled at most every POLL_SECONDS
