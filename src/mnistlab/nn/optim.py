"""RMSprop with Keras's argument names and semantics (PyTorch's differs: epsilon outside the root).

Per parameter w with gradient g (after clipping), Keras 3 does:

    v = rho * v + (1 - rho) * g^2
    centered:  a = rho * a + (1 - rho) * g;   d = v - a^2 + epsilon
    otherwise: d = v + epsilon
    step = learning_rate * g / sqrt(d)
    momentum > 0:  m = momentum * m + step;  w -= m
    otherwise:     w -= step

Clipping, before the update: `clipvalue` clips each element to [-c, c]; `clipnorm` rescales each
gradient tensor to L2 norm <= c; `global_clipnorm` rescales all gradients together so their joint
L2 norm <= c. As in Keras 3, at most one of the three may be set.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

from mnistlab.config.sections import OptimizerConfig

__all__ = ["RMSprop", "make_optimizer"]


class RMSprop(Optimizer):
    """Keras-semantics RMSprop; defaults are Keras's."""

    def __init__(
        self,
        params,
        learning_rate: float = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        clipvalue: float | None = None,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
    ):
        clips = {"clipvalue": clipvalue, "clipnorm": clipnorm, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError("RMSprop: set at most one of clipvalue, clipnorm, global_clipnorm "
                             "(as in Keras 3)")
        defaults = dict(learning_rate=learning_rate, rho=rho, momentum=momentum, epsilon=epsilon,
                        centered=centered, clipvalue=clipvalue, clipnorm=clipnorm,
                        global_clipnorm=global_clipnorm)
        super().__init__(params, defaults)

    @staticmethod
    def _clip(grads: list[torch.Tensor], group: dict) -> list[torch.Tensor]:
        if group["clipnorm"] is not None:
            c = group["clipnorm"]
            grads = [g * (c / torch.clamp(torch.linalg.vector_norm(g), min=c)) for g in grads]
        elif group["global_clipnorm"] is not None:
            c = group["global_clipnorm"]
            total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                          for g in grads]))
            grads = [g * (c / torch.clamp(total, min=c)) for g in grads]
        elif group["clipvalue"] is not None:
            c = group["clipvalue"]
            grads = [torch.clamp(g, -c, c) for g in grads]
        return grads

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = self._clip([p.grad for p in params], group)
            lr, rho, eps = group["learning_rate"], group["rho"], group["epsilon"]
            momentum, centered = group["momentum"], group["centered"]
            for p, g in zip(params, grads, strict=True):
                state = self.state[p]
                if not state:
                    state["velocity"] = torch.zeros_like(p)
                    if centered:
                        state["average_gradient"] = torch.zeros_like(p)
                    if momentum > 0:
                        state["momentum"] = torch.zeros_like(p)
                v = state["velocity"].mul_(rho).addcmul_(g, g, value=1 - rho)
                if centered:
                    a = state["average_gradient"].mul_(rho).add_(g, alpha=1 - rho)
                    denom = torch.addcmul(v, a, a, value=-1).add_(eps)
                else:
                    denom = v + eps
                denom.sqrt_()
                if momentum > 0:
                    m = state["momentum"].mul_(momentum).addcdiv_(g, denom, value=lr)
                    p.sub_(m)
                else:
                    p.addcdiv_(g, denom, value=-lr)
        return loss


def make_optimizer(params, cfg: OptimizerConfig) -> RMSprop:
    """The optimiser the `[optimizer]` section describes, over `params`."""
    return RMSprop(params, learning_rate=cfg.learning_rate, rho=cfg.rho, momentum=cfg.momentum,
                   epsilon=cfg.epsilon, centered=cfg.centered, clipvalue=cfg.clipvalue,
                   clipnorm=cfg.clipnorm, global_clipnorm=cfg.global_clipnorm)
