import gzip
import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_idx_dataset, write_idx_dataset

from mnistlab.data.idx import idx_bytes
from mnistlab.data.load import candidate_roots, dataset_status, load_dataset, make_splits
from mnistlab.errors import DataError


def test_real_mnist_verifies_and_counts(shared_data):
    ds = load_dataset("mnist", shared_data)
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert np.bincount(ds.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                     6265, 5851, 5949]
    assert np.bincount(ds.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                    974, 1009]


def test_real_fashion_verifies(shared_data):
    ds = load_dataset("fashion-mnist", shared_data)
    assert ds.spec.class_names[9] == "Ankle boot"
    assert len(ds.train_labels) == 60000


def test_second_load_uses_the_cache(shared_data):
    load_dataset("mnist", shared_data)
    start = time.perf_counter()
    ds = load_dataset("mnist", shared_data)
    assert time.perf_counter() - start < 0.5
    assert isinstance(ds.train_images, np.memmap)


def test_lookup_order(tmp_path, tiny_dataset, monkeypatch):
    explicit = tmp_path / "explicit"
    write_idx_dataset(explicit, make_idx_dataset())  # flat folder: --data-dir may be the dataset
    assert load_dataset("mnist", explicit).source == str(explicit)
    assert load_dataset("mnist").source == str(tiny_dataset / "mnist")  # MNISTLAB_DATA
    monkeypatch.delenv("MNISTLAB_DATA")
    cache = Path(os.environ["MNISTLAB_CACHE"])
    write_idx_dataset(cache / "mnist", make_idx_dataset())
    try:
        assert load_dataset("mnist").source == str(cache / "mnist")
    finally:
        for f in (cache / "mnist").iterdir():
            f.unlink()
        (cache / "mnist").rmdir()
    torch_root = tmp_path / "data" / "MNIST" / "raw"  # torchvision layout under ./data
    write_idx_dataset(torch_root, make_idx_dataset(), compress=False)
    assert load_dataset("mnist").source == str(torch_root)
    whys = [why for why, _ in candidate_roots("x")]
    assert whys == ["--data-dir", "cache", "system", "keras", "torchvision"]


def test_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    (tmp_path / "empty").mkdir()  # a missing --data-dir is an error of its own (test below)
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", tmp_path / "empty")
    text = str(info.value)
    assert "empty" in text and "MNISTLAB_DATA" in text and "--data-dir" in text


def test_checksum_mismatch_is_refused(tmp_path, tiny_dataset):
    bad = make_idx_dataset(seed=1)  # same shapes, other content
    write_idx_dataset(tmp_path / "bad", bad)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("mnist", tmp_path / "bad")


def test_count_mismatch_is_refused(tmp_path, monkeypatch):
    import dataclasses

    from mnistlab.data import registry as datasets

    arrays = make_idx_dataset()
    arrays["test-labels"] = arrays["test-labels"][:-1]
    write_idx_dataset(tmp_path / "d", arrays)
    sums = {k: hashlib.sha256(idx_bytes(a)).hexdigest() for k, a in arrays.items()}
    monkeypatch.setitem(datasets.DATASETS, "mnist",
                        dataclasses.replace(datasets.DATASETS["mnist"], sha256=sums))
    with pytest.raises(DataError, match="20 images but 19 labels"):
        load_dataset("mnist", tmp_path / "d")


