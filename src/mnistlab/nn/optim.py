"""Keras-semantics optimisers (PyTorch's differ: epsilon placement, momentum sign, decay form).

Shared by all of them, in Keras 3's order (`BaseOptimizer.apply`):

1. Clipping: `clipvalue` clips each element to [-c, c]; `clipnorm` rescales each gradient tensor
   to L2 norm <= c; `global_clipnorm` rescales all gradients together so their joint L2 norm
   <= c. As in Keras 3, at most one of the three may be set.
2. Decoupled weight decay (`weight_decay` = d, when set and non-zero): w -= w * d * lr, before
   the update and independent of the gradient (Keras's `_apply_weight_decay`).
3. The optimiser's update, below for each.

RMSprop, per parameter w with gradient g:

    v = rho * v + (1 - rho) * g^2
    centered:  a = rho * a + (1 - rho) * g;   d = v - a^2 + epsilon
    otherwise: d = v + epsilon
    step = learning_rate * g / sqrt(d)
    momentum > 0:  m = momentum * m + step;  w -= m
    otherwise:     w -= step

SGD (Keras sign convention: the buffer holds the velocity, not the gradient sum):

    momentum > 0:  m = momentum * m - lr * g;  w += m   (nesterov: w += momentum * m - lr * g)
    otherwise:     w -= lr * g

Adam and Nadam, per parameter w with gradient g at step t = 1, 2, ...

Adam (and AdamW, which is Adam with `weight_decay` defaulting to 0.004):

    m = m + (g - m) * (1 - beta_1);   v = v + (g^2 - v) * (1 - beta_2)
    amsgrad: v_hat = max(v_hat, v), used in place of v
    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    w -= alpha * m / (sqrt(v) + epsilon)          (epsilon outside the root, unlike RMSprop)

Nadam (Keras 3's momentum cache; `u_product` is the running product of u_1 ... u_t):

    u_t = beta_1 * (1 - 0.5 * 0.96^t);   u_{t+1} = beta_1 * (1 - 0.5 * 0.96^(t+1))
    u_product_t = u_product_{t-1} * u_t
    m, v as in Adam
    m_hat = u_{t+1} * m / (1 - u_product_t * u_{t+1}) + (1 - u_t) * g / (1 - u_product_t)
    v_hat = v / (1 - beta_2^t)
    w -= lr * m_hat / (sqrt(v_hat) + epsilon)

Every slot lives in `self.state[p]` (with the step count), so `state_dict()` is all a checkpoint
needs for an exact resume.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from mnistlab.config.optimizers import OPTIMIZER_ARGS
from mnistlab.config.sections import OptimizerConfig

__all__ = ["KerasOptimizer", "RMSprop", "SGD", "Adam", "AdamW", "Nadam", "make_optimizer"]


class KerasOptimizer(Optimizer):
    """Clipping, decoupled weight decay and the step count, shared by every optimiser here;
    subclasses implement `_update(p, g, state, group)` for one parameter."""

    def __init__(self, params, clipvalue: float | None = None, clipnorm: float | None = None,
                 global_clipnorm: float | None = None, weight_decay: float | None = None,
                 **defaults):
        clips = {"clipvalue": clipvalue, "clipnorm": clipnorm, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError(f"{type(self).__name__}: set at most one of clipvalue, clipnorm, "
                             "global_clipnorm (as in Keras 3)")
        super().__init__(params, dict(defaults, weight_decay=weight_decay, **clips))

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
            decay = group["weight_decay"]
            for p, g in zip(params, grads, strict=True):
                if decay:
                    p.sub_(p * (decay * group["learning_rate"]))
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                self._update(p, g, state, group)
        return loss

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError


class RMSprop(KerasOptimizer):
    """Keras-semantics RMSprop; defaults are Keras's."""

    def __init__(self, params, learning_rate: float = 0.001, rho: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-7, centered: bool = False, **common):
        super().__init__(params, learning_rate=learning_rate, rho=rho, momentum=momentum,
                         epsilon=epsilon, centered=centered, **common)

    def _update(self, p, g, state, group):
        lr, rho, eps = group["learning_rate"], group["rho"], group["epsilon"]
        momentum, centered = group["momentum"], group["centered"]
        if "velocity" not in state:
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


class SGD(KerasOptimizer):
    """Keras-semantics SGD (momentum, nesterov); defaults are Keras's."""

    def __init__(self, params, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, **common):
        super().__init__(params, learning_rate=learning_rate, momentum=momentum,
                         nesterov=nesterov, **common)

    def _update(self, p, g, state, group):
        lr, momentum = group["learning_rate"], group["momentum"]
        if momentum == 0:
            p.add_(g, alpha=-lr)
            return
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(p)
        m = state["momentum"].mul_(momentum).add_(g, alpha=-lr)
        if group["nesterov"]:
            p.add_(m, alpha=momentum).add_(g, alpha=-lr)
        else:
            p.add_(m)


class Adam(KerasOptimizer):
    """Keras-semantics Adam; defaults are Keras's."""

    def __init__(self, params, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False, **common):
        super().__init__(params, learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, **common)

    def _update(self, p, g, state, group):
        lr, b1, b2, eps = (group[k] for k in ("learning_rate", "beta_1", "beta_2", "epsilon"))
        t = state["step"]
        if "m" not in state:
            state["m"] = torch.zeros_like(p)
            state["v"] = torch.zeros_like(p)
            if group["amsgrad"]:
                state["v_hat"] = torch.zeros_like(p)
        m = state["m"].lerp_(g, 1 - b1)
        v = state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["v_hat"], v, out=state["v_hat"])
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        p.addcdiv_(m, v.sqrt().add_(eps), value=-alpha)


class AdamW(Adam):
    """Keras-semantics AdamW: Adam with decoupled weight decay, 0.004 by default as in Keras."""

    def __init__(self, params, weight_decay: float = 0.004, **kwargs):
        super().__init__(params, weight_decay=weight_decay, **kwargs)


class Nadam(KerasOptimizer):
    """Keras-semantics Nadam; defaults are Keras's."""

    def __init__(self, params, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, **common):
        super().__init__(params, learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, **common)

    def _update(self, p, g, state, group):
        lr, b1, b2, eps = (group[k] for k in ("learning_rate", "beta_1", "beta_2", "epsilon"))
        t = state["step"]
        if "m" not in state:
            state["m"] = torch.zeros_like(p)
            state["v"] = torch.zeros_like(p)
            state["u_product"] = 1.0
        u_t = b1 * (1 - 0.5 * 0.96**t)
        u_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product = state["u_product"] * u_t
        state["u_product"] = u_product
        m = state["m"].lerp_(g, 1 - b1)
        v = state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = m * (u_next / (1 - u_product * u_next)) + g * ((1 - u_t) / (1 - u_product))
        denom = (v / (1 - b2**t)).sqrt_().add_(eps)
        p.addcdiv_(m_hat, denom, value=-lr)


def make_optimizer(params, cfg: OptimizerConfig) -> KerasOptimizer:
    """The optimiser the `[optimizer]` section describes, over `params` (the config loader has
    already filled in the chosen optimiser's Keras defaults and refused foreign arguments)."""
    cls = {"rmsprop": RMSprop, "sgd": SGD, "adam": Adam, "adamw": AdamW, "nadam": Nadam}[cfg.name]
    kwargs = {k: getattr(cfg, k) for k in OPTIMIZER_ARGS[cfg.name]}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return cls(params, **kwargs)
