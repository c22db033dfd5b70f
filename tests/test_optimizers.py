"""Adam, AdamW, Nadam and SGD against Keras 3's update formulas, step by step, on random
tensors; and the [optimizer] rules of the config loader."""

import numpy as np
import pytest
import torch

from mnistlab.config.identity import to_toml
from mnistlab.config.load import experiment_from_dict
from mnistlab.config.sections import OptimizerConfig
from mnistlab.errors import ConfigError
from mnistlab.nn.optim import SGD, Adam, AdamW, Nadam, make_optimizer

SHAPES = [(7, 5), (5,), (3, 2, 4)]


def decay(w, wd, lr):
    """Keras's BaseOptimizer._apply_weight_decay, before every update."""
    return w - w * wd * lr if wd else w


def adam_reference(w0, grads, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                   amsgrad=False, weight_decay=None):
    ws = [w.copy() for w in w0]
    m = [np.zeros_like(w) for w in ws]
    v = [np.zeros_like(w) for w in ws]
    vhat = [np.zeros_like(w) for w in ws]
    for t, gs in enumerate(grads, start=1):
        alpha = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for i, g in enumerate(gs):
            ws[i] = decay(ws[i], weight_decay, learning_rate)
            m[i] = m[i] + (g - m[i]) * (1 - beta_1)
            v[i] = v[i] + (g**2 - v[i]) * (1 - beta_2)
            vv = v[i]
            if amsgrad:
                vhat[i] = np.maximum(vhat[i], v[i])
                vv = vhat[i]
            ws[i] = ws[i] - alpha * m[i] / (np.sqrt(vv) + epsilon)
    return ws


def nadam_reference(w0, grads, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                    weight_decay=None):
    ws = [w.copy() for w in w0]
    m = [np.zeros_like(w) for w in ws]
    v = [np.zeros_like(w) for w in ws]
    u_product = 1.0
    for t, gs in enumerate(grads, start=1):
        u_t = beta_1 * (1 - 0.5 * 0.96**t)
        u_t1 = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product = u_product * u_t
        for i, g in enumerate(gs):
            ws[i] = decay(ws[i], weight_decay, learning_rate)
            m[i] = m[i] + (g - m[i]) * (1 - beta_1)
            v[i] = v[i] + (g**2 - v[i]) * (1 - beta_2)
            m_hat = u_t1 * m[i] / (1 - u_product * u_t1) + (1 - u_t) * g / (1 - u_product)
            v_hat = v[i] / (1 - beta_2**t)
            ws[i] = ws[i] - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)
    return ws


def sgd_reference(w0, grads, learning_rate=0.01, momentum=0.0, nesterov=False,
                  weight_decay=None):
    ws = [w.copy() for w in w0]
    m = [np.zeros_like(w) for w in ws]
    for gs in grads:
        for i, g in enumerate(gs):
            ws[i] = decay(ws[i], weight_decay, learning_rate)
            if momentum == 0:
                ws[i] = ws[i] - learning_rate * g
                continue
            m[i] = momentum * m[i] - learning_rate * g
            ws[i] = ws[i] + (momentum * m[i] - learning_rate * g if nesterov else m[i])
    return ws


CASES = [
    (Adam, adam_reference, {}),
    (Adam, adam_reference, dict(amsgrad=True)),
    (Adam, adam_reference, dict(learning_rate=0.05, beta_1=0.5, beta_2=0.9, epsilon=1e-3)),
    (Adam, adam_reference, dict(weight_decay=0.1, learning_rate=0.01)),
    (AdamW, lambda w, g, **k: adam_reference(w, g, **{"weight_decay": 0.004, **k}), {}),
    (AdamW, adam_reference, dict(weight_decay=0.2, learning_rate=0.02, amsgrad=True)),
    (Nadam, nadam_reference, {}),
    (Nadam, nadam_reference, dict(learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4)),
    (Nadam, nadam_reference, dict(weight_decay=0.05)),
    (SGD, sgd_reference, {}),
    (SGD, sgd_reference, dict(momentum=0.9)),
    (SGD, sgd_reference, dict(momentum=0.9, nesterov=True, learning_rate=0.1)),
    (SGD, sgd_reference, dict(momentum=0.5, weight_decay=0.3)),
]


@pytest.mark.parametrize("cls, reference, kwargs", CASES,
                         ids=[f"{c.__name__}-{k}" for c, _, k in CASES])
def test_matches_keras_formulas(cls, reference, kwargs):
    """Eight steps: long enough for bias correction, amsgrad's max and the momentum cache to
    matter (their effect at step 1 differs from step 8)."""
    rng = np.random.default_rng(1)
    w0 = [rng.normal(size=s) for s in SHAPES]
    grads = [[rng.normal(size=s) * rng.uniform(0.01, 3) for s in SHAPES] for _ in range(8)]
    params = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in w0]
    opt = cls(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    expected = reference(w0, grads, **kwargs)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-10, atol=1e-12)


