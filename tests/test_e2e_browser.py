"""The app in a real browser: ``streamlit run app.py`` on loopback, driven page by page with Chromium (Playwright),
with the tiny models. Each test opens its own browser context, i.e. its own Streamlit session, and leaves a full-page
screenshot <page>.png in a temporary directory, or in docs/screenshots with ``pytest --update-screenshots``.

Streamlit draws asynchronously: every step waits for a specific text or element (Playwright's auto-waiting
``expect``), never for a fixed time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"  # set per test from the screenshot_dir fixture (conftest.py)
WAIT_MS = 90_000  # one action's limit: the first use of a model loads it on a busy 2-core machine
TRAIN = ["train", "--model", "tiny", "--data", "rotten_tomatoes", "--conditioning", "class", "--quick-test",
         "--eval-every", "2", "--eval-size", "6", "--eval-samples", "2"]
NAV = ["Home", "Denoise", "Compare", "Classify", "Training", "Crossover", "Models"]
REVIEW = "A tender, funny and beautifully acted film, with a score I keep humming."


# ---- fixtures ----


@pytest.fixture(scope="module", autouse=True)
def tiny_run(chromium_launch, tmp_path_factory):
    """A tiny class-conditional run directory for the Training dashboard, trained by the CLI. It starts with the
    module (in parallel with the server and the first pages), unless there is no browser, and is awaited by the
    test that needs it."""
    out = tmp_path_factory.mktemp("training") / "run"
    log = out.parent / "train.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as handle:
        proc = subprocess.Popen([sys.executable, "train_cli.py", *TRAIN, "--out", str(out)], cwd=ROOT, env=env,
                                stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def finished() -> Path:
        try:
            code = proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"training did not finish in 300 s:\n{log.read_text()[-2000:]}")
        assert code == 0, f"train_cli.py exited with {code}:\n{log.read_text()[-2000:]}"
        return out

    try:
        yield finished
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _screenshots_to(screenshot_dir):
    global SHOTS
    SHOTS = screenshot_dir


@pytest.fixture()
def page(chromium_browser, streamlit_server):
    """A fresh session: its own browser context, 1400x900, every wait bounded; after the test, the page must show
    no Python exception, the browser must have logged no script error, and no request may have left the machine."""
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 900}, base_url=streamlit_server)
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    outside = record_outside_requests(context)
    try:
        yield tab
        assert tab.get_by_test_id("stException").count() == 0, tab.get_by_test_id("stException").all_inner_texts()
        assert not script_errors, script_errors
        assert not outside, f"requests that left the machine (an offline app must make none): {outside}"
    finally:
        context.close()


# ---- helpers ----


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def record_outside_requests(context) -> list[str]:
    """Every request of the context's pages to a host other than this machine (e.g. the Material icon that
    Streamlit fetches from fonts.gstatic.com for a ``:material/...:`` page icon), as it happens."""
    outside: list[str] = []
    context.on("request", lambda request: outside.append(request.url) if urlparse(request.url).scheme in (
        "http", "https", "ws", "wss") and urlparse(request.url).hostname not in LOCAL_HOSTS else None)
    return outside


def expect(target):
    """Playwright's auto-waiting assertions, imported late (no playwright: the fixtures skip or fail first), with
    the same limit as every other wait."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect(target)


