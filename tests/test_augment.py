"""Data augmentation (`[augmentation]`): exact transforms against NumPy, draws fixed by (seed,
epoch, batch), identity at zero, load-time rules, and exactness under kill -9 + resume."""

from __future__ import annotations

import json
import math
import signal
import time

import numpy as np
import pytest
import torch
from conftest import same_run_result
from test_resume import _cli, _wait_for_epoch

from mnistlab.config.load import load_experiment
from mnistlab.config.sections import AugmentationConfig
from mnistlab.errors import ConfigError
from mnistlab.training.augment import (
    affine_images,
    augment_images,
    batch_generator,
    draw_transforms,
    make_augmenter,
)

ON = AugmentationConfig(rotation=0.1, shift=0.1, zoom=0.2)


def _images(n: int = 3, size: int = 28) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).random((n, size, size), dtype=np.float32))


def _one(value: float, n: int = 3) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.float64)


def test_a_quarter_turn_and_whole_pixel_shifts_match_numpy():
    x = _images()
    turned = affine_images(x, _one(math.pi / 2), _one(1.0), _one(0.0), _one(0.0))
    np.testing.assert_allclose(turned.numpy(), np.rot90(x.numpy(), 1, axes=(1, 2)), atol=1e-5)
    moved = affine_images(x, _one(0.0), _one(1.0), _one(2 / 28), _one(-3 / 28)).numpy()
    expect = np.zeros_like(x.numpy())
    expect[:, 2:, :25] = x.numpy()[:, :26, 3:]  # 2 rows down, 3 columns left, zeros come in
    np.testing.assert_allclose(moved, expect, atol=1e-5)
    edge = affine_images(x, _one(0.0), _one(1.0), _one(0.0), _one(-3 / 28), "nearest").numpy()
    np.testing.assert_allclose(edge[:, :, 25:], np.repeat(x.numpy()[:, :, 27:], 3, axis=2),
                               atol=1e-5)


def test_a_flip_alone_is_an_exact_mirror_of_the_chosen_images():
    x = _images(4)
    flip = torch.tensor([True, False, True, False])
    out = affine_images(x, _one(0.0, 4), _one(1.0, 4), _one(0.0, 4), _one(0.0, 4), flip=flip)
    expect = x.clone()
    expect[flip] = torch.flip(x[flip], dims=[2])  # left-right: the column index reversed
    np.testing.assert_allclose(out.numpy(), expect.numpy(), atol=1e-5)
    # with a shift, the mirror comes last: a flipped image is the mirror of the shifted one
    both = affine_images(x[:1].repeat(2, 1, 1), _one(0.0, 2), _one(1.0, 2), _one(0.0, 2),
                         _one(3 / 28, 2),
                         flip=torch.tensor([True, False]))
    np.testing.assert_allclose(both[0].numpy(), torch.flip(both[1], dims=[1]).numpy(), atol=1e-5)


def test_flip_draws_half_and_leaves_the_other_draws_as_they_were():
    flipped = draw_transforms(10_000, AugmentationConfig(shift=0.1, flip=True),
                              batch_generator(0, 1, 2))
    plain = draw_transforms(10_000, AugmentationConfig(shift=0.1), batch_generator(0, 1, 2))
    assert "flip" not in plain  # runs made before `flip` existed draw exactly what they drew
    for key in plain:
        torch.testing.assert_close(flipped[key], plain[key], rtol=0, atol=0)
    assert abs(flipped["flip"].double().mean().item() - 0.5) < 0.02
    x = _images(8)
    augment = make_augmenter(AugmentationConfig(flip=True), seed=3)
    assert augment is not None  # a flip alone switches augmentation on
    out = augment(x, 0, 0)
    draws = draw_transforms(8, AugmentationConfig(flip=True), batch_generator(3, 0, 0))
    for image, result, mirrored in zip(x, out, draws["flip"], strict=True):
        expect = torch.flip(image, dims=[1]) if mirrored else image
        np.testing.assert_allclose(result.numpy(), expect.numpy(), atol=1e-5)


def test_zoom_out_by_two_shrinks_the_image_around_its_centre():
    x = torch.zeros(1, 8, 8)
    x[0, 2:6, 2:6] = 1.0  # a 4x4 square in the middle of an 8x8 image
    out = affine_images(x, _one(0.0, 1), _one(2.0, 1), _one(0.0, 1), _one(0.0, 1))[0]
    assert out.sum().item() == pytest.approx(4.0, abs=1e-4)  # a 2x2 square's worth
    np.testing.assert_allclose(out[3:5, 3:5].numpy(), 1.0, atol=1e-5)


