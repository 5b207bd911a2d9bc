"""The package's shape, checked from its source: no import cycles, the layer rules, and the
size limits that keep modules and functions readable.

Every module is parsed with ``ast`` (nothing is imported, so a broken or heavy module
cannot hide an import): all ``import`` statements count, also those inside functions,
and relative imports are resolved against the importing module's package. The checker
runs on the real package and, to show that it can fail, on small synthetic packages
written to ``tmp_path`` that break each rule once.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "moshiface_ros"

# Layers (first part of the module name below the package). The outer layers wire the core
# together; the core never imports them.
OUTER = ("runner", "commands", "cli", "nodes", "server")
ROS_ONLY = ("rclpy", "{package}.msg")  # imported only under nodes/
MODEL = ("face_lm", "speech")  # the model, below training
TRAINING = "training"

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Functions allowed to be longer than MAX_FUNCTION_LINES: {"module:Qualified.name": why}.
LONG_FUNCTIONS: dict[str, str] = {}

# moshi's private API: only moshiface_ros.moshi_compat may touch it.
COMPAT_MODULE = f"{PACKAGE}.moshi_compat"
MOSHI_PRIVATE = frozenset({
    "_init_streaming_state", "_streaming_state", "_cached_children", "_lm_kwargs",
    "_mimi_config", "_get_initial_token", "_init_layer", "_delay_sequence", "_undelay_sequence",
    "_initialized", "_embedding",
})
# Private names too common to flag everywhere: flagged only in modules that import moshi.
MOSHI_PRIVATE_IF_MOSHI = frozenset({"_step"})


# -- the checker ---------------------------------------------------------------------------------


@dataclass
class Module:
    name: str  # dotted, e.g. moshiface_ros.face_lm.model
    path: Path
    is_package: bool
    tree: ast.Module
    lines: int
    imports: set[str] = field(default_factory=set)  # every dotted name imported (resolved)


def load_modules(root: Path, package: str) -> dict[str, Module]:
    """Every ``.py`` file of ``root/package``, parsed, with its imports resolved."""
    modules: dict[str, Module] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        text = path.read_text(encoding="utf-8")
        modules[".".join(parts)] = Module(".".join(parts), path, is_package, ast.parse(text, str(path)),
                                          len(text.splitlines()))
    for module in modules.values():
        module.imports = _imports_of(module, modules)
    return modules


def _imports_of(module: Module, modules: dict[str, Module]) -> set[str]:
    found: set[str] = set()
    own_package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                if f"{target}.{alias.name}" in modules:
                    found.add(f"{target}.{alias.name}")
    return found


def module_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Edges between the package's own modules. Importing ``a.b.c`` also runs ``a`` and
    ``a.b`` (their ``__init__``), except those the importer is itself inside of."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, module in modules.items():
        for target in module.imports:
            parts = target.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                    graph[name].add(prefix)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path a -> ... -> a) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(start: str) -> None:  # Tarjan's algorithm, iterative (no recursion limit)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            connect(name)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A closed path through the component's first module (breadth-first: a shortest one)."""
    members, start = set(component), component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return component


