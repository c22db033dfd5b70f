"""One MLP training step (forward, cross-entropy, gradients) written out by hand.

Why: an MLP step is a few matrix products and a handful of elementwise passes; autograd adds
graph bookkeeping, extra temporaries and copies around each of them. At the lab's batch sizes
(hog/final: 118 steps of 512 images per epoch) that overhead was a third of the epoch. Written
out, the step does the same arithmetic (the gradient formulas autograd uses: `tanh_backward`,
`sigmoid_backward`, `threshold_backward`, softmax minus the target), draws dropout masks in the
same order, in place where it can. tests/test_fast_mlp.py proves it equal to autograd, with and
without label smoothing (target y * (1 - ls) + ls / K, loss -sum(target * log softmax)).

Used for Sequential MLPs of Flatten / Linear / ReLU, tanh, sigmoid or linear activation /
KerasDropout; any other network (other activations, CNNs) trains through autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mnistlab.fast import gemm
from mnistlab.fast.sparse_input import SplitBatch
from mnistlab.fast.torch_internals import BACKWARD_KINDS, activation_backward
from mnistlab.nn.modules import KerasDropout

__all__ = ["MLPStep", "mlp_step_for"]

_FORWARD_INPLACE = {nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_, nn.ReLU: torch.relu_}


@dataclass(frozen=True)
class _Layer:
    linear: nn.Linear
    activation: type[nn.Module] | None  # None: linear (identity) or the output layer
    dropout: KerasDropout | None


class MLPStep:
    """Gradients of the mean cross-entropy for one batch, stored in each parameter's `.grad`."""

    def __init__(self, layers: list[_Layer], label_smoothing: float = 0.0):
        self.layers = layers
        self.label_smoothing = label_smoothing

    def __call__(self, xb: torch.Tensor | SplitBatch, yb: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (sum of the batch's losses as float64, number correct)."""
        with torch.no_grad():
            return self._step(xb, yb)

    def _step(self, xb, yb):
        a = xb if isinstance(xb, SplitBatch) else xb.reshape(len(xb), -1)
        saved = []  # per hidden layer: (its input, its activation output, its dropout scale)
        for layer in self.layers[:-1]:
            z = _linear(a, layer.linear)
            h = _FORWARD_INPLACE[layer.activation](z) if layer.activation else z
            scale = None
            out = h
            if layer.dropout is not None and layer.dropout.rate > 0:
                keep = layer.dropout.keep_mask(h.shape, h.device)
                scale = keep.to(h.dtype).mul_(1.0 / (1.0 - layer.dropout.rate))
                out = h * scale
            saved.append((a, h, scale))
            a = out
        last = self.layers[-1].linear
        logits = _linear(a, last)
        n = len(yb)
        logp = torch.log_softmax(logits, 1)
        picked = logp.gather(1, yb[:, None])
        ls = self.label_smoothing
        loss_sum = -picked.sum(dtype=torch.float64)
        if ls:  # -sum(target * logp), target = (1 - ls) one_hot + ls / K
            uniform = logp.sum(dtype=torch.float64) / logp.shape[1]
            loss_sum = loss_sum * (1 - ls) - uniform * ls
        correct = (logits.argmax(1) == yb).sum()
        grad = logp.exp_()  # d(mean loss)/d(logits) = (softmax - target) / n
        if ls:
            grad.sub_(ls / grad.shape[1])
        grad.scatter_add_(1, yb[:, None], torch.full((n, 1), -(1.0 - ls), dtype=grad.dtype,
                                                     device=grad.device))
        grad.mul_(1.0 / n)
        _store(last, grad, a)
        for i in range(len(saved) - 1, -1, -1):
            layer, (a_in, h, scale) = self.layers[i], saved[i]
            grad = gemm.matmul(grad, self.layers[i + 1].linear.weight)
            if scale is not None:
                grad.mul_(scale)
            if layer.activation is not None:
                grad = activation_backward(layer.activation, grad, h)
            _store(layer.linear, grad, a_in)
        return loss_sum, correct


def _linear(a: torch.Tensor | SplitBatch, linear: nn.Linear) -> torch.Tensor:
    if isinstance(a, SplitBatch):
        core = gemm.linear(a.core, linear.weight.index_select(1, a.plan.core), linear.bias)
        return core.addmm_(a.rest, linear.weight.t().index_select(0, a.plan.rest))
    return gemm.linear(a, linear.weight, linear.bias)


def _store(linear: nn.Linear, grad: torch.Tensor, a: torch.Tensor | SplitBatch) -> None:
    """weight.grad = grad^T a, bias.grad = column sums of grad (split inputs scattered back)."""
    if isinstance(a, SplitBatch):
        w = torch.empty_like(linear.weight)
        w[:, a.plan.core] = gemm.linear(grad.t(), a.core.t())
        w[:, a.plan.rest] = (a.rest.t() @ grad).t()
    else:
        w = gemm.linear(grad.t(), a.t())  # grad^T a
    linear.weight.grad = w
    linear.bias.grad = grad.sum(0)


def mlp_step_for(model: nn.Module, label_smoothing: float = 0.0) -> MLPStep | None:
    """The hand-written step for `model` (loss with `label_smoothing`), or None when it is not
    a plain MLP of known layers."""
    if not isinstance(model, nn.Sequential):
        return None
    layers: list[_Layer] = []
    modules = list(model)
    while modules and isinstance(modules[0], nn.Flatten):
        modules.pop(0)
    i = 0
    while i < len(modules):
        linear = modules[i]
        if not isinstance(linear, nn.Linear) or linear.bias is None:
            return None
        i += 1
        activation = None
        if i < len(modules) and type(modules[i]) in BACKWARD_KINDS:
            activation = type(modules[i])
            i += 1
        elif i < len(modules) and isinstance(modules[i], nn.Identity):
            i += 1
        dropout = None
        if i < len(modules) and isinstance(modules[i], KerasDropout):
            dropout = modules[i]
            i += 1
        layers.append(_Layer(linear, activation, dropout))
    if not layers or layers[-1].activation is not None or layers[-1].dropout is not None:
        return None
    return MLPStep(layers, label_smoothing)
