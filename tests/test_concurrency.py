"""Many sessions at once: eight browser sessions against one ``streamlit run app.py`` on loopback, each with its own
word in its texts, generate on Denoise and classify on Classify at the same moment (barriers line the clicks up).
No session may see another's word, and none may show an error.

Models are shared by every session (``st.cache_resource``) with a lock per model; this checks that sharing them
never mixes results or session state up. AppTest cannot do this: AppTests in threads crash CPython 3.11.7's AST
compiler ("SystemError: AST constructor recursion depth mismatch"), so this drives real browser contexts (Playwright,
async API, one Chromium) against a real server. The whole test is bounded by LIMIT_S and stops by itself."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

WORDS = ["volcano", "saxophone", "lighthouse", "glacier", "tornado", "violin", "cathedral", "telescope"]  # 1 token each
LIMIT_S = 360  # the whole test; it takes 75-85 s on a busy 2-core machine
STEP_MS = 180_000  # one action's limit inside it
IDLE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelectorAll('[data-testid="stSkeleton"]').length === 0;
}"""


def words_in(text: str) -> set[str]:
    """Which of the sessions' words a text shows."""
    return {w for w in WORDS if re.search(rf"\b{w}\b", text.lower())}


class Session:
    """One browser context = one Streamlit session, with its own word."""

    def __init__(self, word: str):
        self.word = word
        self.page = None
        self.script_errors: list[str] = []
        self.seconds: dict[str, float] = {}

    def own_only(self, where: str, text: str) -> None:
        seen = words_in(text)
        assert self.word in seen, f"{self.word}'s session: its word is missing from {where}: {text[:300]!r}"
        assert seen == {self.word}, f"{self.word}'s session shows {sorted(seen - {self.word})} in {where}"

    async def no_errors(self, where: str) -> None:
        from playwright.async_api import expect

        await expect(self.page.get_by_test_id("stException")).to_have_count(0)
        alerts = self.page.get_by_test_id("stAlertContentError")
        assert await alerts.count() == 0, f"{self.word}'s session, {where}: {await alerts.all_inner_texts()}"
        assert not self.script_errors, f"{self.word}'s session, {where}: {self.script_errors}"

    async def settled(self) -> None:
        """After a click: wait until the run shows its metrics or an error, and fail at once on an error."""
        from playwright.async_api import expect

        outcome = (self.page.get_by_test_id("stMetric").or_(self.page.get_by_test_id("stAlertContentError"))
                   .or_(self.page.get_by_test_id("stException")))
        await expect(outcome.first).to_be_visible()
        await self.no_errors("after the click")

    async def seen(self) -> str:
        """For a failure message: what this browser tab's page shows (its alerts, or the start of its main area)."""
        try:
            alerts = await self.page.locator('[data-testid="stAlert"], [data-testid="stException"]').all_inner_texts()
            main = await self.page.get_by_test_id("stMain").inner_text(timeout=5_000)
        except Exception as exc:  # the page may be gone
            return f"(the page cannot be read: {str(exc).splitlines()[0]})"
        return f"alerts {alerts}; the page starts {main[:300]!r}"

    async def choose(self, label: str, option: str) -> None:
        from playwright.async_api import expect

        box = self.page.get_by_role("combobox", name=label, exact=True)
        await box.click()
        await box.fill(option)  # filter first, so the option needs no scrolling (see test_e2e_browser.choose)
        await self.page.get_by_role("option", name=option, exact=True).click()
        await expect(box).to_have_value(option)

    async def set_text(self, label: str, text: str) -> None:
        box = self.page.get_by_role("textbox", name=label, exact=True)
        await box.fill(text)
        await box.press("Control+Enter")  # apply it now, not on the click
        await self.page.wait_for_function(IDLE)

    async def go(self, name: str) -> None:
        from playwright.async_api import expect

        await self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()
        await expect(self.page.locator("h1", has_text=name)).to_be_visible()

    async def denoise(self, clicks: asyncio.Barrier) -> None:
        from playwright.async_api import expect

        page, start = self.page, time.monotonic()
        await page.goto("/denoise")
        await expect(page.locator("h1", has_text="Denoise")).to_be_visible()
        await self.choose("Diffusion model", "tiny")
        await self.set_text("Prompt", f"The {self.word} was")
        self.seconds["denoise setup"] = time.monotonic() - start
        await clicks.wait()
        start = time.monotonic()
        await page.get_by_role("button", name="Denoise", exact=True).click()
        await self.settled()
        await expect(page.get_by_test_id("stMetric")).to_have_count(4)
        await expect(page.get_by_text(re.compile(r"^Step (\d+) of \1 ·"))).to_be_visible()  # the final frame
        self.seconds["denoise"] = time.monotonic() - start
        frame = await page.get_by_test_id("stHtml").first.inner_text()
        assert frame.split()[:3] == ["the", self.word, "was"], frame[:200]
        self.own_only("the Denoise frame", frame)
        self.own_only("the Denoise page", await page.get_by_test_id("stMain").inner_text())
        await self.no_errors("Denoise")

    async def classify(self, clicks: asyncio.Barrier) -> None:
        from playwright.async_api import expect

        page, start = self.page, time.monotonic()
        await self.go("Classify")
        await self.choose("Diffusion model", "tiny")
        await self.choose("Left-to-right model", "tiny-ar")
        await self.set_text("Text", f"A {self.word} of a film: tender, funny and beautifully acted.")
        self.seconds["classify setup"] = time.monotonic() - start
        await clicks.wait()
        start = time.monotonic()
        await page.get_by_role("button", name="Classify", exact=True).click()
        await self.settled()
        await expect(page.get_by_test_id("stMetric")).to_have_count(2)
        heatmaps = page.get_by_test_id("stHtml")
        await expect(heatmaps).to_have_count(2)
        self.seconds["classify"] = time.monotonic() - start
        for i in range(2):
            self.own_only(f"heatmap {i + 1}", await heatmaps.nth(i).inner_text())
        for label in await page.get_by_test_id("stMetricValue").all_inner_texts():
            assert label in ("negative", "positive", "tie"), label  # tiny untrained models often tie
        await self.no_errors("Classify")

    async def still_own(self) -> None:
        """After every tab has finished: this page still shows only this tab's word, and so does the
        Denoise trace kept in this tab's state."""
        from playwright.async_api import expect

        self.own_only("the Classify page, at the end", await self.page.get_by_test_id("stMain").inner_text())
        await self.go("Denoise")
        frame = self.page.get_by_test_id("stHtml").first
        await expect(frame).to_be_visible()
        self.own_only("the kept Denoise trace", await frame.inner_text())
        await self.no_errors("at the end")


