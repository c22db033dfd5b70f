"""A run's config digest is its identity on disk: the checkpoint stores it (resume refuses a
checkpoint whose digest differs) and suites skip experiments whose identical run is complete.
Adding a setting must not change the digest of configs that do not use it."""

from __future__ import annotations

import mnistlab
from mnistlab.config.identity import config_digest

# Computed at commit 941331f, before [augmentation] and the adam/adamw/nadam/sgd fields existed:
# runs made then hold these digests in their checkpoints and metrics.json.
DIGESTS_BEFORE_THE_TOOLKIT = {
    "raw/final": "b058490127840198",
    "hog/final": "86c9c7dd15e2e971",
    "cnn/final": "c44525d30d59eca6",
    "fashion/final": "dd3fa1bdfb1dd23e",
    "raw/template": "6ef4bc5f5eb48acb",
}


def test_presets_keep_the_digests_their_earlier_runs_recorded():
    now = {p: config_digest(mnistlab.load_experiment(p)) for p in DIGESTS_BEFORE_THE_TOOLKIT}
    assert now == DIGESTS_BEFORE_THE_TOOLKIT


def test_a_new_setting_counts_once_it_differs_from_its_default():
    base = config_digest(mnistlab.load_experiment("cnn/final"))
    same = config_digest(mnistlab.load_experiment("cnn/final", ["augmentation.rotation=0.0"]))
    moved = config_digest(mnistlab.load_experiment("cnn/final", ["augmentation.rotation=0.05"]))
    adam = config_digest(mnistlab.load_experiment("cnn/final", ["optimizer.name=adam"]))
    assert same == base and moved != base and adam != base
