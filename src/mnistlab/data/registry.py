"""The dataset registry: what each dataset is, its files and the checksums of their content."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DatasetSpec", "DATASETS", "get_dataset", "SPLITS", "FILE_KINDS"]

SPLITS = ("train", "test")
FILE_KINDS = ("images", "labels")


@dataclass(frozen=True)
class DatasetSpec:
    """One MNIST-style dataset: names of its IDX files and SHA-256 of their decompressed content.

    The checksums are of the *decompressed* IDX bytes because distributions re-compress the files
    (Debian's Fashion-MNIST differs from upstream in its gzip wrapper, never in its content).
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    files: dict[str, str]  # "train-images" -> "train-images-idx3-ubyte"
    sha256: dict[str, str]  # "train-images" -> sha256 of the decompressed IDX file
    sizes: dict[str, int]  # "train-images" -> decompressed size in bytes
    mirrors: tuple[str, ...]  # base URLs; the file name + ".gz" is appended
    system_dirs: tuple[str, ...] = ()  # folders other tools fill (absolute or ~)

    def file_key(self, split: str, kind: str) -> str:
        return f"{split}-{kind}"

    def n_items(self, split: str) -> int:
        """Samples in a split, from its labels file's registered size (8 header bytes, then one
        byte per label)."""
        return self.sizes[self.file_key(split, "labels")] - 8


_IDX_NAMES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}
_SIZES = {
    "train-images": 47040016,
    "train-labels": 60008,
    "test-images": 7840016,
    "test-labels": 10008,
}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST handwritten digits",
        class_names=tuple(str(d) for d in range(10)),
        files=dict(_IDX_NAMES),
        sha256={
            "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        sizes=dict(_SIZES),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        system_dirs=("/usr/share/datasets/mnist",),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando)",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        files=dict(_IDX_NAMES),
        sha256={
            "train-images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test-images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test-labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        sizes=dict(_SIZES),
        mirrors=(
            "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


def get_dataset(name: str) -> DatasetSpec:
    """Look a dataset up by name; an unknown name lists the valid ones."""
    from mnistlab.errors import ConfigError

    try:
        return DATASETS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in DATASETS)
        raise ConfigError(f"data.dataset must be one of {valid}; got {name!r}") from None