def open_page(page, path: str, title: str) -> None:
    page.goto(path)
    expect(page.locator("h1", has_text=title)).to_be_visible()


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (sidebar or main area)."""
    from playwright.sync_api import Error as PlaywrightError

    # A choice just made reruns the script, which redraws the widgets: an option list opened during that rerun can be
    # detached under the click, again and again (seen twice in CI: "element was detached", for 90 s). So wait for
    # the script to finish, and if the list is still replaced under the click, open it again, within the usual limit.
    idle(page)
    box = page.get_by_role("combobox", name=label, exact=True)
    tries = 6
    for attempt in range(tries):
        try:
            box.click()
            # type to filter first: a long list can open past the viewport's edge
            box.fill(option)
            page.get_by_role("option", name=option, exact=True).click(timeout=WAIT_MS // tries)
            break
        except PlaywrightError:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
            idle(page)
    expect(box).to_have_value(option)


def tiny_models(page, *roles: str) -> None:
    labels = {"diffusion": ("Diffusion model", "tiny"), "ar": ("Left-to-right model", "tiny-ar"),
              "reference": ("Reference LM (perplexity, zero-shot)", "tiny-ar")}
    for role in roles:
        choose(page, *labels[role])


def metrics(page) -> list[tuple[str, str]]:
    """(label, value) of every st.metric, in page order, once the script has finished: while it reruns, the cards of
    the run before stay on the page beside the new ones (three Decision cards where two were expected)."""
    idle(page)
    cards = page.get_by_test_id("stMetric")
    return [(c.get_by_test_id("stMetricLabel").inner_text().strip(), c.get_by_test_id("stMetricValue").inner_text())
            for c in cards.all()]


# The mark groups of a drawn chart that hold nothing: Vega draws one group per mark of the spec (a layer's line, its
# points, a rule), named after it, and a faceted mark (a line per colour) inside a "role-scope" group with one item
# per facet: a layer whose data its filter empties leaves its group there, empty.
EMPTY_MARKS = """svg => [...svg.querySelectorAll('g.role-mark, g.role-scope')]
    .filter(g => g.childElementCount === 0).map(g => g.getAttribute('class'))"""


def drawn_charts(page, count: int) -> list[tuple[float, int]]:
    """(height in px, marks drawn) of each of the page's ``count`` Vega-Lite charts, once they are drawn: an element
    that exists is not a chart that draws (a discrete height stretched to fit drew a 0 px box, with every mark
    outside it). Marks are the SVG items Vega draws for the data (``role-mark`` groups), not axes or legends. Each
    layer must draw, not only the chart: a layer's mark group without an item fails (see ``EMPTY_MARKS``)."""
    charts = page.get_by_test_id("stVegaLiteChart")
    expect(charts).to_have_count(count)
    shapes, empty = [], []
    for chart in charts.all():
        expect(chart.locator("svg g.role-mark > *").first).to_be_attached()
        svg = chart.locator("svg").first
        shapes.append((svg.bounding_box()["height"], chart.locator("svg g.role-mark > *").count()))
        empty.append(svg.evaluate(EMPTY_MARKS))
    for height, marks in shapes:
        assert height >= 60 and marks > 0, f"a chart that does not draw: {shapes}"
    assert not any(empty), f"a layer that draws nothing (its mark groups, chart by chart): {empty}"
    return shapes


def masks(frame) -> int:
    """Grey [MASK] blocks in a decoding frame (pages._shared.trace_html)."""
    return frame.locator('span[title="masked"]').count()


def step_caption(page) -> tuple[int, int]:
    text = page.get_by_text(re.compile(r"^Step \d+ of \d+ ·")).inner_text()
    step, last = re.match(r"Step (\d+) of (\d+)", text).groups()
    return int(step), int(last)


