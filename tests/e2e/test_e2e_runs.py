"""A run the CLI trains into the app's checkpoints folder, followed live on the Runs page in Chromium:
started after the page was opened, it appears, its epoch advances without a reload, and when its
process is killed the live line goes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from e2e_helpers import ROOT, assert_no_exception, wait_until

from vae_core.runs import progress_path

NAME = "e2e cli run"
TOOLBAR_SHOWN_JS = """() => [...document.querySelectorAll('.st-key-live_chart .modebar')].some((bar) =>
  getComputedStyle(bar).opacity === '1' && bar.querySelector('.modebar-btn[data-title="Download plot as a PNG"]'))"""
LIVE_LINE = re.compile(re.escape(NAME) + r" · CLI · pid (\d+) · epoch (\d+)/200")


def _live_epoch(page) -> int | None:
    for text in page.locator('[data-testid="stProgress"]').all_inner_texts():
        match = LIVE_LINE.search(text)
        if match:
            return int(match.group(2))
    return None


def test_a_cli_run_appears_and_is_followed_live_without_a_reload(open_app, app_server):
    folder = app_server.checkpoints
    before = set(folder.iterdir())
    page = open_app("runs")  # open before the run starts: the page finds it by itself
    page.evaluate("() => { window.__same_document = true; }")  # gone if the page were reloaded
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vae_core",
            "train",
            "--data",
            "digits",
            "--hidden",
            "16",
            "--latent-dim",
            "2",
            "--batch-size",
            "16",
            "--epochs",
            "200",
            "--quiet",
            "--out-dir",
            str(folder),
            "--name",
            NAME,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        first = (
            wait_until(
                page,
                lambda: _live_epoch(page) is not None and _live_epoch(page) + 1,
                timeout_s=120,
                message="the CLI run's live line on the Runs page, without a reload",
            )
            - 1
        )
        advanced = wait_until(
            page,
            lambda: (epoch := _live_epoch(page)) is not None and epoch > first and epoch,
            timeout_s=60,
            message=f"its epoch to pass {first} without a reload",
        )
        assert page.evaluate("() => window.__same_document === true") and advanced > first
        assert page.locator(".js-plotly-plot").count() >= 1  # its loss, live from the progress record
        # Plotly's toolbar is always shown (not only on hover), with its PNG button
        wait_until(
            page,
            lambda: page.evaluate(TOOLBAR_SHOWN_JS),
            timeout_s=30,
            message="the live chart's toolbar, shown, with its PNG button",
        )
        assert_no_exception(page)

        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        wait_until(
            page,
            lambda: _live_epoch(page) is None,
            timeout_s=30,
            message="the live line to go once the process is killed",
        )
        assert_no_exception(page)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        for path in set(folder.iterdir()) - before:  # the other journeys find the folder as it was
            path.unlink(missing_ok=True)
            progress_path(path).unlink(missing_ok=True)