def test_identity_at_zero_and_shape_kept():
    x = _images(5)
    out = augment_images(x, AugmentationConfig(fill_mode="nearest"), batch_generator(1, 2, 3))
    assert out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), x.numpy(), atol=1e-5)  # float32 grid coordinates
    assert make_augmenter(AugmentationConfig(), seed=1) is None  # off: the loop does nothing


def test_draws_depend_only_on_seed_epoch_and_batch():
    x = _images(4)
    augment = make_augmenter(ON, seed=5)
    a, b = augment(x, 1, 7), augment(x, 1, 7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, augment(x, 1, 8)) and not torch.equal(a, augment(x, 2, 7))
    assert not torch.equal(a, make_augmenter(ON, seed=6)(x, 1, 7))
    assert not torch.equal(a, x)


def test_load_refuses_bad_factors_and_hog_and_records_only_when_on():
    with pytest.raises(ConfigError, match=r"augmentation.rotation.*0.7"):
        load_experiment("raw/final", ["augmentation.rotation=0.7"])
    with pytest.raises(ConfigError, match=r"augmentation.zoom"):
        load_experiment("raw/final", ["augmentation.zoom=-0.1"])
    with pytest.raises(ConfigError, match=r"augmentation.flip.*true or false"):
        load_experiment("raw/final", ["augmentation.flip='yes'"])
    with pytest.raises(ConfigError, match=r"fill_mode.*'reflect'"):
        load_experiment("raw/final", ["augmentation.fill_mode='reflect'"])
    with pytest.raises(ConfigError, match=r"features.kind = \"raw\".*'hog'"):
        load_experiment("hog/final", ["augmentation.shift=0.1"])
    assert "augmentation" not in load_experiment("raw/final").to_dict()
    on = load_experiment("cnn/final", ["augmentation.shift=0.1"])
    assert on.to_dict()["augmentation"]["shift"] == 0.1


KILL_EXPERIMENT = """
[data]
dataset = "mnist"
train_samples = 600
test_samples = 200
[model]
hidden = [32]
[augmentation]
rotation = 0.05
shift = 0.1
zoom = 0.1
[training]
epochs = 4
batch_size = 4
seed = 3
threads = 1
[output]
name = "augkill"
plots = false
"""


@pytest.mark.slow
def test_augmentation_is_exact_under_kill_9_and_resume(tmp_path):
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present")
    toml, cache = tmp_path / "augkill.toml", tmp_path / "cache"
    toml.write_text(KILL_EXPERIMENT)
    ref = _cli(cache, "run", str(toml), "--runs-dir", str(tmp_path / "ref"))
    assert ref.wait(timeout=120) == 0, ref.stderr.read()
    killed = tmp_path / "killed"
    proc = _cli(cache, "run", str(toml), "--runs-dir", str(killed))
    _wait_for_epoch(killed, 1, proc)
    time.sleep(0.05)  # die inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = killed.iterdir()
    assert not (run_dir / "metrics.json").exists()
    resume = _cli(cache, "resume", run_dir.name, "--runs-dir", str(killed))
    assert resume.wait(timeout=120) == 0, resume.stderr.read()
    reference = next((tmp_path / "ref").iterdir())
    same_run_result(reference, run_dir)
    fast = json.loads((run_dir / "metrics.json").read_text())["fast"]
    assert any("augmented" in f for f in fast) and not any("sparse rest" in f for f in fast)
    assert "[augmentation]" in (run_dir / "config.toml").read_text()


def test_summary_shows_the_augmentation(capsys):
    from mnistlab.commands.main import main

    assert main(["summary", "cnn/final", "--set", "augmentation.rotation=0.05",
                 "--set", "augmentation.zoom=0.1"]) == 0
    out = capsys.readouterr().out
    assert "Augmentation (training batches only, fill constant): rotation +-18 deg" in out
    assert "zoom x0.9 to x1.1" in out
    assert main(["summary", "fashion/final", "--set", "augmentation.flip=true"]) == 0
    assert "left-right flip of half the images" in capsys.readouterr().out
