"""Watching a run must not slow it: the default run made longer (EPOCHS epochs of mnist-sample, about
10 s) trained in the app alone, and with 1, 3 and 6 other tabs walking its pages (Train, Latent space, Generate,
Checkpoints, Runs, Theory, a few seconds each), in one server. A run's time is its own clock (the
seconds it trained, from its checkpoint), so the server's start and the tabs' loading do not count.
The four alternate round by round (common.interleaved) and each figure is the median of its rounds'
ratios to the run alone in the same round, as the other benches compare: until 2026-12 one watched run
was set against the best of two runs alone, which counted any slow spell of the machine against watching.

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
from bench.common import interleaved, median, paired_ratio, print_rows, row, skipped_row

EPOCHS = 50
TABS = (1, 3, 6)
QUICK_TABS = (1, 3)
ROUNDS, QUICK_ROUNDS = 3, 1
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


def _run_ids(folder: Path) -> set[str]:
    return {entry.name.split(".")[0] for entry in folder.iterdir()}


def _start_default_run(browser, url: str, folder: Path) -> str:
    """Set Epochs and press Start on the Train page of a fresh tab; the new run's id, from the URL. The
    page opens on the newest run and puts its id in the URL too, so an id counts only once it names a
    run that was not in the folder before Start (until 2026-12 the first id seen was taken: a round
    could time the run before it, and two rounds once read the same run)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    before = _run_ids(folder)
    page.goto(url)
    epochs = page.locator('[data-testid="stSlider"]').filter(has=page.get_by_text("Epochs", exact=True))
    thumb = epochs.locator('input[type="range"]')
    thumb.focus()
    for _ in range(EPOCHS - 10):  # from the default 10, one epoch a key press
        thumb.press("ArrowRight")
    page.get_by_role("button", name="Start training", exact=True).first.click()  # the form has one at each end
    deadline = time.monotonic() + 60
    while (run_id := _url_run_id(page.url)) is None or run_id in before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no new run's id in the URL after Start (it shows {run_id!r})")
        page.wait_for_timeout(100)
    page.close()
    return run_id


def _url_run_id(url: str) -> str | None:
    return url.split("run=")[1].split("&")[0] if "run=" in url else None


def _finished(folder: Path, run_id: str) -> bool:
    from vae_core.runs import read_run

    record = read_run(folder, run_id)
    return record is not None and record.status in ("finished", "stopped", "failed")


def one_run(browser, url: str, folder: Path, tabs: int) -> float:
    """Seconds the default run trained while `tabs` tabs walked its pages."""
    run_id = _start_default_run(browser, url, folder)
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
                one_run(browser, url, folder, 0)  # unmeasured: it warms the run process's data
                tab_counts = QUICK_TABS if quick else TABS
                seconds = interleaved(
                    {tabs: lambda tabs=tabs: one_run(browser, url, folder, tabs) for tabs in (0, *tab_counts)},
                    QUICK_ROUNDS if quick else ROUNDS,
                    run=lambda measure: measure(),  # the browser's sync API stays on this thread
                )
                alone = seconds[0]
                rows.append(
                    row(
                        f"Default run alone (its own clock; median of {len(alone)} rounds)",
                        "-",
                        f"{median(alone):.2f} s (rounds: {', '.join(f'{s:.2f}' for s in alone)})",
                        None,
                    )
                )
                for tabs in tab_counts:
                    speed = paired_ratio(alone, seconds[tabs])
                    rows.append(
                        row(
                            f"The same run with {tabs} other tab{'s' * (tabs != 1)} walking its pages "
                            "(speed against alone in the same round, median; browsers at nice 19)",
                            f">= {TARGETS[tabs]}x",
                            f"{speed:.2f}x (rounds: {', '.join(f'{s:.2f}' for s in seconds[tabs])} s)",
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
