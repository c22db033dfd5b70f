"""Report sections 1 and 2: the optimiser and loss as configured, and model complexity (weights
per layer, how totals are obtained, shallow vs deep capacity) computed from the recorded models."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mnistlab.config.load import experiment_from_dict
from mnistlab.config.optimizers import OPTIMIZER_ARGS
from mnistlab.config.sections import OptimizerConfig
from mnistlab.errors import MnistlabError
from mnistlab.report.compare import EXPERIMENTS, Group
from mnistlab.report.document import Block, Bullets, Heading, Math, Para, Table
from mnistlab.report.training_section import toolkit_blocks

__all__ = ["optimizer_section", "complexity_section", "chosen_group", "model_layers"]

OPTIMIZER_TITLES = {"rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW", "nadam": "Nadam",
                    "sgd": "SGD"}
RMSPROP_EQUATIONS = (
    r"v_t = \rho\, v_{t-1} + (1-\rho)\, g_t^2",
    r"\Delta_t = \frac{\eta\, g_t}{\sqrt{v_t + \epsilon}}",
    r"m_t = \mu\, m_{t-1} + \Delta_t, \qquad w_t = w_{t-1} - m_t",
)
CENTERED_EQUATIONS = (
    r"\bar{g}_t = \rho\, \bar{g}_{t-1} + (1-\rho)\, g_t, \qquad "
    r"\Delta_t = \frac{\eta\, g_t}{\sqrt{v_t - \bar{g}_t^2 + \epsilon}}",
)
ADAM_EQUATIONS = (
    r"m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad "
    r"v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2",
    r"w_t = w_{t-1} - \eta\, \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\, "
    r"\frac{m_t}{\sqrt{v_t} + \epsilon}",
)
NADAM_EQUATIONS = (
    r"u_t = \beta_1 \left(1 - 0.5 \cdot 0.96^{t}\right), \qquad "
    r"\Pi_t = \prod_{i=1}^{t} u_i",
    r"\hat{m}_t = \frac{u_{t+1}\, m_t}{1 - \Pi_t u_{t+1}} + \frac{(1-u_t)\, g_t}{1 - \Pi_t}, "
    r"\qquad w_t = w_{t-1} - \frac{\eta\, \hat{m}_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}",
)
SGD_EQUATIONS = (
    r"m_t = \mu\, m_{t-1} - \eta\, g_t, \qquad w_t = w_{t-1} + m_t"
    r"\quad (\text{nesterov: } w_t = w_{t-1} + \mu\, m_t - \eta\, g_t)",
)
DECAY_EQUATION = r"w \leftarrow w - \lambda\, \eta\, w \quad \text{(before each update)}"
LOSS_EQUATIONS = (
    r"\hat{y}_i = \frac{e^{z_i}}{\sum_{j=1}^{K} e^{z_j}}",
    r"L = -\sum_{i=1}^{K} y_i \log \hat{y}_i",
    r"J = \frac{1}{B} \sum_{n=1}^{B} L_n",
)


def _optimizer_of(g: Group) -> tuple[str, dict]:
    """The group's optimiser name and its own arguments (Keras defaults where config.toml
    leaves one out, as configs written before that argument existed do)."""
    table = g.config.get("optimizer", {})
    name = str(table.get("name", OptimizerConfig().name))
    own = OPTIMIZER_ARGS.get(name, {})
    return name, {k: table.get(k, default) for k, default in own.items()}


def optimizer_section(groups: Sequence[Group]) -> list[Block]:
    """Arguments as configured in every run (config.toml), update equations, loss."""
    used = [_optimizer_of(g) for g in groups]
    args = list(dict.fromkeys(["name", *(k for _, own in used for k in own)]))
    rows = []
    for arg in args:
        by_value: dict[str, list[str]] = {}
        for g, (name, own) in zip(groups, used, strict=True):
            if arg != "name" and arg not in own:
                continue
            value = name if arg == "name" else own[arg]
            by_value.setdefault("not set" if value is None else str(value), []).append(g.label)
        for value, labels in by_value.items():
            who = f"all {len(groups)} configurations" if len(labels) == len(groups) else (
                ", ".join(labels))
            rows.append((arg, value, who))
    names = sorted({name for name, _ in used})
    centered = any(own.get("centered") for _, own in used)
    decayed = any(own.get("weight_decay") for _, own in used)
    blocks: list[Block] = [
        Heading(2, "1. Optimiser and loss"),
        Para(f"The weights are optimised with "
             f"{', '.join(OPTIMIZER_TITLES.get(n, n) for n in names)} "
             "(Keras semantics), with these arguments, read from each run's config.toml:"),
        Table(("argument", "value", "used by"), tuple(rows)),
    ]
    if "rmsprop" in names:
        blocks += [
            Para("RMSprop's update of every weight w with gradient g at step t (η learning_rate, "
                 "ρ rho, μ momentum, ε epsilon; ε sits inside the square root as in Keras; with "
                 "momentum 0 the update is simply w_t = w_{t-1} - Δ_t):"),
            *[Math(eq) for eq in RMSPROP_EQUATIONS]]
        if centered:
            blocks += [Para("Centered runs also track the mean gradient and subtract its square:"),
                       *[Math(eq) for eq in CENTERED_EQUATIONS]]
    if {"adam", "adamw"} & set(names):
        blocks += [Para("Adam's update (β₁ beta_1, β₂ beta_2; ε is added to the uncorrected √v "
                        "as in Keras; with amsgrad, v_t is replaced by its running maximum):"),
                   *[Math(eq) for eq in ADAM_EQUATIONS]]
    if "nadam" in names:
        blocks += [Para("Nadam's update (m_t, v_t as in Adam; Keras 3's momentum cache u_t):"),
                   *[Math(eq) for eq in NADAM_EQUATIONS]]
    if "sgd" in names:
        blocks += [Para("SGD's update (μ momentum; with momentum 0, w_t = w_{t-1} - η g_t):"),
                   *[Math(eq) for eq in SGD_EQUATIONS]]
    if decayed:
        blocks += [Para("Decoupled weight decay (λ weight_decay), as Keras applies it:"),
                   Math(DECAY_EQUATION)]
    blocks += [
        Para("Cost function: categorical cross-entropy on the softmax output (z the K = 10 "
             "logits, y the one-hot label); training minimises its mean J over each batch of B "
             "images:"),
        *[Math(eq) for eq in LOSS_EQUATIONS],
    ]
    return blocks + toolkit_blocks(groups)


def chosen_group(groups: Sequence[Group]) -> Group:
    """The experiment's chosen model: a configuration named '...final', else the most accurate."""
    finals = [g for g in groups if g.label.split(" [")[0].endswith("final")]
    pool = finals or list(groups)
    return max(pool, key=lambda g: g.summary("test_accuracy").mean)


