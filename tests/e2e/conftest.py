"""Real-browser end-to-end fixtures: one real `streamlit run app.py` server for the whole session,
Debian's Chromium driven by Playwright (sync API), one fresh browser context per page.

- The server gets its own checkpoint folder (env VAE_STUDIO_CHECKPOINTS), seeded with one small
  finished run on mnist-sample's 28x28 digits (SEED_RUN), so the Latent, Generate and Checkpoints
  journeys do not depend on the training tests.
- Chromium is /usr/bin/chromium; Playwright never downloads a browser here. Without it the suite
  is skipped, except under CI=true, where a missing browser is a failure.
- A failing test leaves a full-page screenshot and the inner text of each of its pages, the
  server log and the timings under tests/e2e/artifacts/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_helpers import (
    ARTIFACTS,
    PAGE_TIMEOUT_MS,
    ROOT,
    SEED_RUN,
    TIMINGS,
    TIMINGS_FILE,
    full_page_screenshot,
    stop_run_if_active,
    wait_for_app,
)

from vae_core.run_process import end_run_processes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 900}
SERVER_START_TIMEOUT_S = 60


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# -- hooks ---------------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell in teardown that the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    if report.failed and report.when in ("setup", "call"):
        _save_failure_artifacts(item)  # now, before any teardown changes what the pages show


def _save_failure_artifacts(item) -> None:
    """A full-page screenshot and the inner text of every page the test opened, and the server log."""
    pages = getattr(item, "_e2e_pages", [])
    server = getattr(item, "_e2e_server", None)
    if not pages and server is None:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for i, page in enumerate(pages):
        stem = ARTIFACTS / f"{_slug(item.name)}-page{i}"
        try:
            full_page_screenshot(page, f"{stem}.png", timeout=15_000)
        except Exception as error:  # a dead page must not hide the test's own failure
            Path(f"{stem}.png.error.txt").write_text(repr(error))
        try:
            text = page.evaluate("() => document.body ? document.body.innerText : ''")
            Path(f"{stem}.txt").write_text(f"URL: {page.url}\n\n{text}")
        except Exception as error:
            Path(f"{stem}.txt").write_text(f"could not read the page: {error!r}")
    if server is not None and server.log_path.exists():
        shutil.copyfile(server.log_path, ARTIFACTS / f"{_slug(item.name)}-server.log")


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("e2e timings (measured, not asserted)")
        for name, seconds in sorted(TIMINGS.items()):
            terminalreporter.write_line(f"{name}: {seconds:.2f} s")
        terminalreporter.write_line(f"written to {TIMINGS_FILE.relative_to(ROOT)}")


# -- availability --------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _browser_available():
    """Skip the whole e2e suite when there is no browser to drive; under CI that is a failure."""
    problem = None
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        problem = f"{CHROMIUM} is missing (install Debian's chromium, e.g. `make browser`)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright Python package is not installed (pip install -r requirements-dev.txt)"
    if problem:
        if in_ci():
            pytest.fail(f"e2e suite cannot run: {problem}. CI=true, so this fails instead of skipping.", pytrace=False)
        pytest.skip(f"e2e suite skipped: {problem}")


# -- the server ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppServer:
    url: str
    checkpoints: Path
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed_checkpoint(folder: Path) -> Path:
    """A finished run on mnist-sample's 28x28 digits with a 2-D latent, trained long enough to look good
    in the README's screenshots (seconds on a CPU), saved the way the app saves runs."""
    from vae_core.checkpoint import save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.loop import run_to_end
    from vae_core.trainer import Trainer

    config = TrainConfig(data="mnist-sample", latent_dim=2, batch_size=64, epochs=30, device="cpu")
    trainer = Trainer(config, load_dataset("mnist-sample"))
    run_to_end(trainer)
    return save_trainer_checkpoint(trainer, SEED_RUN, "finished", folder / f"{SEED_RUN}.safetensors")


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(checkpoints: Path, log_name: str = "server.log", end_runs: bool = True):
    """`streamlit run app.py` on a free port, in its own process group, killed at the end with (unless
    end_runs is False) the run processes of its folder, which would outlive it; yields (AppServer, the
    monotonic time /_stcore/health first answered 'ok')."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / log_name
    # The app as `make run` starts it: no VAE_STUDIO_* setting leaks in from other test modules of the
    # same pytest process (tests/apphelpers.py turns the UMAP warm-up off for the AppTests).
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAE_STUDIO_")}
    env.update(VAE_STUDIO_CHECKPOINTS=str(checkpoints), PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = AppServer(url, checkpoints, process, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None:
                pytest.fail(
                    f"streamlit exited with code {process.returncode} before it was healthy:\n{server.log_tail()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{url}/_stcore/health did not answer 'ok' within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        yield server, time.monotonic()
    finally:
        _kill_group(process)
        if end_runs:
            end_run_processes(checkpoints)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> AppServer:
    """The server every journey shares, its checkpoint folder seeded with one finished run."""
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    _seed_checkpoint(checkpoints)
    with serve(checkpoints) as (server, _):
        yield server


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


# -- the browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120]


@pytest.fixture
def open_app(request, app_server, browser):
    """Factory: `open_app(path="", query="")` opens the app in a NEW browser context (a new Streamlit
    session), waits until it is connected and its script has run, and returns the page. Contexts are
    closed at the end of the test; when the test fails, each page's screenshot and text are saved
    (by pytest_runtest_makereport, at the moment of the failure)."""
    contexts, pages = [], []

    def _open(path: str = "", query: str = "", wait: bool = True):
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        page.goto(f"{app_server.url}/{path.lstrip('/')}{('?' + query) if query else ''}")
        if wait:
            wait_for_app(page)
        return page

    request.node._e2e_pages = pages
    request.node._e2e_server = app_server
    yield _open

    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()


@pytest.fixture
def page(open_app):
    """The app's default page (Train) in a fresh session."""
    return open_app()


@pytest.fixture
def runs(request, open_app):
    """Run ids a test started. A passing test stops them itself; after a failure each is stopped
    here (from a fresh session opened on `?run=<id>`), so the next test finds the CPU free."""
    started: list[str] = []
    yield started
    if not getattr(getattr(request.node, "rep_call", None), "failed", True):
        return  # a passing test has stopped its runs itself, and asserted it
    for run_id in started:
        try:
            stop_run_if_active(open_app(query=f"run={run_id}"))
        except Exception as error:
            print(f"[e2e] could not stop run {run_id}: {error!r}")
