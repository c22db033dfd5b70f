"""RMSprop against the Keras update formulas, step by step, on random tensors."""

import numpy as np
import pytest
import torch

from mnistlab.nn.optim import RMSprop


def reference_steps(w0, grads, lr, rho, momentum, eps, centered, clipvalue=None, clipnorm=None,
                    global_clipnorm=None):
    """Keras 3 RMSprop, written from its documented formulas, in float64 NumPy."""
    ws = [w.astype(np.float64).copy() for w in w0]
    v = [np.zeros_like(w) for w in ws]
    a = [np.zeros_like(w) for w in ws]
    m = [np.zeros_like(w) for w in ws]
    for step_grads in grads:
        g = [x.astype(np.float64) for x in step_grads]
        if clipnorm is not None:
            g = [x * clipnorm / max(np.linalg.norm(x), clipnorm) for x in g]
        if global_clipnorm is not None:
            total = np.sqrt(sum((x**2).sum() for x in g))
            g = [x * global_clipnorm / max(total, global_clipnorm) for x in g]
        if clipvalue is not None:
            g = [np.clip(x, -clipvalue, clipvalue) for x in g]
        for i in range(len(ws)):
            v[i] = rho * v[i] + (1 - rho) * g[i] ** 2
            denom = v[i] + eps
            if centered:
                a[i] = rho * a[i] + (1 - rho) * g[i]
                denom = v[i] - a[i] ** 2 + eps
            increment = lr * g[i] / np.sqrt(denom)
            if momentum > 0:
                m[i] = momentum * m[i] + increment
                ws[i] -= m[i]
            else:
                ws[i] -= increment
    return ws


CASES = [
    dict(),
    dict(centered=True),
    dict(momentum=0.9),
    dict(momentum=0.5, centered=True),
    dict(clipvalue=0.01),
    dict(clipnorm=0.05),
    dict(global_clipnorm=0.05),
    dict(learning_rate=0.01, rho=0.5, epsilon=1e-3),
]


@pytest.mark.parametrize("kwargs", CASES, ids=[str(c) for c in CASES])
def test_matches_keras_formulas(kwargs):
    rng = np.random.default_rng(0)
    shapes = [(7, 5), (5,), (3, 2, 4)]
    w0 = [rng.normal(size=s) for s in shapes]
    grads = [[rng.normal(size=s) * rng.uniform(0.01, 3) for s in shapes] for _ in range(6)]
    params = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in w0]
    opt = RMSprop(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    full = dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)
    full.update(kwargs)
    expected = reference_steps(w0, grads, full.pop("learning_rate"), full.pop("rho"),
                               full.pop("momentum"), full.pop("epsilon"), full.pop("centered"),
                               **full)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-12, atol=1e-12)


def test_epsilon_is_inside_the_square_root():
    """A first step with g tiny shows the difference from PyTorch's epsilon-outside version."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = RMSprop([p], learning_rate=1.0, rho=0.0, epsilon=1e-4)
    p.grad = torch.tensor([1e-3], dtype=torch.float64)
    opt.step()
    assert float(-p.detach()) == pytest.approx(1e-3 / np.sqrt(1e-6 + 1e-4), rel=1e-12)


@pytest.mark.parametrize("pair", [("clipnorm", "global_clipnorm"), ("clipvalue", "clipnorm"),
                                  ("clipvalue", "global_clipnorm")])
def test_clipping_modes_are_exclusive_as_in_keras(pair):
    with pytest.raises(ValueError, match="at most one"):
        RMSprop([torch.zeros(1, requires_grad=True)], **{k: 1.0 for k in pair})


def test_state_round_trips_through_state_dict():
    p = torch.ones(3, requires_grad=True)
    opt = RMSprop([p], momentum=0.9, centered=True)
    p.grad = torch.tensor([0.1, -0.2, 0.3])
    opt.step()
    clone = torch.ones(3, requires_grad=True)
    with torch.no_grad():
        clone.copy_(p)
    opt2 = RMSprop([clone], momentum=0.9, centered=True)
    import io

    buf = io.BytesIO()  # as a checkpoint does: a real copy, not shared tensors
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf))
    for o, q in ((opt, p), (opt2, clone)):
        q.grad = torch.tensor([0.05, 0.05, -0.4])
        o.step()
    torch.testing.assert_close(p, clone, rtol=0, atol=0)
