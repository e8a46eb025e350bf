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
    sources = [*ROOT.glob("textdiff_core/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py", ROOT / "train_cli.py"]
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


def test_models_and_gguf_convert_do_not_import_each_other_back():
    assert "textdiff_core.models" not in (ROOT / "textdiff_core" / "gguf_convert.py").read_text()