def test_adam_epsilon_is_outside_the_square_root_and_bias_corrected():
    """First step: m = (1-b1) g, v = (1-b2) g^2. Keras adds epsilon to sqrt(v) before the bias
    correction (folded into alpha), so the step is lr s g / (s |g| + eps), s = sqrt(1-b2),
    not the paper's lr g / (|g| + eps)."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = Adam([p], learning_rate=1.0, epsilon=1e-4)
    p.grad = torch.tensor([1e-3], dtype=torch.float64)
    opt.step()
    s = np.sqrt(1 - 0.999)
    assert float(-p.detach()) == pytest.approx(s * 1e-3 / (s * 1e-3 + 1e-4), rel=1e-12)


def test_decoupled_decay_acts_with_a_zero_gradient():
    p = torch.full((3,), 2.0, dtype=torch.float64, requires_grad=True)
    opt = AdamW([p], learning_rate=0.1, weight_decay=0.5)
    p.grad = torch.zeros(3, dtype=torch.float64)
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), 2.0 - 2.0 * 0.5 * 0.1, rtol=1e-12)


def load(opt: dict) -> OptimizerConfig:
    return experiment_from_dict({"optimizer": opt}, "x.toml").optimizer


@pytest.mark.parametrize("name, cls, defaults", [
    ("adam", Adam, dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                        amsgrad=False, weight_decay=None)),
    ("adamw", AdamW, dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                          amsgrad=False, weight_decay=0.004)),
    ("nadam", Nadam, dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
    ("sgd", SGD, dict(learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None)),
])
def test_config_fills_keras_defaults_and_builds_the_optimiser(name, cls, defaults):
    cfg = load({"name": name})
    opt = make_optimizer([torch.zeros(2, requires_grad=True)], cfg)
    assert type(opt) is cls
    for key, value in defaults.items():
        assert opt.defaults[key] == value, key


def test_config_toml_records_only_the_chosen_optimisers_arguments_and_reloads():
    import tomllib

    exp = experiment_from_dict({"optimizer": {"name": "sgd", "momentum": 0.9,
                                              "nesterov": True}}, "x.toml")
    table = tomllib.loads(to_toml(exp))["optimizer"]
    assert table == {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True}
    again = experiment_from_dict(tomllib.loads(to_toml(exp)), "config.toml")
    assert again == exp


def test_rmsprop_configs_are_unchanged():
    """Runs made before other optimisers existed keep their config.toml and digest."""
    from mnistlab.config.identity import config_digest

    exp = experiment_from_dict({}, "x.toml")
    assert set(exp.to_dict()["optimizer"]) == {"name", "learning_rate", "rho", "momentum",
                                               "epsilon", "centered"}
    assert config_digest(exp) == config_digest(experiment_from_dict(
        {"optimizer": {"name": "rmsprop", "rho": 0.9}}, "y.toml"))


@pytest.mark.parametrize("opt, message", [
    ({"name": "adma"}, "x.toml: optimizer.name must be one of 'rmsprop', 'adam', 'adamw', "
                       "'nadam', 'sgd'; got 'adma' (did you mean 'adam'?)"),
    ({"name": "adam", "momentum": 0.9}, "x.toml: optimizer.momentum = 0.9 is not an argument "
                                        "of adam; it is taken by: rmsprop, sgd"),
    ({"name": "sgd", "amsgrad": True}, "x.toml: optimizer.amsgrad = True is not an argument "
                                       "of sgd; it is taken by: adam, adamw"),
    ({"rho": 0.9, "name": "nadam"}, "x.toml: optimizer.rho = 0.9 is not an argument of nadam; "
                                    "it is taken by: rmsprop"),
    ({"name": "adam", "beta_1": 1.0}, "x.toml: optimizer.beta_1 must be a number in [0, 1) "
                                      "(or left out); got 1.0"),
    ({"name": "adamw", "weight_decay": -0.1}, "x.toml: optimizer.weight_decay must be a "
                                              "number in [0, 1] (or left out); got -0.1"),
])
def test_config_errors(opt, message):
    with pytest.raises(ConfigError) as err:
        load(opt)
    assert str(err.value) == message


def test_summary_shows_the_optimiser_and_its_arguments(capsys, monkeypatch, tmp_path):
    from mnistlab.commands.main import main

    monkeypatch.setenv("MNISTLAB_RUNS", str(tmp_path))
    assert main(["summary", "raw/template", "--set", "optimizer.name=sgd",
                 "--set", "optimizer.momentum=0.9"]) == 0
    assert capsys.readouterr().out.endswith(
        "Optimizer: sgd (learning_rate=0.01, momentum=0.9, nesterov=false)\n")


def test_report_optimiser_section_lists_each_optimisers_own_arguments():
    from types import SimpleNamespace

    from mnistlab.report.document import Math, Para, Table
    from mnistlab.report.sections import optimizer_section

    old = SimpleNamespace(label="lab", config={"optimizer": {"name": "rmsprop", "rho": 0.9}})
    new = SimpleNamespace(label="aw", config=experiment_from_dict(
        {"optimizer": {"name": "adamw"}}, "x.toml").to_dict())
    blocks = optimizer_section([old, new])
    rows = next(b for b in blocks if isinstance(b, Table)).rows
    assert ("name", "rmsprop", "lab") in rows and ("name", "adamw", "aw") in rows
    assert ("rho", "0.9", "lab") in rows and ("beta_2", "0.999", "aw") in rows
    assert ("weight_decay", "0.004", "aw") in rows and ("weight_decay", "not set", "lab") in rows
    assert not any(r[0] in ("rho", "centered") and "aw" in r[2] for r in rows)
    text = " ".join(b.text for b in blocks if isinstance(b, Para))
    assert "RMSprop, AdamW" not in text and "AdamW, RMSprop" in text
    maths = [b for b in blocks if isinstance(b, Math)]
    assert any("beta_2^t" in m.latex for m in maths) and any("lambda" in m.latex for m in maths)
    assert not any("0.96" in m.latex for m in maths)  # no Nadam run, no Nadam equations


def test_report_equations_render_with_mathtext():
    import io

    from matplotlib import mathtext

    from mnistlab.report import sections

    for eq in (*sections.ADAM_EQUATIONS, *sections.NADAM_EQUATIONS, *sections.SGD_EQUATIONS,
               sections.DECAY_EQUATION):
        mathtext.math_to_image(f"${eq}$", io.BytesIO(), format="png")
