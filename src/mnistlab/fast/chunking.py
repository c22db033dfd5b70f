"""How many images a CNN's forward pass takes on the CPU when `training.chunk_size` is 0 (auto).

A batch split into chunks whose gradients add up gives the whole batch's step (see
`training.steps.chunked_step`) while each chunk's activations stay in cache. Figures behind the
sizes are in benchmarks/RESULTS.md (`epoch_vs_keras.py --variants chunk=N`).
"""

from __future__ import annotations

from torch import nn

from mnistlab.config.layers import layer_specs, mixing_layers
from mnistlab.config.sections import ModelConfig
from mnistlab.fast.fused_conv import ConvReluPool

__all__ = ["CNN_CHUNK_SIZE", "FUSED_CNN_CHUNK_SIZE", "preferred_chunk_size"]

# Small enough for a chunk's activations to stay in cache, large enough to keep the convolution
# kernels busy.
CNN_CHUNK_SIZE = 256
# When the only convolution is the fused first layer (fashion/final), what stays in memory per
# image is its pooled map (14 x 14 x 9 floats, 7 KB), and the Dense products gain from more rows.
FUSED_CNN_CHUNK_SIZE = 2048


def preferred_chunk_size(model: nn.Module, model_cfg: ModelConfig) -> int | None:
    """Chunk size for a CPU model: CNNs take chunks, larger when their every convolution is the
    fused first layer; MLPs (one large matrix product per layer) take whole batches, and so does
    any model with a layer that mixes samples (`config.layers.SAMPLE_MIXING_LAYERS`)."""
    if mixing_layers(layer_specs(model_cfg)):
        return None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    if all(isinstance(m, ConvReluPool) for m in convs):
        return FUSED_CNN_CHUNK_SIZE
    return CNN_CHUNK_SIZE
