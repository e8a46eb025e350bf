"""The package: one dependency list, a console script, no path patches and no import cycle."""

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_pyproject_dependencies_are_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirement_lines(ROOT / "requirements.txt")
    assert project["scripts"]["textdiff"] == "train_cli:main"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_imported_third_party_package_is_a_dependency_and_every_dependency_is_imported():
    sources = [*ROOT.glob("textdiff_core/**/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py", ROOT / "train_cli.py"]
    imported = set().union(*(_imported_modules(p) for p in sources))
    declared = {re.split(r"[<>=!~ ]", line)[0].lower() for line in _requirement_lines(ROOT / "requirements.txt")}
    import_names = {"scikit-learn": "sklearn", "pillow": "PIL"}
    # gguf is read by transformers (the SmolLM2 file), not imported; joblib comes with scikit-learn
    unused = {name for name in declared if import_names.get(name, name) not in imported} - {"gguf"}
    assert not unused, f"declared but never imported: {unused}"
    third_party = {"torch", "transformers", "datasets", "accelerate", "safetensors", "streamlit", "altair", "pandas",
                   "PIL", "tqdm", "sklearn", "joblib", "plotly", "numpy", "scipy", "matplotlib",
                   "tokenizers"}
    missing = (imported & third_party) - {import_names.get(n, n) for n in declared} - {"joblib"}
    assert not missing, f"imported but not declared: {missing}"


def test_bench_scripts_do_not_patch_sys_path():
    for path in ROOT.glob("bench/*.py"):
        assert "sys.path" not in path.read_text(), path


def package_imports(path: Path) -> set[str]:
    """The textdiff_core modules a file imports, at any level and in any spelling: ``import textdiff_core.x``,
    ``from textdiff_core.x import y``, ``from textdiff_core import x``, relative ``from . import x`` / ``from .x
    import y``, and ``importlib.import_module("textdiff_core.x")``."""
    package = {p.stem for p in (ROOT / "textdiff_core").glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("textdiff_core.")}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.startswith("textdiff_core.") or node.level == 1 and module:
                found.add(module.split(".")[1 if node.level == 0 else 0])
            elif node.level == 0 and module == "textdiff_core" or node.level == 1 and not module:
                found |= {a.name for a in node.names if a.name in package}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            name = str(node.args[0].value)
            if name.startswith("textdiff_core."):
                found.add(name.split(".")[1])
    return found & package


def test_models_and_gguf_convert_do_not_import_each_other_back():
    """models imports gguf_convert (to convert SmolLM2 on first use); gguf_convert must not reach models back,
    directly or through the modules it imports."""
    assert "gguf_convert" in package_imports(ROOT / "textdiff_core" / "models.py")
    reached, todo = set(), ["gguf_convert"]
    while todo:
        name = todo.pop()
        for imported in package_imports(ROOT / "textdiff_core" / f"{name}.py") - reached:
            reached.add(imported)
            todo.append(imported)
    assert "models" not in reached, f"gguf_convert reaches models through {sorted(reached)}"


def test_package_imports_reads_every_spelling(tmp_path):
    spellings = ["import textdiff_core.models", "from textdiff_core.models import load_model",
                 "from textdiff_core import models", "from . import models", "from .models import load_model",
                 "import importlib\nimportlib.import_module('textdiff_core.models')",
                 "def f():\n    from textdiff_core import models as m"]
    for source in spellings:
        (tmp_path / "x.py").write_text(source + "\n")
        assert package_imports(tmp_path / "x.py") == {"models"}, source


def test_every_package_directory_is_installed():
    """An installed copy has every subpackage of the library (setuptools installs only the packages listed)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "textdiff_core").rglob("__init__.py")}
    assert found == listed, f"not installed: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"
