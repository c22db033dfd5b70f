"""A config's identity on disk: its digest (how a checkpoint, a suite and a sweep recognise the
same experiment) and its TOML text (a run's `config.toml`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from mnistlab.config.sections import SECTIONS, Experiment, leave_out_unused, plain

__all__ = ["DIGEST_V1_FIELDS", "config_digest", "to_toml"]

# The fields the digest was first defined over. A field or section added since counts only when
# it differs from its default, so the runs made before it (their checkpoints and the suites that
# skip finished runs by digest) keep their digest: adding `[augmentation]` must not orphan them.
DIGEST_V1_FIELDS = {
    "data": ("dataset", "validation", "train_samples", "test_samples"),
    "features": ("kind", "orientations", "pixels_per_cell", "cells_per_block", "block_norm",
                 "transform_sqrt"),
    "model": ("kind", "hidden", "activation", "dropout", "kernel_initializer", "layers"),
    "optimizer": ("name", "learning_rate", "rho", "momentum", "epsilon", "centered", "clipvalue",
                  "clipnorm", "global_clipnorm"),
    "training": ("epochs", "batch_size", "seed", "shuffle", "device", "threads", "fast",
                 "chunk_size"),
    "output": ("name", "plots"),
}


def _without_new_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """`data` less every post-v1 field that holds its default (and sections left empty)."""
    for section, cls in SECTIONS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        old = DIGEST_V1_FIELDS.get(section, ())
        defaults = plain(dataclasses.asdict(cls()))
        for key in [k for k in table if k not in old and k in defaults]:
            if table[key] == defaults[key]:
                del table[key]
        if not table and section not in DIGEST_V1_FIELDS:
            del data[section]
    return data


def config_digest(exp: Experiment) -> str:
    """A stable hash of everything that changes the result (not the run's name or description)."""
    # settings that are off are left out, and so is any field added since v1 at its default
    data = _without_new_defaults(leave_out_unused(exp, plain(dataclasses.asdict(exp))))
    data.pop("description", None)
    data.get("output", {}).pop("name", None)
    data.get("output", {}).pop("tensorboard", None)  # a record of the run, not its result
    data.get("training", {}).pop("device", None)
    data.get("training", {}).pop("threads", None)
    data.get("training", {}).pop("fast", None)  # speed settings change float rounding only
    data.get("training", {}).pop("chunk_size", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def to_toml(exp: Experiment) -> str:
    """The fully resolved config as TOML text (what `config.toml` in a run holds)."""
    import tomli_w

    return tomli_w.dumps(exp.to_dict())
