"""Imports run one way: the package's module graph (every import, at the top of a module or inside a function) has
no cycle, the lowest floor (settings and records) imports neither torch nor the rest of the package, and an import
left inside a function defers a heavy optional dependency and says so."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "textdiff_core"
LOWEST_FLOOR = {"textdiff_core.errors", "textdiff_core.settings", "textdiff_core.paths", "textdiff_core.checkpoint",
                "textdiff_core.records"}


def module_name(file: Path, root: Path = PACKAGE) -> str:
    parts = file.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, here: str) -> list[str]:
    """Package modules an import statement names (``from textdiff_core import x`` names module x when it is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the importing module's package
        package = here.split(".")[: -node.level] if not here.endswith("__init__") else here.split(".")
        base = ".".join([*package, *([base] if base else [])])
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def module_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: package modules it imports anywhere in its source}."""
    files = {module_name(f, root): f for f in sorted(root.rglob("*.py"))}
    graph = {}
    for name, file in files.items():
        targets = set()
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            targets |= {t for t in imported(node, name) if t in files and t != name}
        graph[name] = targets - {"textdiff_core"}  # the package's __init__ imports nothing
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_imports_one_way():
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found(tmp_path):
    """The check itself: a package where a imports b at the top and b imports a inside a function."""
    package = tmp_path / "textdiff_core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from textdiff_core.b import g\n")
    (package / "b.py").write_text("def g():\n    from textdiff_core import a\n    return a\n")
    assert find_cycle(module_graph(package)) == ["textdiff_core.a", "textdiff_core.b", "textdiff_core.a"]


def test_the_lowest_floor_imports_nothing_above_it():
    graph = module_graph()
    for name in LOWEST_FLOOR:
        assert graph[name] <= LOWEST_FLOOR, f"{name} imports {sorted(graph[name] - LOWEST_FLOOR)}"
    code = ("import sys, " + ", ".join(sorted(LOWEST_FLOOR)) + "; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('textdiff_core')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent).stdout
    assert "torch" not in loaded and set(eval(loaded)) <= LOWEST_FLOOR | {"textdiff_core"}, loaded


def test_imports_inside_functions_defer_heavy_dependencies_and_say_why():
    for file in sorted(PACKAGE.rglob("*.py")):
        source = file.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in top:
                continue
            where = f"{file.relative_to(PACKAGE.parent)}:{node.lineno}"
            names = imported(node, module_name(file))
            assert not any(n.startswith("textdiff_core") for n in names), f"{where}: a package import in a function"
            assert not any(n.split(".")[0] in sys.stdlib_module_names and n != "fcntl" for n in names), \
                f"{where}: a standard-library import in a function"
            block = lines[max(0, node.lineno - 6):node.lineno]
            assert any("deferred" in line for line in block), f"{where}: a deferred import should say why"


def test_the_core_never_imports_the_experiments():
    """The experiments (crossover, campaign, augment, synthesize, the decoding benchmark, the report) sit on top of
    the library: no module outside ``textdiff_core.experiments`` and the CLI imports one of them."""
    graph = module_graph()
    above = ("textdiff_core.experiments", "textdiff_core.cli")
    for name, targets in graph.items():
        if name.startswith(above):
            continue
        upward = sorted(t for t in targets if t.startswith("textdiff_core.experiments"))
        assert not upward, f"{name} imports {upward}"


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every package module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen - {start}


def test_the_rendering_imports_no_experiment():
    """``render`` is pure functions over records (RESULTS.md, the README block, the cards, each experiment's section):
    it imports no experiment module, directly or through another one; the experiments import it."""
    render = "textdiff_core.experiments.render"
    experiments = sorted(m for m in reachable(module_graph(), render) if m.startswith("textdiff_core.experiments"))
    assert not experiments, f"{render} imports {experiments}"


def test_an_indirect_import_of_an_experiment_is_found(tmp_path):
    package = tmp_path / "textdiff_core"
    (package / "experiments").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "experiments" / "__init__.py").write_text("")
    (package / "experiments" / "render.py").write_text("from textdiff_core import train\n")
    (package / "experiments" / "grid.py").write_text("X = 1\n")
    (package / "train.py").write_text("def f():\n    from textdiff_core.experiments.grid import X\n    return X\n")
    assert reachable(module_graph(package), "textdiff_core.experiments.render") == {
        "textdiff_core.train", "textdiff_core.experiments.grid"}


def test_an_upward_import_is_found(tmp_path):
    package = tmp_path / "textdiff_core"
    (package / "experiments").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "experiments" / "__init__.py").write_text("")
    (package / "experiments" / "grid.py").write_text("X = 1\n")
    (package / "models.py").write_text("from textdiff_core.experiments.grid import X\n")
    assert module_graph(package)["textdiff_core.models"] == {"textdiff_core.experiments.grid"}