class _Handler(http.server.SimpleHTTPRequestHandler):
    fail_first: set = set()

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path in self.fail_first:
            self.fail_first.discard(self.path)
            self.send_error(503)
            return
        super().do_GET()


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving generated gzip IDX files."""
    served = tmp_path / "served"
    served.mkdir()

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(served), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_verified_download_with_retry_and_mirror_fallback(tmp_path, tiny_dataset, http_server,
                                                          monkeypatch):
    served, url = http_server
    write_idx_dataset(served, make_idx_dataset())
    (served / "broken").mkdir()
    monkeypatch.delenv("MNISTLAB_DATA")
    monkeypatch.setenv("MNISTLAB_OFFLINE", "0")
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "fresh-cache"))
    # First mirror 404s everything; the second fails once per file with 503, then serves.
    monkeypatch.setenv("MNISTLAB_MIRRORS", f"{url}broken/,{url}")
    _Handler.fail_first = {"/train-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"}
    ds = load_dataset("mnist")
    assert ds.source == str(tmp_path / "fresh-cache" / "mnist")
    assert sorted(p.name for p in (tmp_path / "fresh-cache" / "mnist").iterdir()) == sorted(
        f + ".gz" for f in ds.spec.files.values())
    np.testing.assert_array_equal(ds.train_labels, make_idx_dataset()["train-labels"])


def test_download_with_wrong_content_leaves_nothing(tmp_path, tiny_dataset, http_server,
                                                    monkeypatch):
    served, url = http_server
    write_idx_dataset(served, make_idx_dataset(seed=5))  # checksums will not match
    monkeypatch.delenv("MNISTLAB_DATA")
    monkeypatch.setenv("MNISTLAB_OFFLINE", "0")
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("MNISTLAB_MIRRORS", url)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("mnist")
    leftovers = list((tmp_path / "c" / "mnist").iterdir())
    assert leftovers == []


def test_make_splits_fraction_is_seeded_and_disjoint():
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    y = np.arange(100) % 10
    a = make_splits(x, y, x[:10], y[:10], 0.2, seed=3)
    b = make_splits(x, y, x[:10], y[:10], 0.2, seed=3)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert len(a.x_val) == 20 and len(a.x_train) == 80
    assert not set(a.x_val[:, 0]) & set(a.x_train[:, 0])
    assert not a.validation_is_test
    t = make_splits(x, y, x[:10], y[:10], "test", seed=3)
    assert t.validation_is_test and t.x_val is t.x_test


def test_dataset_status(shared_data):
    rows = {r["dataset"]: r for r in dataset_status(shared_data)}
    assert rows["mnist"]["verified"] and rows["fashion-mnist"]["verified"]


def test_gzip_wrapper_does_not_matter(tmp_path, tiny_dataset):
    """Checksums are of the content: a re-compressed copy (as Debian ships) verifies."""
    arrays = make_idx_dataset()
    folder = tmp_path / "recompressed"
    folder.mkdir()
    from mnistlab.data.registry import DATASETS

    for key, array in arrays.items():
        (folder / f"{DATASETS['mnist'].files[key]}.gz").write_bytes(
            gzip.compress(idx_bytes(array), compresslevel=1, mtime=12345))
    assert load_dataset("mnist", folder).source == str(folder)


def test_keras_npz_layout_is_found_and_verified(tmp_path, tiny_dataset, monkeypatch):
    arrays = make_idx_dataset()
    keras_dir = tmp_path / "home" / ".keras" / "datasets"
    keras_dir.mkdir(parents=True)
    np.savez(keras_dir / "mnist.npz", x_train=arrays["train-images"],
             y_train=arrays["train-labels"], x_test=arrays["test-images"],
             y_test=arrays["test-labels"])
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MNISTLAB_DATA")
    ds = load_dataset("mnist")
    assert ds.source == str(keras_dir / "mnist.npz")
    np.testing.assert_array_equal(ds.test_images, arrays["test-images"])
    np.savez(keras_dir / "mnist.npz", x_train=arrays["train-images"][::-1],
             y_train=arrays["train-labels"], x_test=arrays["test-images"],
             y_test=arrays["test-labels"])
    with pytest.raises(DataError, match="does not match"):
        load_dataset("mnist")


def test_data_dir_missing_or_a_file_is_an_error(tmp_path, tiny_dataset):
    """MNISTLAB_DATA holds a dataset; a --data-dir that is wrong must not fall back to it."""
    missing, a_file = tmp_path / "typo", tmp_path / "file"
    a_file.write_text("not a folder")
    for path, problem in ((missing, "folder not found"), (a_file, "is a file, not a folder")):
        for call in (lambda p: load_dataset("mnist", p), lambda p: dataset_status(p)):
            with pytest.raises(DataError) as info:
                call(path)
            assert str(info.value).startswith(f"--data-dir {path}: {problem}; pass the folder")
    assert load_dataset("mnist", tiny_dataset).source == str(tiny_dataset / "mnist")


def test_data_dir_in_the_cli_is_one_line_and_exit_2(tmp_path, tiny_dataset, capsys):
    from mnistlab.commands.main import main

    assert main(["data", "--data-dir", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--data-dir {tmp_path / 'typo'}: folder not found" in err


def test_a_file_promising_more_than_the_registered_size_is_refused_from_its_header(tmp_path):
    """A 100 KB gzip train-images file declaring 120,000 images (MNIST has 60,000): refused
    before it is decompressed, in constant memory."""
    import struct
    import tracemalloc

    from mnistlab.data.registry import DATASETS

    arrays = make_idx_dataset()
    write_idx_dataset(tmp_path / "d", arrays)
    head = b"\x00\x00\x08\x03" + struct.pack(">3I", 120_000, 28, 28)
    name = DATASETS["mnist"].files["train-images"]
    (tmp_path / "d" / f"{name}.gz").write_bytes(gzip.compress(head + bytes(120_000 * 784)))
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            load_dataset("mnist", tmp_path / "d")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "declares shape (120000, 28, 28)" in str(info.value)
    assert "refusing more than the expected 47,040,016 bytes" in str(info.value)
    assert peak < 5_000_000


def _cached_npy(key: str) -> Path:
    from mnistlab.data.load import cache_dir
    from mnistlab.data.registry import DATASETS

    return cache_dir() / "arrays" / f"{DATASETS['mnist'].sha256[key]}.npy"


@pytest.mark.parametrize("damage", ["values", "shape", "truncated"])
def test_a_tampered_array_cache_is_detected_and_rebuilt(tiny_dataset, damage):
    arrays = make_idx_dataset()
    load_dataset("mnist")  # verifies the IDX files and caches the decoded arrays
    npy = _cached_npy("train-labels")
    assert npy.is_file()
    stat = npy.stat()
    if damage == "values":  # a valid .npy whose labels were changed: silently wrong training
        np.save(npy, (arrays["train-labels"] + 1) % 10)
    elif damage == "shape":
        np.save(npy, arrays["train-labels"][:-1])
    else:
        npy.write_bytes(npy.read_bytes()[:-7])
    os.utime(npy, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size class, same mtime
    ds = load_dataset("mnist")
    np.testing.assert_array_equal(ds.train_labels, arrays["train-labels"])
    np.testing.assert_array_equal(np.load(npy), arrays["train-labels"])  # the cache is repaired
    assert {r["dataset"]: r for r in dataset_status()}["mnist"]["verified"]


def test_checking_the_cached_arrays_is_cheap(shared_data):
    """The content hash of every cached array on each load: all of MNIST in well under a second
    on top of the memory maps (the figure is printed for benchmarks/RESULTS.md)."""
    from mnistlab.data.idx import idx_sha256

    ds = load_dataset("mnist", shared_data)
    start = time.perf_counter()
    for array in (ds.train_images, ds.train_labels, ds.test_images, ds.test_labels):
        idx_sha256(array)
    seconds = time.perf_counter() - start
    print(f"hashing the cached MNIST arrays: {seconds * 1000:.0f} ms")
    assert seconds < 0.25
