"""The package's shape, as docs/architecture.md draws it: subpackages in one order, every import
pointing to an earlier one, no import cycle between modules, nothing running at import, and
private PyTorch APIs called from one module only.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mnistlab"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# Bottom to top: a module may import from its own box or from boxes listed before it.
LAYERS = ["errors", "atomic", "plots", "data", "presets", "config", "features", "nn", "training",
          "fast", "rundir", "experiments", "report", "export", "predict", "notebook", "serve",
          "commands"]
PRIVATE_TORCH_HOME = "mnistlab.fast.torch_internals"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """mnistlab modules that `name` imports anywhere in its file (function bodies included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def _box(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mnistlab"


GRAPH = {name: _imports(name, path, _modules()) for name, path in _modules().items()}


def test_every_module_belongs_to_a_box_of_the_drawing():
    boxes = {_box(m) for m in GRAPH} - {"mnistlab", "__main__"}
    assert boxes == set(LAYERS)


def test_imports_point_only_down_the_layers():
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
              if _box(m) in LAYERS and LAYERS.index(_box(t)) > LAYERS.index(_box(m))]
    assert upward == []


def test_module_import_graph_has_no_cycle():
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt) and (cycle := visit(nxt, [*stack, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if not state.get(start):
            assert visit(start, [start]) is None


def test_architecture_doc_draws_these_layers():
    text = ARCHITECTURE.read_text()
    table = re.findall(r"^\| `(\w+)(?:/|\.py)?` \|", text, re.M)
    assert table == list(reversed(LAYERS)), "the doc's table lists the boxes top to bottom"


def _private_torch_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            chain, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in ("torch", "nn", "F"):
                chain.append(cur.id)
                dotted = ".".join(reversed(chain))
                private = any(p.startswith("_") and not p.startswith("__") for p in chain)
                if private or dotted.startswith("torch.ops."):
                    found.append(dotted)
    return found


def test_private_pytorch_apis_are_called_from_one_module_only():
    callers = {name: calls for name, path in _modules().items()
               if (calls := _private_torch_calls(path))}
    assert set(callers) == {PRIVATE_TORCH_HOME}, callers


@pytest.mark.slow
def test_every_module_imports_on_its_own_and_nothing_runs_at_import():
    """Each module imported first in a clean module table (so import order cannot hide a cycle);
    OpenMP / allocator / mnistlab variables, torch's thread count and the flush-to-zero mode are
    unchanged."""
    code = r"""
import importlib, json, os, sys
import torch
names = json.loads(sys.argv[1])
ours = ("OMP_", "GOMP_", "MNISTLAB_", "MALLOC_")  # scikit-learn sets KMP_* itself at import
def snapshot():
    return {k: v for k, v in os.environ.items() if k.startswith(ours)}
env, threads, problems = snapshot(), torch.get_num_threads(), []
ftz = bool((torch.tensor([1e-40]) * 1.0)[0] == 0)
for name in names:
    for loaded in [m for m in sys.modules if m == "mnistlab" or m.startswith("mnistlab.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        problems.append(f"{name}: {type(exc).__name__}: {exc}")
    if snapshot() != env:
        problems.append(f"{name} changed the environment")
    if torch.get_num_threads() != threads or bool((torch.tensor([1e-40]) * 1.0)[0] == 0) != ftz:
        problems.append(f"{name} changed torch's CPU settings")
print(json.dumps(problems))
"""
    names = sorted(m for m in GRAPH if m != "mnistlab.__main__")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(names)], capture_output=True,
                         text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("module", ["mnistlab", "mnistlab.commands.main", "mnistlab.fast.openmp"])
def test_light_entry_points_do_not_load_torch(module):
    """`import mnistlab`, the CLI's table and the OpenMP setting must not load torch: the CLI
    chooses OpenMP's spinning before torch (and libgomp) load."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_architecture_doc_says_what_each_box_imports():
    """The table's last column against the code (for every box but the CLI on top)."""
    rows = re.findall(r"^\| `(\w+)(?:/|\.py)?` \|.*\| ([^|]+) \|$", ARCHITECTURE.read_text(), re.M)
    wrong = {}
    for box, said in rows:
        if said.strip() == "everything below":
            continue
        declared = set() if said.strip() == "nothing" else {w.strip() for w in said.split(",")}
        declared = {w.split(" ")[0] for w in declared}
        actual = {_box(t) for m, targets in GRAPH.items() if _box(m) == box for t in targets}
        actual -= {box, "mnistlab"}
        if declared != actual:
            wrong[box] = {"doc": sorted(declared), "code": sorted(actual)}
    assert wrong == {}