def model_layers(g: Group):
    """(layer infos, input shape, class count) rebuilt from the run's config, or None."""
    from mnistlab.config.geometry import feature_shape
    from mnistlab.nn.summary import describe_layers

    try:
        exp = experiment_from_dict(g.config, str(g.representative.path / "config.toml"),
                                   check_memory=False)
    except MnistlabError:
        return None
    m = g.representative.metrics
    shape = tuple(m.get("input_shape") or feature_shape(exp.features))
    n_classes = len(m["class_names"])
    try:
        return describe_layers(exp.model, shape, n_classes), shape, n_classes
    except (ValueError, KeyError, TypeError):
        return None


def _inputs_text(g: Group, shape: tuple) -> str:
    f = g.config.get("features", {})
    n = math.prod(shape)
    what = ("raw pixels scaled to [0, 1]" if f.get("kind", "raw") == "raw" else
            f"HOG features (pixels_per_cell {f.get('pixels_per_cell')}, orientations "
            f"{f.get('orientations')}, cells_per_block {f.get('cells_per_block', 1)})")
    if len(shape) == 1:
        return f"{n:,} values: {what}"
    return f"{'x'.join(map(str, shape))} = {n:,} values: {what}"


def _layer_table(g: Group, infos, shape, n_classes) -> list[Block]:
    rows = tuple((i.name, i.kind, "x".join(map(str, i.output_shape)), f"{i.weights:,}",
                  f"{i.biases:,}", f"{i.params:,}", i.formula) for i in infos
                 if not (i.kind == "Flatten" and len(shape) == 1))  # HOG vectors: a no-op
    weights, biases = sum(i.weights for i in infos), sum(i.biases for i in infos)
    frozen = sum(i.non_trainable for i in infos)  # BatchNormalization's moving moments
    recorded = int(g.representative.metrics["params"])
    terms = " + ".join(f"{i.params:,}" for i in infos if i.params)
    check = "matches" if recorded == weights + biases + frozen else "DOES NOT match"
    names = g.representative.metrics["class_names"]
    return [
        Heading(3, f"{EXPERIMENTS[g.experiment]}: {g.label}"),
        Bullets((f"Inputs: {_inputs_text(g, shape)}.",
                 f"Outputs: {n_classes} softmax probabilities, one per class "
                 f"({', '.join(names)}).",
                 f"Total: {terms} = {weights + biases + frozen:,} parameters ({weights:,} "
                 f"weights + {biases:,} biases"
                 + (f" + {frozen:,} non-trainable" if frozen else "")
                 + f"); this {check} the {recorded:,} recorded in metrics.json.")),
        Table(("layer", "type", "output", "weights", "biases", "params", "how it is obtained"),
              rows),
    ]


