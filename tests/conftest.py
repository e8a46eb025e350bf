"""Test settings: never touch the network, keep CPU threads fixed, make tiny models quickly."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests use tiny models, which gain nothing from threads; on a busy 2-core machine two threads wait on each other
# (measured 25x slower). Subprocesses (torchrun, the kill-and-resume test) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


BROWSER_FIXTURES = {"chromium_launch", "chromium_browser", "streamlit_server", "fresh_streamlit_server"}


def pytest_addoption(parser):
    parser.addoption("--update-screenshots", action="store_true",
                     help="write the browser tests' screenshots into docs/screenshots (the README's pictures); "
                          "without it they go to a temporary directory")


def pytest_collection_modifyitems(config, items):
    """Every test that needs a browser or a served app is a browser test: ``-m "not browser"`` skips them all."""
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def screenshot_dir(request, tmp_path_factory) -> Path:
    """Where the browser tests put their screenshots: docs/screenshots with ``--update-screenshots`` (or
    ``$TEXTDIFF_SCREENSHOTS``), else a temporary directory, so a test run leaves the tracked pictures alone."""
    if request.config.getoption("--update-screenshots"):
        return ROOT / "docs" / "screenshots"
    if os.environ.get("TEXTDIFF_SCREENSHOTS"):
        return Path(os.environ["TEXTDIFF_SCREENSHOTS"])
    return tmp_path_factory.mktemp("screenshots")


# ---- The app in a real browser: a Streamlit server and Chromium (tests/test_e2e_browser.py, test_concurrency.py) ----

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TEXTDIFF_CHROMIUM", "/usr/bin/chromium")
# --disable-dev-shm-usage: a container's /dev/shm is often 64 MB, too small for several pages at once (their
# renderers crash and the page goes blank); Chromium then uses /tmp instead.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SERVER_START_S = 120  # torch and transformers import slowly on a busy 2-core machine


def browser_unavailable(why: str):
    """No browser tests without a browser: a failure in CI (CI=true), a skip elsewhere."""
    message = (f"{why}. The browser tests need the `playwright` package and Chromium: `pip install playwright` and "
               "`apt-get install chromium` (.ci/run does both); never `playwright install`, its download fails here.")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_launch() -> dict:
    """Keyword arguments for ``playwright ... chromium.launch``: Debian's Chromium, never a downloaded one."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        browser_unavailable("The Python package `playwright` is not installed")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        browser_unavailable(f"No Chromium at {CHROMIUM} (set TEXTDIFF_CHROMIUM to use another)")
    return {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def chromium_browser(chromium_launch):
    """One headless Chromium per test module (sync API); each test opens its own context, i.e. its own session."""
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(**chromium_launch)
        except Error as exc:
            browser_unavailable(f"Chromium at {CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and anything it started (its own process group), politely first."""
    if proc.poll() is None:
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue


def _die_with_parent() -> None:
    """In the server process: get SIGTERM if pytest dies without tearing down (Linux), so no server outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _start_server(log_path: Path) -> tuple[subprocess.Popen, str] | None:
    """``streamlit run app.py`` on a free loopback port; its URL once it answers, None if the port got taken."""
    port = _free_port()
    # PYTHONFAULTHANDLER: should the server die of a signal (a crash in native code), its threads' stacks go to the log
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
           "PYTHONFAULTHANDLER": "1"}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if proc.poll() is not None:
            if f"Port {port} is not available" in text:
                return None  # another process took the port between choosing and binding it
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{text[-3000:]}", pytrace=False)
        if url in text:  # our server printed its address; the health check alone could answer for another one
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                    if response.read().strip() == b"ok":
                        return proc, url
            except OSError:
                pass
        time.sleep(0.25)
    _stop(proc)
    pytest.fail(f"streamlit did not answer on {url} within {SERVER_START_S} s:\n"
                f"{log_path.read_text(errors='replace')[-3000:]}", pytrace=False)


class ServedApp(str):
    """The app's base URL (a str), with ``.log``: the path of the server's output, and ``.proc``: the server."""

    log: Path
    proc: subprocess.Popen

    def state(self, tail: int = 3000) -> str:
        """For a failure message: whether the server still runs, and the end of its log."""
        code = self.proc.poll()
        alive = "still running" if code is None else f"exited with {code}"
        return f"the server {alive}; its log ends:\n{self.log.read_text(errors='replace')[-tail:]}"


@contextlib.contextmanager
def serve_app(log_path: Path):
    """``streamlit run app.py`` on a free 127.0.0.1 port: its base URL, and the server (with anything it started)
    stopped on exit, also when the body failed. The server's output goes to ``log_path``; its tail is printed if it
    logged a traceback."""
    for _ in range(3):
        started = _start_server(log_path)
        if started:
            break
    else:
        pytest.fail("three free ports were taken before streamlit could bind one", pytrace=False)
    proc, url = started
    served = ServedApp(url)
    served.log = log_path
    served.proc = proc
    try:
        yield served
    finally:
        _stop(proc)
        text = log_path.read_text(errors="replace")
        if "Traceback" in text:
            print(f"\n---- streamlit log ({log_path}) ----\n{text[-5000:]}", file=sys.stderr)


@pytest.fixture(scope="module")
def streamlit_server(tmp_path_factory):
    """Base URL of the app served for one test module (see ``serve_app``); the log is in the pytest temporary
    directory, ``streamlit*/server.log``."""
    with serve_app(tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


@pytest.fixture()
def fresh_streamlit_server(tmp_path):
    """A server of its own for one test: no session has run app.py on it yet."""
    with serve_app(tmp_path / "server.log") as url:
        yield url
