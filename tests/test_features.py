"""Feature extraction as runs use it: HOG equal to scikit-image, cached once, validated early."""

import threading

import numpy as np
import pytest

from mnistlab.commands.main import main
from mnistlab.config.geometry import feature_shape
from mnistlab.config.load import load_experiment
from mnistlab.config.sections import FeaturesConfig
from mnistlab.errors import ConfigError
from mnistlab.features.extract import extract_features, feature_cache_path
from mnistlab.nn.summary import count_parameters
from mnistlab.presets import preset_names

HOG = FeaturesConfig(kind="hog", orientations=8, pixels_per_cell=4)


def _images(n=20, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:3] = 0  # blank images too
    return images


def test_hog_features_equal_scikit_image_on_the_lab_input(shared_data):
    skimage_feature = pytest.importorskip("skimage.feature")
    from mnistlab.data.load import load_dataset

    images = np.asarray(load_dataset("mnist", shared_data).test_images[:30])
    ours = extract_features(HOG, images)
    for i, image in enumerate(images):
        ref = skimage_feature.hog(image.astype("float32") / 255, orientations=8,
                                  pixels_per_cell=(4, 4), cells_per_block=(1, 1))
        np.testing.assert_allclose(ours[i], ref, atol=1e-6, rtol=0)
    assert ours.shape == (30, 392) and ours.dtype == np.float32


@pytest.mark.parametrize("p, o, length", [(4, 8, 392), (7, 8, 128), (7, 16, 256), (4, 16, 784),
                                          (5, 8, 200), (6, 9, 144)])
def test_feature_length_follows_the_arguments_not_the_lab_formula(p, o, length):
    cfg = FeaturesConfig(kind="hog", orientations=o, pixels_per_cell=p)
    assert feature_shape(cfg) == (length,)
    assert extract_features(cfg, _images(2)).shape == (2, length)


def test_cache_is_reused_and_keyed_by_content_and_arguments(tmp_path, monkeypatch):
    images = _images()
    first = extract_features(HOG, images, "content-a", tmp_path)
    assert feature_cache_path(HOG, "content-a", tmp_path).is_file()

    def boom(*args, **kwargs):
        raise AssertionError("HOG recomputed although cached")

    monkeypatch.setattr("mnistlab.features.hog.hog", boom)
    np.testing.assert_array_equal(extract_features(HOG, images, "content-a", tmp_path), first)
    other = FeaturesConfig(kind="hog", orientations=9, pixels_per_cell=4)
    assert feature_cache_path(other, "content-a", tmp_path) != feature_cache_path(
        HOG, "content-a", tmp_path)
    assert feature_cache_path(HOG, "content-b", tmp_path) != feature_cache_path(
        HOG, "content-a", tmp_path)


def test_partial_cache_file_is_recomputed(tmp_path):
    images = _images()
    path = feature_cache_path(HOG, "k", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x93NUMPY garbage")  # a crashed writer without the rename
    feats = extract_features(HOG, images, "k", tmp_path)
    np.testing.assert_array_equal(feats, extract_features(HOG, images))


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    images = _images(64)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        extract_features(HOG, images, "same", tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, results[0])
    files = list((tmp_path / "features").iterdir())
    assert len(files) == 1  # no temporary leftovers
    np.testing.assert_array_equal(np.load(files[0]), results[0])


@pytest.mark.parametrize("override, message", [
    ("features.orientations=0", "features.orientations must be"),
    ("features.pixels_per_cell=29", "features.pixels_per_cell must be"),
    ("features.cells_per_block=8", "features.cells_per_block"),
    ("features.block_norm=L3", "features.block_norm must be one of"),
])
def test_invalid_hog_arguments_are_rejected_at_load_time(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("hog/template", [override])


def test_hog_presets_reproduce_the_lab():
    names = preset_names("hog/*")
    assert len(names) == 9 and "hog/final" in names and "hog/template" in names
    t = load_experiment("hog/template")
    assert count_parameters(t.model, feature_shape(t.features)) == 80_610
    final = load_experiment("hog/final")
    assert (final.model.activation, final.model.hidden, final.model.dropout) == ("sigmoid",
                                                                                 (200,), 0.5)
    assert (final.training.batch_size, final.training.epochs) == (512, 100)
    assert (final.features.pixels_per_cell, final.features.orientations) == (4, 8)
    o16 = load_experiment("hog/tanh-200-b1024-p7-o16")
    assert feature_shape(o16.features) == (256,)


def test_hog_run_records_feature_arguments(shared_data, tmp_path, capsys):
    assert main(["run", "hog/template", "--set", "data.train_samples=500", "--set",
                 "data.test_samples=200", "--epochs", "1", "--quiet",
                 "--runs-dir", str(tmp_path / "r")]) == 0
    run_dir = next((tmp_path / "r").iterdir())
    config = (run_dir / "config.toml").read_text()
    assert 'kind = "hog"' in config and "pixels_per_cell = 4" in config
    summary = (run_dir / "summary.txt").read_text()
    assert "392" in summary and "80,610" in summary


def test_hog_show_writes_a_picture(shared_data, tmp_path, capsys):
    out = tmp_path / "hog.png"
    assert main(["hog", "show", "--dataset", "mnist", "--index", "0", "--pixels-per-cell", "4",
                 "--orientations", "8", "-o", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as img:
        assert img.size[0] > 300
