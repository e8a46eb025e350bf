"""What a Streamlit chart was given, read from AppTest: the rows of its datasets, the rows each layer draws, and its
height. A chart element that exists is not a chart that shows anything: these let a test pin the data a chart draws
(the browser tests check the drawing itself, in ``test_e2e_browser.drawn_charts``)."""

from __future__ import annotations

import ast
import json
import math
import re

import pyarrow as pa


def chart_tables(chart) -> list[dict]:
    """Every dataset of one AppTest ``vega_lite_chart`` element, as column -> values (the main data first)."""
    return [pa.ipc.open_stream(d.data.data).read_all().to_pydict() for d in chart.proto.datasets]


def chart_rows(chart) -> int:
    """Rows in the chart's largest dataset (the marks it draws; layered rules and points come with fewer)."""
    return max((len(next(iter(t.values()), [])) for t in chart_tables(chart)), default=0)


def chart_height(chart) -> float | None:
    """The height its spec asks for (None: the spec leaves it to the container, or asks for "container")."""
    spec = json.loads(chart.proto.spec)
    height = spec.get("height")
    return float(height) if isinstance(height, int | float) else None


def page_tables(at) -> list[dict]:
    """Every dataset of every chart on an AppTest page, as column -> values."""
    return [table for chart in at.get("vega_lite_chart") for table in chart_tables(chart)]


# ---- what each layer draws: its own data after its own transforms ----

POSITIONS = ("x", "y", "x2", "y2", "theta", "radius", "latitude", "longitude")


def chart_layers(chart) -> list[tuple[str, int]]:
    """(name, rows drawn) of each layer of one AppTest ``vega_lite_chart`` element, in the spec's order (a chart of
    one mark is one layer; layers, concatenations and facets are read down to their marks). A layer's rows are those
    of its own dataset (or the one it inherits), left after its transforms and those of the specs above it, less the
    rows Vega-Lite drops for a quantitative or temporal position (x, y, ...) that is missing or not a number. The name
    is the mark and what it plots, e.g. "line: accuracy". A transform this does not read is an error, never a guess:
    the whole chart's rows say nothing of a layer whose filter keeps none of them."""
    tables = {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pylist() for d in chart.proto.datasets}
    main = []
    if chart.proto.HasField("data") and chart.proto.data.data:
        main = pa.ipc.open_stream(chart.proto.data.data).read_all().to_pylist()
    out: list[tuple[str, int]] = []
    _walk(json.loads(chart.proto.spec), main, [], {}, tables, out)
    return out


def empty_layers(chart) -> list[str]:
    """The names of the layers of ``chart`` that draw nothing (see ``chart_layers``)."""
    return [name for name, rows in chart_layers(chart) if rows == 0]


def _walk(spec: dict, rows: list[dict], transforms: list, encoding: dict, tables: dict, out: list) -> None:
    data = spec.get("data")
    if data is not None:
        if "name" in data:
            rows = tables[data["name"]]
        elif "values" in data:
            rows = list(data["values"])
        else:
            raise AssertionError(f"tests/charts.py reads named or inline data, not {data}")
        transforms = []  # a layer's own data: the transforms above it were applied to other rows
    transforms = transforms + list(spec.get("transform", []))
    encoding = {**encoding, **spec.get("encoding", {})}
    if "repeat" in spec:
        raise AssertionError("tests/charts.py does not read repeated charts")
    children = [c for key in ("layer", "hconcat", "vconcat", "concat") for c in spec.get(key, [])]
    children += [spec["spec"]] if "spec" in spec else []
    if children:
        for child in children:
            _walk(child, rows, transforms, encoding, tables, out)
        return
    if "mark" not in spec:
        raise AssertionError(f"a Vega-Lite spec with neither a mark nor layers: {sorted(spec)}")
    for transform in transforms:
        rows = _transform(transform, rows)
    for channel in POSITIONS:
        enc = encoding.get(channel)
        if isinstance(enc, dict) and "field" in enc and enc.get("type") in ("quantitative", "temporal") \
                and not enc.get("aggregate") and not enc.get("bin"):
            field = _field(enc["field"])
            rows = [r for r in rows if _number(r.get(field))]
    mark = spec["mark"]["type"] if isinstance(spec["mark"], dict) else spec["mark"]
    shown = next((e.get("title") or e.get("field") for c in ("y", "x", "theta", "color")
                  if isinstance(e := encoding.get(c), dict) and (e.get("title") or e.get("field"))), "")
    out.append((f"{mark}: {shown}" if shown else mark, len(rows)))


