"""Watching a run must not slow it: the default run made longer (EPOCHS epochs of mnist-sample, about
10 s) trained in the app alone, then with 1, 3 and 6 other tabs walking its pages (Train, Latent space, Generate,
Checkpoints, Runs, Theory, a few seconds each), in one server. A run's time is its own clock (the
seconds it trained, from its checkpoint), so the server's start and the tabs' loading do not count.

The browsers run at the lowest CPU priority, their scheduler autogroup included (Playwright starts
Chromium in a session of its own), to stand in for browsers on other machines: on these 2 cores a
browser at ordinary priority takes the cores from any run, in a process of its own or not.

    python -m bench.bench_watching [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.bench_startup import CHROMIUM, CHROMIUM_ARGS, fresh_server
from bench.common import print_rows, row, skipped_row

EPOCHS = 50
TABS = (1, 3, 6)
QUICK_TABS = (1, 3)
TARGETS = {1: 0.9, 3: 0.9, 6: 0.8}  # speed with N watching tabs / speed alone
PAGES = ("", "latent", "generate", "checkpoints", "runs", "theory")
DWELL_S = 2.0
RUN_TIMEOUT_S = 300
# Chromium at the lowest priority, for its own autogroup too (`nice` alone does not reach it there).
LOW_PRIORITY_CHROMIUM = f"""#!/bin/sh
echo 19 > /proc/self/autogroup 2>/dev/null
exec nice -n 19 {CHROMIUM} "$@"
"""


def _trained_seconds(folder: Path, run_id: str) -> float:
    from vae_core.checkpoint import load_checkpoint

    return load_checkpoint(folder / f"{run_id}.safetensors").state.history.seconds_trained


def _start_default_run(browser, url: str) -> str:
    """Set Epochs and press Start on the Train page of a fresh tab; the run id from the URL."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    epochs = page.locator('[data-testid="stSlider"]').filter(has=page.get_by_text("Epochs", exact=True))
    thumb = epochs.locator('input[type="range"]')
    thumb.focus()
    for _ in range(EPOCHS - 10):  # from the default 10, one epoch a key press
        thumb.press("ArrowRight")
    page.get_by_role("button", name="Start training", exact=True).first.click()  # the form has one at each end
    deadline = time.monotonic() + 60
    while "run=" not in page.url:
        if time.monotonic() > deadline:
            raise RuntimeError("no ?run= after Start")
        page.wait_for_timeout(100)
    run_id = page.url.split("run=")[1].split("&")[0]
    page.close()
    return run_id


def _finished(folder: Path, run_id: str) -> bool:
    from vae_core.runs import read_run

    record = read_run(folder, run_id)
    return record is not None and record.status in ("finished", "stopped", "failed")


def one_run(browser, url: str, folder: Path, tabs: int) -> float:
    """Seconds the default run trained while `tabs` tabs walked its pages."""
    run_id = _start_default_run(browser, url)
    watchers = [browser.new_page(viewport={"width": 1280, "height": 720}) for _ in range(tabs)]
    step = 0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not _finished(folder, run_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish in {RUN_TIMEOUT_S} s")
        if watchers:  # one tab moves to its next page; the others keep polling theirs
            page = watchers[step % len(watchers)]
            path = PAGES[(step // len(watchers) + step) % len(PAGES)]
            page.goto(f"{url}/{path}?run={run_id}", wait_until="commit")
            step += 1
            time.sleep(DWELL_S / len(watchers))
        else:
            time.sleep(0.5)
    for page in watchers:
        page.close()
    return _trained_seconds(folder, run_id)


def run(quick: bool = False) -> list[dict]:
    if not Path(CHROMIUM).exists():
        return [skipped_row("A run watched by other tabs", f"no {CHROMIUM}")]
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_watching_") as scratch:
        wrapper = Path(scratch) / "chromium-low-priority"
        wrapper.write_text(LOW_PRIORITY_CHROMIUM)
        wrapper.chmod(0o755)
        folder = Path(scratch) / "checkpoints"
        folder.mkdir()
        with (
            sync_playwright() as playwright,
            fresh_server(Path(scratch) / "server.log", checkpoints=str(folder)) as (url, _),
        ):
            browser = playwright.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS)
            try:
                alone = one_run(browser, url, folder, 0)  # the first also warms the run process's data
                alone = min(alone, one_run(browser, url, folder, 0))
                rows.append(row("Default run alone (its own clock, best of 2)", "-", f"{alone:.2f} s", None))
                for tabs in QUICK_TABS if quick else TABS:
                    watched = one_run(browser, url, folder, tabs)
                    speed = alone / watched
                    rows.append(
                        row(
                            f"The same run with {tabs} other tab{'s' * (tabs != 1)} walking its pages "
                            "(speed against alone; browsers at nice 19)",
                            f">= {TARGETS[tabs]}x",
                            f"{speed:.2f}x ({watched:.2f} s)",
                            speed >= TARGETS[tabs],
                        )
                    )
            finally:
                browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{', '.join(map(str, QUICK_TABS))} tabs only")
    print_rows(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
