"""The README: short, no commit hashes, its test command is the one CI runs, its results block is the report's."""

import json
import re
from pathlib import Path

import pytest

from textdiff_core.experiments.render import README_END, README_START, card_metadata, readme_table, write_readme_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_quotes_no_commit_hashes():
    assert len(README.splitlines()) <= 200
    hashes = [w for w in re.findall(r"\b[0-9a-f]{7,40}\b", README) if re.search(r"\d", w) and re.search(r"[a-f]", w)]
    assert not hashes, hashes


def test_ci_runs_the_readmes_test_command():
    commands = re.findall(r"```bash\n(pip install -r requirements-dev\.txt[^\n]*)\n```", README)
    assert len(commands) == 1
    ci = (ROOT / ".ci" / "run").read_text().replace("pip install -q ", "pip install ").replace(" -q -r", " -r")
    assert commands[0].replace("python -m pytest -q", "python -m pytest") in ci


def test_the_results_block_is_what_the_report_renders_from_results_json():
    block = README[README.index(README_START) + len(README_START):README.index(README_END)]
    assert block.strip() == readme_table(json.loads((ROOT / "results.json").read_text())).strip()


def test_write_readme_table_replaces_only_the_block(tmp_path):
    result = json.loads((ROOT / "results.json").read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{README_START}\nold\n{README_END}\nbottom\n")
    assert write_readme_table(readme, result)
    text = readme.read_text()
    assert text.startswith(f"top\n{README_START}\n") and text.endswith(f"{README_END}\nbottom\n")
    assert "old" not in text and readme_table(result) in text
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not write_readme_table(tmp_path / "plain.md", result)


def test_model_cards_carry_hub_metadata():
    meta = json.loads((ROOT / "checkpoints" / "imdb-diffusion" / "textdiff.json").read_text())
    lines = card_metadata(meta, "diffusion")
    assert lines[0] == "---" and lines[lines.index("---", 1) + 1] == ""
    assert "license: apache-2.0" in lines and "base_model: sentence-transformers/all-MiniLM-L6-v2" in lines
    assert "- stanfordnlp/imdb" in lines and "- accuracy" in lines


@pytest.mark.parametrize("term", ["twin", "reading", "adaptive"])
def test_terms_are_defined_where_first_used(term):
    first = re.search(rf"\b{term}", README, re.IGNORECASE)
    assert README[first.start() - 1] == "*" and README[first.end()] == "*", \
        f"{term!r} is first used before its definition: {README[first.start() - 60:first.end() + 20]!r}"


def test_the_layout_names_every_module():
    layout = README[README.index("## Layout"):README.index("## Links")]
    modules = [p for p in (ROOT / "textdiff_core").rglob("*.py") if p.name != "__init__.py"]
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in layout]
    assert not missing and "cli/" in layout, missing


def test_the_python_example_runs(monkeypatch, capsys):
    """The README's Python example, as written, on the shipped model."""
    (code,) = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert 8 <= len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})
    generated, decided = capsys.readouterr().out.strip().splitlines()
    assert generated.startswith("the movie was") and generated.endswith("forward passes)")
    label, confidence = decided.split()
    assert label == "positive" and 0.5 < float(confidence) <= 1.0