def _transform(transform: dict, rows: list[dict]) -> list[dict]:
    if set(transform) == {"filter"}:
        return [r for r in rows if _predicate(transform["filter"], r)]
    raise AssertionError(f"tests/charts.py reads filter transforms, not {transform}: teach it this one")


def _field(name: str) -> str:
    """A Vega-Lite field name as the data's column name (a backslash escapes a dot or bracket)."""
    return re.sub(r"\\(.)", r"\1", name)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        or hasattr(value, "year")  # a date or time (temporal)


def _predicate(predicate, row: dict) -> bool:
    if isinstance(predicate, str):
        return bool(_expression(predicate, row))
    if "and" in predicate:
        return all(_predicate(p, row) for p in predicate["and"])
    if "or" in predicate:
        return any(_predicate(p, row) for p in predicate["or"])
    if "not" in predicate:
        return not _predicate(predicate["not"], row)
    if set(predicate) - {"field", "equal", "oneOf", "in", "range", "lt", "lte", "gt", "gte", "valid"} \
            or "field" not in predicate:
        raise AssertionError(f"tests/charts.py does not read the predicate {predicate}")
    value = row.get(_field(predicate["field"]))
    tests = {"equal": lambda v: value == v, "oneOf": lambda v: value in v, "in": lambda v: value in v,
             "range": lambda v: value is not None and v[0] <= value <= v[1],
             "lt": lambda v: value is not None and value < v, "lte": lambda v: value is not None and value <= v,
             "gt": lambda v: value is not None and value > v, "gte": lambda v: value is not None and value >= v,
             "valid": lambda v: (value is not None and value == value) == v}
    return all(test(predicate[key]) for key, test in tests.items() if key in predicate)


TOKEN = re.compile(r"""\s*(?:(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
                   |(?P<field>datum(?:\.[A-Za-z_$][\w$]*|\[(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]))
                   |(?P<op>===|!==|==|!=|>=|<=|&&|\|\||[()<>!])|(?P<word>[A-Za-z_]\w*))""", re.VERBOSE)
OPERATORS = {"===": "==", "!==": "!=", "&&": " and ", "||": " or ", "!": " not "}
WORDS = {"true": "True", "false": "False", "null": "None"}


def _expression(text: str, row: dict):
    """A Vega expression of the kind Altair writes for ``transform_filter(alt.datum.x == ...)``, on one row:
    ``datum.field`` or ``datum['field']``, string and number literals, comparisons, ``&&``, ``||``, ``!``."""
    python, at = [], 0
    while at < len(text.rstrip()):
        match = TOKEN.match(text, at)
        if not match or match.end() == at:
            raise AssertionError(f"tests/charts.py does not read the expression {text!r} (at {text[at:]!r})")
        at = match.end()
        kind, token = match.lastgroup, match.group(match.lastgroup)
        if kind == "string":
            python.append(repr(ast.literal_eval(token)))
        elif kind == "field":
            name = token[6:] if token.startswith("datum.") else ast.literal_eval(token[6:-1])
            python.append(f"_row.get({name!r})")
        elif kind == "op":
            python.append(OPERATORS.get(token, token))
        elif kind == "word" and token in WORDS:
            python.append(WORDS[token])
        elif kind == "word":
            raise AssertionError(f"tests/charts.py does not read {token!r} in the expression {text!r}")
        else:
            python.append(token)
    try:
        return eval(" ".join(python), {"__builtins__": {}}, {"_row": row})  # noqa: S307 (the tokens are vetted)
    except TypeError:  # None < 1 and the like: Vega compares; a row without the value is not kept
        return False
