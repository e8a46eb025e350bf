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
# Tests that took 2 s or more each (their parameters and module fixtures together) in `pytest --durations=0`
# on a busy 2-core machine: marked slow here, so `-m "not slow"` skips them (a new test can use @pytest.mark.slow).
SLOW_TESTS = {
    "test_zero_shot.py": {
        "test_zero_shot_chooses_a_prompt_and_fits_a_bias_that_load_classifier_applies",
    },
    "test_campaign.py": {
        "test_a_campaign_stopped_between_chunks_resumes_to_the_weights_of_one_uninterrupted_run",
        "test_twins_stand_within_one_chunk_and_a_rerun_with_other_settings_is_refused",
        "test_campaign_ship_copies_the_epochs_chosen_on_validation_and_keeps_the_curves",
    },
    "test_app.py": {
        "test_models_page_reads_as_a_table_relative_paths_and_no_raw_records",
        "test_classify_page_starts_on_the_readings_the_shipped_calibrations_chose_and_says_so",
        "test_models_page_lists_offline_models_and_runs_fill_mask",
        "test_classify_page_refuses_empty_text",
        "test_classify_page_opens_on_an_example_and_names_each_readings_score",
        "test_classify_page_reads_by_infilling_with_occlusion_evidence_and_shows_the_tfidf_reference",
        "test_classify_page_scores_with_tiny_models_and_draws_heatmaps",
        "test_home_page_renders_and_links_to_models",
        "test_training_dashboard_counts_an_exported_continuation_over_its_whole_lineage",
        "test_training_dashboard_plots_a_run_and_builds_its_command",
    },
    "test_app_decoding.py": {
        "test_denoise_and_compare_default_to_a_quarter_of_the_passes",
        "test_denoise_play_steps_forward_and_pauses",
    },
    "test_bench.py": {
        "test_evidence_by_rate_strata_average_to_the_elbo_and_report_each_stratum",
        "test_quick_benchmark_writes_every_section",
    },
    "test_decoding.py": {
        "test_confidence_decoding_commits_several_tokens_per_pass_on_a_trained_model",
    },
    "test_denoisers.py": {
        "test_denoise_page_runs_every_family_once_remote_code_is_trusted",
    },
    "test_gguf_convert.py": {
        "test_config_is_clean_llama",
        "test_tied_embeddings",
        "test_tokenizer_round_trip",
        "test_greedy_generation_is_plausible",
        "test_second_call_is_instant",
        "test_crash_leftover_was_not_used_and_was_removed",
        "test_conversion_layout",
        "test_logits_match_gguf",
    },
    "test_hostile.py": {
        "test_compare_page_refuses_a_broken_model_directory",
        "test_classify_page_refuses",
        "test_classify_page_refuses_a_broken_model_directory",
        "test_classify_page_scores_odd_but_valid_text",
        "test_cli_refuses_a_bad_data_file_and_writes_nothing",
        "test_compare_page_refuses",
        "test_denoise_page_decodes_odd_but_valid_text",
        "test_denoise_page_refuses",
        "test_denoise_page_refuses_a_broken_model_directory",
        "test_training_page_survives_a_damaged_run_directory",
    },
    "test_joint.py": {
        "test_calibrate_combined_records_two_fold_accuracies_and_classify_applies_the_weight",
        "test_a_joint_checkpoint_records_its_recipe_and_reads_both_ways",
        "test_infill_needs_one_model_with_a_class_word",
        "test_joint_masking_masks_the_class_word_at_its_probability_and_never_the_rest_of_the_prompt",
        "test_the_twin_draws_both_orders_with_equal_probability",
    },
    "test_likelihood.py": {
        "test_batching_every_window_prefix_and_sample_together_changes_no_number",
        "test_elbo_expectation_equals_the_any_order_average_and_bounds_the_mixture",
        "test_elbo_is_unbiased_for_a_factorised_model",
        "test_shared_noise_lowers_the_variance_of_the_class_difference",
    },
    "test_noise.py": {
        "test_elbo_weighted_loss_is_unbiased_for_a_factorised_model",
    },
    "test_augment.py": {
        "test_a_tiny_experiment_compares_each_arm_with_real_only_on_the_same_test_reviews",
    },
    "test_first_use.py": {
        "test_the_app_says_what_a_first_use_does_in_its_spinner",
    },
    "test_report.py": {
        "test_an_interrupted_report_resumes_from_its_finished_pieces",
        "test_export_ships_an_fp16_copy_with_its_calibration",
        "test_quick_report_writes_results_md_and_json",
    },
    "test_shipped.py": {
        "test_a_shipped_checkpoint_generates_and_classifies_obvious_reviews",
    },
    "test_synthesize.py": {
        "test_the_training_page_shows_a_synthetic_sets_provenance_counts_and_samples",
    },
    "test_train.py": {
        "test_a_stopped_run_leaves_a_checkpoint_that_exports_and_resumes_under_the_same_schedule",
        "test_keyboard_interrupt_saves_a_checkpoint",
        "test_each_epoch_boundary_logs_accuracy_and_perplexity_given_the_class",
        "test_validation_accuracy_is_logged_during_class_conditional_training",
        "test_a_kill_during_a_save_leaves_the_last_complete_checkpoint",
        "test_class_conditioning_records_classes_prompt_and_data_mix",
        "test_continuing_a_trained_checkpoint_records_its_lineage_and_totals",
        "test_loss_falls_on_real_text_for_both_objectives",
        "test_per_class_conditioning_trains_one_model_per_class",
        "test_resume_after_sigkill_continues_exactly",
        "test_two_processes_train_with_gloo",
    },
}


def pytest_addoption(parser):
    parser.addoption("--update-screenshots", action="store_true",
                     help="write the browser tests' screenshots into docs/screenshots (the README's pictures); "
                          "without it they go to a temporary directory")


def pytest_collection_modifyitems(config, items):
    """Every test that needs a browser or a served app is a browser test: ``-m "not browser"`` skips them all; the
    tests of ``SLOW_TESTS`` are slow."""
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
        if getattr(item, "originalname", item.name) in SLOW_TESTS.get(Path(str(item.fspath)).name, ()):
            item.add_marker(pytest.mark.slow)


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