def shell_words(command: str) -> list[str]:
    """The arguments bash would pass for ``command`` (line continuations included)."""
    out = subprocess.run(["bash", "-c", f"printf '%s\\n' {command}"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def idle(page) -> None:
    """The script has finished and every chart is drawn."""
    page.wait_for_function("""() => {
        const app = document.querySelector('[data-testid="stApp"]');
        const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
        return app && app.getAttribute('data-test-script-state') === 'notRunning'
            && document.querySelectorAll('[data-testid="stSkeleton"]').length === 0
            && charts.every(c => c.querySelector('canvas, svg.marks'));
    }""")


def snap(page, name: str) -> Path:
    """A full-page screenshot. Streamlit scrolls inside its main area, not the document, so the viewport is made as
    tall as the content for the picture, then put back."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    idle(page)
    size = page.viewport_size
    height = page.evaluate("""() => Math.max(...['stMain', 'stSidebarContent'].map(id =>
        document.querySelector(`[data-testid="${id}"]`)?.scrollHeight || 0))""")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(height, 12_000))})
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    idle(page)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size(size)
    _shows_the_page(path, min(height, 12_000))
    return path


def _shows_the_page(path: Path, content_height: int) -> None:
    """The screenshot holds the whole page as drawn: as tall as its content, and with ink on it (text, charts,
    frames), not a blank or half-rendered canvas."""
    from PIL import Image

    with Image.open(path) as image:
        grey = image.convert("L")
        assert grey.height >= content_height - 2, f"{path}: {grey.height} px of {content_height} px of content"
        ink = sum(count for level, count in enumerate(grey.histogram()) if level < 200) / (grey.width * grey.height)
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16))
    assert ink > 0.01 and colours > 50, f"{path} looks empty: {ink:.1%} of it inked, {colours} colours"


# ---- pages ----


def test_a_deep_link_into_a_fresh_server_gets_the_apps_navigation(chromium_browser, fresh_streamlit_server):
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 900}, base_url=fresh_streamlit_server)
    context.set_default_timeout(WAIT_MS)
    try:
        outside = record_outside_requests(context)
        page = context.new_page()
        open_page(page, "/classify", "Classify")
        idle(page)
        nav = page.get_by_test_id("stSidebarNav").get_by_role("link")
        assert [t.split("\n")[-1].strip() for t in nav.all_inner_texts()] == NAV
        assert "streamlit-wide" in page.get_by_test_id("stApp").get_attribute("class"), "app.py's page config"
        icon = page.locator("link[rel~='icon']").first.get_attribute("href")
        assert icon and urlparse(urljoin(fresh_streamlit_server, icon)).hostname == "127.0.0.1", icon
        assert not outside, outside
    finally:
        context.close()


def test_the_sidebar_model_choice_survives_a_page_switch(page):
    open_page(page, "/denoise", "Denoise")
    tiny_models(page, "diffusion")
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Classify").click()
    expect(page.locator("h1", has_text="Classify")).to_be_visible()
    idle(page)
    assert page.get_by_role("combobox", name="Diffusion model", exact=True).input_value() == "tiny"


def test_home_explains_animates_and_links_every_page(page):
    open_page(page, "/", "textdiff")
    main = page.get_by_test_id("stMain")
    expect(main).to_contain_text("measured honestly against left-to-right language models")
    expect(main).to_contain_text("A masked-diffusion model starts from a row of [MASK] tokens")
    nav = page.get_by_test_id("stSidebarNav").get_by_role("link")
    expect(nav).to_have_count(len(NAV))
    assert [t.split("\n")[-1].strip() for t in nav.all_inner_texts()] == NAV  # after the icon's name

    # the miniature is decoded by the selected diffusion model and plays by itself: masks disappear over time
    frame = page.get_by_test_id("stHtml").first
    expect(frame).to_contain_text("the movie was", ignore_case=True)
    expect(frame.locator('span[title="masked"]').first).to_be_visible()
    before = masks(frame)
    page.wait_for_function("""n => {
        const frame = document.querySelector('[data-testid="stHtml"]');
        return frame && frame.querySelectorAll('span[title="masked"]').length !== n;
    }""", arg=before)

    links = page.get_by_test_id("stPageLink")
    expect(links).to_have_count(6)
    for name in NAV[1:]:
        expect(links.filter(has_text=f"{name}:")).to_have_count(1)
    snap(page, "home")

    links.filter(has_text="Classify:").click()
    expect(page.locator("h1", has_text="Classify")).to_be_visible()


def test_denoise_generates_then_scrubs_and_plays_the_steps(page):
    open_page(page, "/denoise", "Denoise")
    tiny_models(page, "diffusion")
    page.get_by_role("button", name="Denoise", exact=True).click()
    expect(page.get_by_test_id("stMetric")).to_have_count(4)
    assert [label for label, _ in metrics(page)] == ["Forward passes", "Wall time", "Tokens / s", "Tokens per pass"]
    passes = int(metrics(page)[0][1])
    assert 1 <= passes <= 32, "32 new tokens, at least one committed per pass"

    frame = page.get_by_test_id("stHtml").first
    step, last = step_caption(page)
    assert step == last >= 1, "the result is shown first"
    assert masks(frame) == 0
    assert len(frame.locator("div").first.inner_text().split()) > 3, "the prompt's three words and new ones"
    expect(frame).to_contain_text("the movie was", ignore_case=True)

    slider = page.get_by_role("slider", name="Step")
    slider.focus()
    slider.press("Home")
    expect(page.get_by_text(f"Step 0 of {last} ·")).to_be_visible()
    expect(frame.locator('span[title="masked"]')).to_have_count(32)
    assert frame.locator("div").first.inner_text().split() == ["the", "movie", "was"], "only the prompt"

    slider.press("ArrowRight")
    slider.press("ArrowRight")
    expect(page.get_by_text(f"Step 2 of {last} ·")).to_be_visible()
    shown = masks(frame)
    assert 0 < shown < 32, "part of the text revealed"
    drawn_charts(page, 1)  # progress: % revealed vs forward passes

    # a mid-run frame makes the most telling picture
    for _ in range(last // 2 - 2):
        slider.press("ArrowRight")
    expect(page.get_by_text(f"Step {max(2, last // 2)} of {last} ·")).to_be_visible()
    snap(page, "denoise")

    # Play runs on a timer in the browser (a fragment with run_every): the step advances by itself, Pause stops it.
    # From step 0 it takes at least last * 0.3 s to reach the end, time enough to pause it on the way.
    slider.press("Home")
    expect(page.get_by_text(f"Step 0 of {last} ·")).to_be_visible()
    page.get_by_role("button", name=re.compile(r"Play$")).click()
    expect(page.get_by_role("button", name=re.compile(r"Pause$"))).to_be_visible()
    expect(page.get_by_text(re.compile(rf"^Step ({'|'.join(str(s) for s in range(2, last + 1))}) of"))).to_be_visible()
    page.get_by_role("button", name=re.compile(r"Pause$")).click()
    expect(page.get_by_role("button", name=re.compile(r"Play$"))).to_be_visible()


def test_compare_runs_both_decoders_and_scrubs_them_together(page):
    open_page(page, "/compare", "Compare")
    tiny_models(page, "diffusion", "ar", "reference")
    choose(page, "Strategy", "top-k per step")  # k = 4: 32 tokens in 8 passes, against 32 left to right
    page.get_by_role("button", name="Generate both").click()
    expect(page.get_by_test_id("stMetric")).to_have_count(13)
    shown = metrics(page)
    names = ["Forward passes", "Wall time", "Tokens / s", "Perplexity", "Distinct-1", "Distinct-2"]
    ratio = "Diffusion time / left-to-right time"
    assert [label for label, _ in shown] == names + names + [ratio], "both sides' metrics and their time ratio"
    assert re.fullmatch(r"\d+\.\d\d×", shown[12][1]), shown[12]
    diffusion, left_to_right = dict(shown[:6]), dict(shown[6:])
    assert diffusion["Forward passes"] == "8" and left_to_right["Forward passes"] == "32"
    for side in (diffusion, left_to_right):
        assert re.fullmatch(r"\d+(\.\d)?k?", side["Perplexity"]), f"scored by the reference model: {side}"
        assert 0 <= float(side["Distinct-1"]) <= 1 and 0 <= float(side["Distinct-2"]) <= 1
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="Diffusion", exact=True)).to_be_visible()
    expect(main.get_by_role("heading", name="Left-to-right", exact=True)).to_be_visible()

    frames = page.get_by_test_id("stHtml")
    expect(frames).to_have_count(2)
    assert [masks(frames.nth(0)), masks(frames.nth(1))] == [0, 0], "the sliders start at the end"
    slider = page.get_by_role("slider", name="Forward passes so far")
    slider.focus()
    slider.press("Home")
    expect(frames.nth(0).locator('span[title="masked"]')).to_have_count(32)
    expect(frames.nth(1).locator('span[title="masked"]')).to_have_count(32)
    for _ in range(4):
        slider.press("ArrowRight")
    expect(page.get_by_text("Left-to-right after 4 forward passes")).to_be_visible()
    expect(frames.nth(0).locator('span[title="masked"]')).to_have_count(16)  # 4 passes x 4 tokens
    expect(frames.nth(1).locator('span[title="masked"]')).to_have_count(28)  # 4 passes x 1 token
    drawn_charts(page, 1)
    legend = page.get_by_test_id("stVegaLiteChart").locator("svg g.role-legend")
    expect(legend).to_have_count(1)  # colour, dash and width merged into one legend
    labels = legend.locator("text").all_text_contents()
    assert labels == ["Diffusion", "Left-to-right"], f"one entry per decoder, in the domain's order: {labels}"
    snap(page, "compare")


def test_classify_decides_and_draws_each_models_evidence(page):
    open_page(page, "/classify", "Classify")
    tiny_models(page, "diffusion", "ar")
    text = page.get_by_role("textbox", name="Text", exact=True)
    text.fill(REVIEW)
    text.press("Control+Enter")  # apply the text before the click
    page.get_by_role("button", name="Classify", exact=True).click()

    decisions = page.get_by_test_id("stMetric")
    expect(decisions).to_have_count(2)
    for i, (label, value) in enumerate(metrics(page)):
        # the untrained tiny models score both classes alike, which the page calls a tie rather than a decision
        assert label == "Decision" and value in ("negative", "positive", "tie")
        expect(decisions.nth(i)).to_contain_text("within" if value == "tie" else "confidence")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="Diffusion", exact=True)).to_be_visible()
    expect(main.get_by_role("heading", name="Left-to-right", exact=True)).to_be_visible()

    heatmaps = page.get_by_test_id("stHtml")
    expect(heatmaps).to_have_count(2)
    for i in range(2):
        heatmap = heatmaps.nth(i)
        expect(heatmap).to_contain_text("tender")
        expect(heatmap).to_contain_text("evidence negative")
        assert heatmap.locator("span[title*='nats']").count() >= len(REVIEW.split()), "one span per token"
    expect(page.get_by_text(re.compile(r"^Per-token evidence"))).to_have_count(2)
    drawn_charts(page, 2)  # the posteriors
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2)  # log P(text | c) per class
    snap(page, "classify")


def test_training_dashboard_plots_a_run_and_builds_its_command(page, tiny_run):
    open_page(page, "/training", "Training dashboard")  # first the shipped pair, as the page opens
    expect(page.get_by_role("combobox", name="Run directory", exact=True)).to_have_value("checkpoints/imdb-diffusion")
    drawn_charts(page, 4)  # loss, per level, accuracy, the pair by epoch
    for value in page.get_by_test_id("stMetricValue").all():
        fits = value.evaluate("e => [e, ...e.querySelectorAll('*')].every(x => x.scrollWidth <= x.clientWidth)")
        assert fits, f"a metric cut off (an ellipsis): {value.inner_text()}"
    legends = page.get_by_test_id("stVegaLiteChart").locator("svg g.role-legend text").all_text_contents()
    assert legends and not [t for t in legends if t.endswith("…")], f"legend labels cut off: {legends}"
    run = tiny_run()
    choose(page, "Run directory", "other…")
    path = page.get_by_role("textbox", name="Path of the run directory")
    path.fill(str(run))
    path.press("Enter")

    cards = page.get_by_test_id("stMetric")
    expect(cards.first).to_contain_text("Step (of 5)")
    assert dict(metrics(page))["Step (of 5)"] == "5" and dict(metrics(page))["Status"] == "finished"
    main = page.get_by_test_id("stMain")
    for heading in ("Loss", "Loss per masking level", "Validation accuracy during training", "Settings",
                    "Reproduce or extend"):
        expect(main.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(main.get_by_role("heading", name=re.compile(r"^Validation by epoch"))).to_be_visible()
    drawn_charts(page, 4)  # loss, per level, accuracy, by epoch

    command = page.get_by_test_id("stCode")
    expect(command).to_contain_text("python train_cli.py train \\")
    for flag in ("--objective diffusion", "--model tiny", "--data rotten_tomatoes", "--conditioning class",
                 "--steps 5", "--out ~/textdiff-runs/run"):
        expect(command).to_contain_text(flag)
    expect(command).not_to_contain_text("--resume")
    argv = shell_words(command.inner_text())
    assert argv[:3] == ["python", "train_cli.py", "train"], "a command bash runs as shown"
    out = Path(os.path.expanduser(argv[argv.index("--out") + 1]))
    assert out.parent == Path.home() / "textdiff-runs" and not out.exists(), "a new run directory, never the run"
    assert argv[argv.index("--class-prompt") + 1] == "{label} review:"
    snap(page, "training")

    steps = page.get_by_role("spinbutton", name="Steps", exact=True)
    steps.fill("50")
    steps.press("Enter")
    expect(command).to_contain_text("--steps 50")
    expect(command).to_contain_text("--resume")  # more steps than the run has: continue it, in place
    expect(command).to_contain_text(f"--out {run}")
    gpus = page.get_by_role("spinbutton", name="Processes (GPUs)", exact=True)
    gpus.fill("4")
    gpus.press("Enter")
    expect(command).to_contain_text("accelerate launch --num_processes 4 train_cli.py train")
    assert shell_words(command.inner_text())[-1] == "--resume"


def test_models_lists_the_offline_models_and_probes_one(page):
    open_page(page, "/models", "Models")
    table = page.get_by_test_id("stTable")
    expect(table.locator("tbody tr").first).to_be_visible()
    assert table.locator("thead th").all_inner_texts() == ["name", "kind", "family", "size", "classes", "epochs",
                                                            "what"]
    rows = {cells[0]: cells for cells in (row.locator("td").all_inner_texts()
                                          for row in table.locator("tbody tr").all())}
    assert {"minilm", "minilm-ar", "smollm2", "tiny", "tiny-ar", "checkpoints/imdb-diffusion",
            "checkpoints/smollm2-zero-shot"} <= set(rows), "shipped checkpoints by their path in the repository"
    assert rows["checkpoints/imdb-diffusion"][1:3] == ["diffusion", "MiniLM-L6 (BERT)"]
    assert rows["checkpoints/smollm2-zero-shot"][1] == "zero-shot classifier"
    for cell in table.locator("td").all():  # every cell read whole: nothing runs past its column
        assert cell.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), f"cut off: {cell.inner_text()}"

    model = page.get_by_role("textbox", name=re.compile(r"^Diffusion model \("))
    model.fill("tiny")
    model.press("Enter")
    page.get_by_role("button", name="Predict").click()
    probe = page.get_by_test_id("stDataFrame").first
    expect(probe.locator("th")).to_have_count(3)  # the row index and one column per prefix
    assert probe.locator("th").all_inner_texts()[1:] == ["positive review:", "negative review:"]
    expect(probe.locator("td").first).to_contain_text("mask 1")
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    snap(page, "models")


def test_crossover_draws_the_committed_grid(page):
    results = json.loads((ROOT / "results" / "crossover.json").read_text())
    open_page(page, "/crossover", "When does diffusion win?")
    idle(page)
    status = "Finished" if results.get("finished") else "In progress"
    expect(page.get_by_test_id("stAlert").first).to_contain_text(status)
    charts = page.get_by_test_id("stVegaLiteChart")
    drawn = sum(1 for row in results["runs"] if row["steps"])
    expect(charts).to_have_count(drawn + 1)  # a curve per size that has a point, and accuracy against U
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    snap(page, "crossover")


# ---- the shipped models, as a newcomer first sees them ----

POSITIVE = ("A wonderful, moving film. The acting is superb, the story is beautiful, and I loved every minute of it. "
            "One of the best movies I have seen in years; highly recommended.")


def test_the_shipped_models_classify_and_write_in_the_browser(page):
    """The app's default models (checkpoints/imdb-*), untouched sidebar: both read an obvious review as positive,
    and the diffusion model writes under the positive class prompt. The screenshots are the README's pictures of
    real output (docs/screenshots/shipped-*.png)."""
    open_page(page, "/classify", "Classify")
    for label, default in (("Diffusion model", "imdb-diffusion"), ("Left-to-right model", "imdb-ar")):
        assert page.get_by_role("combobox", name=label, exact=True).input_value() == f"checkpoints/{default}"
    # untouched, the first press reads the example in the box: a decision, each said calibrated or not
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(page.get_by_test_id("stMetric")).to_have_count(2)
    for card in page.get_by_test_id("stMetric").all():
        expect(card.get_by_test_id("stMetricDelta")).to_contain_text(", calibrated")
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    text = page.get_by_role("textbox", name="Text", exact=True)
    text.fill(POSITIVE)
    text.press("Control+Enter")
    expect(page.get_by_text("This result was computed from earlier inputs")).to_have_count(1)  # the example's
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(page.get_by_text("This result was computed from earlier inputs")).to_have_count(0)  # this text's
    expect(page.get_by_test_id("stMetric")).to_have_count(2)
    assert metrics(page) == [("Decision", "positive"), ("Decision", "positive")]
    expect(page.get_by_test_id("stHtml")).to_have_count(2)
    snap(page, "shipped-classify")

    open_page(page, "/denoise", "Denoise")
    choose(page, "Class", "positive")
    page.get_by_role("button", name="Denoise", exact=True).click()
    expect(page.get_by_test_id("stMetric")).to_have_count(4)
    frame = page.get_by_test_id("stHtml").first
    assert masks(frame) == 0 and len(frame.locator("div").first.inner_text().split()) >= 3 + 5
    step, last = step_caption(page)
    slider = page.get_by_role("slider", name="Step")
    slider.focus()
    for _ in range(last - last // 2):  # half-way: part written, part still masked
        slider.press("ArrowLeft")
    expect(page.get_by_text(f"Step {last // 2} of {last} ·")).to_be_visible()
    assert 0 < masks(frame) < 32
    snap(page, "shipped-denoise")