async def run_sessions(launch: dict, server) -> list[Session]:
    url = str(server)
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=STEP_MS)
    sessions = [Session(word) for word in WORDS]
    phases = [asyncio.Barrier(len(sessions)) for _ in range(3)]

    async with async_playwright() as p:
        browser = await p.chromium.launch(**launch)
        try:
            # someone opens the app first: until a session has run app.py's st.navigation, Streamlit serves pages/
            # as a legacy pages directory (see test_e2e_browser's deep-link test)
            first = await browser.new_page(base_url=url)
            await first.goto("/")
            await expect(first.locator("h1", has_text="textdiff")).to_be_visible()
            await first.close()

            async def one(session: Session) -> None:
                context = await browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
                context.set_default_timeout(STEP_MS)
                session.page = await context.new_page()
                session.page.on("pageerror", lambda error: session.script_errors.append(str(error)))
                session.page.on("crash", lambda _: session.script_errors.append("the page crashed"))
                try:
                    await session.denoise(phases[0])
                    await session.classify(phases[1])
                    await phases[2].wait()
                    await session.still_own()
                except BaseException:
                    for phase in phases:  # the others must not wait for this one at a barrier
                        await phase.abort()
                    raise

            results = await asyncio.gather(*(one(s) for s in sessions), return_exceptions=True)
            failures = [(s, r) for s, r in zip(sessions, results, strict=True) if isinstance(r, BaseException)]
            first_causes = [(s, r) for s, r in failures if not isinstance(r, asyncio.BrokenBarrierError)]
            if first_causes or failures:
                session, error = (first_causes or failures)[0]
                raise AssertionError(
                    f"{len(failures)} of {len(sessions)} sessions failed; {session.word}'s: {error}\n"
                    f"its page: {await session.seen()}\nits script errors: {session.script_errors}\n"
                    f"{server.state()}") from error
        finally:
            await browser.close()
    return sessions


def test_eight_sessions_at_once_keep_their_own_texts_and_show_no_errors(chromium_launch, streamlit_server):
    start = time.monotonic()
    try:
        sessions = asyncio.run(asyncio.wait_for(run_sessions(chromium_launch, streamlit_server), LIMIT_S))
    except TimeoutError:
        pytest.fail(f"eight sessions did not finish within {LIMIT_S} s; {streamlit_server.state()}", pytrace=False)
    log = streamlit_server.log.read_text(errors="replace")
    assert "Traceback" not in log, f"the server logged an error:\n{log[-3000:]}"
    slowest = {phase: max(s.seconds[phase] for s in sessions) for phase in sessions[0].seconds}
    print(f"\n{len(sessions)} sessions in {time.monotonic() - start:.1f} s; slowest: "
          + ", ".join(f"{phase} {s:.1f} s" for phase, s in slowest.items()))