def complexity_section(by_experiment: dict[str, list[Group]]) -> list[Block]:
    """Layer arithmetic of each experiment's chosen model, then shallow vs deep from the data."""
    blocks: list[Block] = [Heading(2, "2. Model complexity"),
                           Para("Each experiment's chosen model, layer by layer: weights between "
                                "consecutive layers, biases, and how the total is obtained.")]
    sizes = []
    for groups in by_experiment.values():
        chosen = chosen_group(groups)
        layers = model_layers(chosen)
        if layers is None:
            blocks.append(Para(f"{chosen.label}: its config cannot be rebuilt by this version of "
                               "mnistlab, so its layers are not listed."))
            continue
        blocks += _layer_table(chosen, *layers)
        for g in groups:
            found = layers if g is chosen else model_layers(g)
            if found is not None:
                sizes.append((g, found[0]))
    blocks += _capacity(sizes)
    return blocks


def _capacity(sizes) -> list[Block]:
    """Shallow vs deep within one dataset at a time (MNIST and Fashion-MNIST are not compared)."""
    blocks: list[Block] = [Heading(3, "Do deeper networks have more capacity (weights)?")]
    if not sizes:
        return blocks + [Para("No model in this report could be rebuilt.")]
    by_dataset: dict[str, list] = {}
    for g, infos in sizes:
        by_dataset.setdefault(str(g.representative.metrics.get("dataset", "mnist")), []).append(
            (g, infos))
    for dataset, found in by_dataset.items():
        blocks += _capacity_one(dataset, found)
    return blocks


def _epochs(g: Group) -> int:
    return len(g.representative.history["val_loss"])


def _capacity_one(dataset: str, sizes) -> list[Block]:
    rows = []
    for g, infos in sorted(sizes, key=lambda s: (_depth(s[1]), sum(i.params for i in s[1]))):
        rows.append((g.label, str(_depth(infos)), f"{sum(i.params for i in infos):,}",
                     str(_epochs(g)), g.summary("test_accuracy").text()))
    blocks: list[Block] = [Table(("configuration", "layers with weights", "parameters", "epochs",
                                  "test accuracy"), tuple(rows),
                                 f"{dataset}: every configuration of this report on it")]
    shallow = min(sizes, key=lambda s: (_depth(s[1]), -sum(i.params for i in s[1])))
    deep = max(sizes, key=lambda s: (_depth(s[1]), -sum(i.params for i in s[1])))
    if _depth(shallow[1]) == _depth(deep[1]):
        return blocks + [Para(f"On {dataset}, every model here has {_depth(deep[1])} layers with "
                              "weights, so these runs hold no shallow-vs-deep comparison.")]
    (gs, ls), (gd, ld) = shallow, deep
    ps, pd = sum(i.params for i in ls), sum(i.params for i in ld)
    work = [f"Shallow: {gs.label}, {_depth(ls)} layers with weights: "
            + "; ".join(i.formula for i in ls if i.params) + f"; total {ps:,}.",
            f"Deep: {gd.label}, {_depth(ld)} layers with weights: "
            + "; ".join(i.formula for i in ld if i.params) + f"; total {pd:,}."]
    if pd > ps:
        verdict = (f"On {dataset}, the deeper model has {pd / ps:.1f} times the weights of the "
                   "shallow one.")
    else:
        verdict = (f"On {dataset}, the deeper model has {ps / max(pd, 1):.1f} times FEWER weights "
                   "than the shallow one: depth is not the same as capacity in weights. A dense "
                   "layer pays inputs x outputs; a convolution shares one small kernel over "
                   "every position and pooling shrinks what the dense layers see.")
    acc_s, acc_d = gs.summary("test_accuracy").mean, gd.summary("test_accuracy").mean
    verdict += f" Mean test accuracy: shallow {acc_s:.4f}, deep {acc_d:.4f} ({acc_d - acc_s:+.4f})"
    es, ed = _epochs(gs), _epochs(gd)
    if es != ed:
        verdict += (f"; the runs differ in length ({es} vs {ed} epochs), so this difference is "
                    "not the effect of depth or weights alone.")
    elif (pd > ps) == (acc_d > acc_s):
        verdict += ": the model with more weights is also the more accurate one here."
    else:
        verdict += (": the model with fewer weights is the more accurate one, so weights alone "
                    "do not decide accuracy.")
    return blocks + [Bullets(tuple(work)), Para(verdict)]


def _depth(infos) -> int:
    return sum(1 for i in infos if i.params > 0)
