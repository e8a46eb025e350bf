"""What a Streamlit chart was given, read from AppTest: the rows of its datasets and its height. A chart element that
exists is not a chart that shows anything: these let a test pin the data a chart draws (the browser tests check the
drawing itself, in ``test_e2e_browser.drawn_charts``)."""

from __future__ import annotations

import json

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