def _layer(name: str) -> str:
    """The first part below the package: ``face_lm`` for ``moshiface_ros.face_lm.model``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports_name(imported: str, name: str) -> bool:
    return imported == name or imported.startswith(name + ".")


def layer_violations(modules: dict[str, Module], package: str) -> list[str]:
    """Every broken layer rule, one line each: ``module imports target (rule)``."""
    problems = []
    for name, module in sorted(modules.items()):
        layer = _layer(name)
        for imported in sorted(module.imports):
            if layer != "nodes" and any(_imports_name(imported, ros.format(package=package)) for ros in ROS_ONLY):
                problems.append(f"{name} imports {imported} (ROS outside nodes/)")
            if not _imports_name(imported, package) or layer in OUTER:
                continue
            target = _layer(imported)
            if target in OUTER:
                problems.append(f"{name} imports {imported} (core importing {target})")
            if layer in MODEL and target == TRAINING:
                problems.append(f"{name} imports {imported} (the model importing training)")
    return problems


def private_moshi_uses(modules: dict[str, Module], compat: str) -> list[str]:
    """Touches of moshi's private names outside the compatibility module."""
    problems = []
    for name, module in sorted(modules.items()):
        if name == compat:
            continue
        uses_moshi = any(_imports_name(i, "moshi") or _imports_name(i, compat) for i in module.imports)
        private = MOSHI_PRIVATE | MOSHI_PRIVATE_IF_MOSHI if uses_moshi else MOSHI_PRIVATE
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "moshi":
                problems += [f"{name}:{node.lineno} imports {alias.name} from {node.module}"
                             for alias in node.names if alias.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr in private:
                problems.append(f"{name}:{node.lineno} uses .{node.attr}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in private:
                problems.append(f"{name}:{node.lineno} overrides {node.name}")
    return problems


def long_modules(modules: dict[str, Module], limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    return {name: m.lines for name, m in sorted(modules.items()) if m.lines > limit}


def long_functions(modules: dict[str, Module], limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """``{"module:Qualified.name": lines}`` of every function longer than ``limit``
    (from its ``def`` line to its last line; nested functions are counted on their own too)."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualified = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > limit:
                        found[f"{module}:{qualified}"] = length
                visit(child, module, qualified + ".")
            else:
                visit(child, module, prefix)

    for name, module in sorted(modules.items()):
        visit(module.tree, name, "")
    return found


# -- the real package ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package() -> dict[str, Module]:
    return load_modules(REPO, PACKAGE)


def test_the_package_has_no_import_cycle(package):
    cycles = find_cycles(module_graph(package))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_package_keeps_its_layer_rules(package):
    assert len(package) > 50  # the walk found the package
    problems = layer_violations(package, PACKAGE)
    assert not problems, "\n".join(problems)


def test_only_moshi_compat_touches_moshis_private_api(package):
    problems = private_moshi_uses(package, COMPAT_MODULE)
    assert not problems, "\n".join(problems)


def test_the_runner_and_the_nodes_do_not_import_moshi(package):
    problems = [f"{name} imports {imported}" for name, module in sorted(package.items())
                if _layer(name) in ("runner", "nodes")
                for imported in sorted(module.imports) if _imports_name(imported, "moshi")]
    assert not problems, "\n".join(problems)


def test_modules_stay_short(package):
    offenders = long_modules(package)
    print("modules over", MAX_MODULE_LINES, "lines:", offenders or "none")
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines: {offenders}"


def test_functions_stay_short(package):
    offenders = long_functions(package)
    print("functions over", MAX_FUNCTION_LINES, "lines:", offenders or "none")
    too_long = {k: v for k, v in offenders.items() if k not in LONG_FUNCTIONS}
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (or add them to LONG_FUNCTIONS with a reason): {too_long}"
    stale = sorted(k for k in LONG_FUNCTIONS if k not in offenders)
    assert not stale, f"LONG_FUNCTIONS names functions that are short now (or gone): {stale}"


# -- the checker can fail ------------------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> dict[str, Module]:
    """A synthetic ``moshiface_ros`` package under ``root``; ``files`` maps relative paths to source."""
    for relative, source in files.items():
        path = root / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for directory in [root / PACKAGE, *(p for p in (root / PACKAGE).rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    return load_modules(root, PACKAGE)


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    modules = write_package(tmp_path, {
        "speech/models.py": "from ..face_lm import config\n",
        "face_lm/config.py": "def tiny():\n    from ..speech.models import x\n    return x\n",
        "face_lm/model.py": "from .config import FaceConfig\n",
    })
    cycles = find_cycles(module_graph(modules))
    assert cycles == [[f"{PACKAGE}.face_lm.config", f"{PACKAGE}.speech.models", f"{PACKAGE}.face_lm.config"]]


def test_a_longer_cycle_and_a_clean_package(tmp_path):
    clean = write_package(tmp_path / "clean", {
        "a.py": "from . import b\n", "b.py": "import moshiface_ros.c\n", "c.py": "import numpy\n"})
    assert find_cycles(module_graph(clean)) == []
    looped = write_package(tmp_path / "looped", {
        "a.py": "from . import b\n", "b.py": "import moshiface_ros.c\n", "c.py": "from .a import x\n"})
    assert find_cycles(module_graph(looped)) == [[f"{PACKAGE}.{m}" for m in ("a", "b", "c", "a")]]


def test_a_cycle_through_a_package_init_is_found(tmp_path):
    modules = write_package(tmp_path, {
        "flame/__init__.py": "from .model import FlameModel\n",
        "flame/model.py": "from ..tracking import reference\n",
        "tracking/reference.py": "from moshiface_ros.flame.lbs import rodrigues\n",
        "flame/lbs.py": "",
    })
    (cycle,) = find_cycles(module_graph(modules))
    assert set(cycle) == {f"{PACKAGE}.flame", f"{PACKAGE}.flame.model", f"{PACKAGE}.tracking.reference"}


@pytest.mark.parametrize("path, source, expected", [
    ("audio/capture.py", "import rclpy\n", "moshiface_ros.audio.capture imports rclpy (ROS outside nodes/)"),
    ("retarget/x.py", "def f():\n    from ..msg import FaceFrame\n",
     "moshiface_ros.retarget.x imports moshiface_ros.msg (ROS outside nodes/)"),
    ("speech/engine.py", "from ..runner.pipeline import run\n",
     "moshiface_ros.speech.engine imports moshiface_ros.runner.pipeline (core importing runner)"),
    ("flame/model.py", "from moshiface_ros import cli\n",
     "moshiface_ros.flame.model imports moshiface_ros.cli (core importing cli)"),
    ("audio/live.py", "import moshiface_ros.nodes.spin\n",
     "moshiface_ros.audio.live imports moshiface_ros.nodes.spin (core importing nodes)"),
    ("face_lm/model.py", "def f():\n    from ..training.loss import face_lm_loss\n",
     "moshiface_ros.face_lm.model imports moshiface_ros.training.loss (the model importing training)"),
    ("speech/models.py", "from moshiface_ros.commands import face_lm\n",
     "moshiface_ros.speech.models imports moshiface_ros.commands (core importing commands)"),
])
def test_each_broken_layer_rule_is_reported(tmp_path, path, source, expected):
    modules = write_package(tmp_path, {path: source, "training/loss.py": "", "runner/pipeline.py": "",
                                       "nodes/spin.py": "", "cli.py": "", "commands/face_lm.py": ""})
    assert expected in layer_violations(modules, PACKAGE)


def test_the_outer_layers_may_use_what_they_wire(tmp_path):
    modules = write_package(tmp_path, {
        "nodes/moshiface_node.py": "import rclpy\nfrom ..msg import AudioChunk\nfrom ..runner import x\n",
        "runner/pipeline.py": "from ..speech.engine import SpeechEngine\nfrom ..cli import main\n",
        "training/train.py": "from ..face_lm.model import FaceLMModel\nfrom ..speech.models import load\n",
        "speech/engine.py": "from ..face_lm.generate import FaceLMGen\n",
    })
    assert layer_violations(modules, PACKAGE) == []


def test_private_moshi_names_outside_the_compat_module_are_found(tmp_path):
    modules = write_package(tmp_path, {
        "moshi_compat.py": "from moshi.models import loaders\nKW = loaders._lm_kwargs\n",
        "face_lm/model.py": "from moshi.models.lm_utils import _delay_sequence\n",
        "face_lm/generate.py":
            "class G:\n    def _init_streaming_state(self, n):\n        return self._streaming_state\n",
        "speech/models.py": "def f(m):\n    m._cached_children = None\n",
    })
    assert private_moshi_uses(modules, f"{PACKAGE}.moshi_compat") == [
        f"{PACKAGE}.face_lm.generate:2 overrides _init_streaming_state",
        f"{PACKAGE}.face_lm.generate:3 uses ._streaming_state",
        f"{PACKAGE}.face_lm.model:1 imports _delay_sequence from moshi.models.lm_utils",
        f"{PACKAGE}.speech.models:2 uses ._cached_children",
    ]


def test_long_modules_and_functions_are_listed(tmp_path):
    body = "".join(f"        x{i} = {i}\n" for i in range(60))
    modules = write_package(tmp_path, {
        "speech/long.py": "\n" * 401,
        "speech/short.py": "x = 1\n",
        "face_lm/f.py": f"def short():\n    return 1\n\nclass A:\n    def long(self):\n{body}\n"
                        f"def outer():\n    def inner():\n{body}    return inner\n",
    })
    assert long_modules(modules) == {f"{PACKAGE}.speech.long": 401}
    assert long_functions(modules) == {f"{PACKAGE}.face_lm.f:A.long": 61, f"{PACKAGE}.face_lm.f:outer": 63,
                                       f"{PACKAGE}.face_lm.f:outer.inner": 61}


def test_moshi_compat_checks_the_moshi_it_was_written_for(monkeypatch):
    import warnings

    from moshiface_ros import moshi_compat
    from moshiface_ros.errors import MoshifaceError

    assert moshi_compat.installed_version() == moshi_compat.MOSHI_VERSION == "0.2.13"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        moshi_compat.check_moshi()  # the pinned version: silent
    with pytest.warns(RuntimeWarning, match=r"^moshi 9\.9\.9 is installed; Moshi-Face was written for moshi 0\.2\.13"):
        moshi_compat.check_moshi("9.9.9")
    monkeypatch.delattr(moshi_compat.loaders, "_lm_kwargs")
    with pytest.raises(MoshifaceError, match=r"^moshi 9\.9\.9 has no moshi\.models\.loaders\._lm_kwargs, which "
                                             r"Moshi-Face needs: install moshi==0\.2\.13"):
        moshi_compat.check_moshi("9.9.9")
