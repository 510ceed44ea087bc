"""The run store at scale: `vae-studio runs` on a folder of 5,000 runs (50,000 in the full bench)
against a folder of one, each call a process of its own, and the Runs and Checkpoints pages drawn
(AppTest) from the big folder; and what an idle Runs tab on 5,000 runs costs its server (a real
server and Chromium: the page looks at the folder every few seconds). Every run is a finished one with its checkpoint and its progress record,
as the app's run processes and the CLI leave them.

    python -m bench.bench_store [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, print_rows, row

QUICK_RUNS, FULL_RUNS = (5_000,), (5_000, 50_000)
LISTING_RATIO_TARGET = 1.5  # the issue's: N runs listed in under 1.5x the time of one
PAGE_TARGET_S = 2.0
ROUNDS = 3
IDLE_TAB_TARGET = 0.05  # the issue's: an idle Runs tab uses under 5% of a core
IDLE_SETTLE_S, IDLE_MEASURE_S = 10.0, 30.0


def make_folder(folder: Path, count: int) -> None:
    """`count` finished runs (checkpoint and progress record), copies of one tiny real run."""
    from vae_core.checkpoint import save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.loop import run_to_end
    from vae_core.runs import ProgressWriter
    from vae_core.trainer import Trainer

    folder.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu", threads=1),
        load_dataset("digits"),
    )
    run_to_end(trainer)
    template = "20260101-000000-000000"
    source = save_trainer_checkpoint(trainer, template, "finished", folder / f"{template}.safetensors")
    writer = ProgressWriter(source, trainer, run_id=template, name="bench run", dataset="digits")
    writer.close(trainer, "finished")
    progress = (folder / f"{template}.progress.json").read_text()
    for index in range(1, count):
        run_id = f"2026{1 + index // 86400 % 12:02d}01-{index // 3600 % 24:02d}{index // 60 % 60:02d}{index % 60:02d}-{index:06x}"
        shutil.copyfile(source, folder / f"{run_id}.safetensors")
        (folder / f"{run_id}.progress.json").write_text(progress.replace(template, run_id))


def listing_seconds(folder: Path, cache: Path) -> float:
    """The median wall time of `vae-studio runs FOLDER`, a process of its own each round."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "vae_core", "runs", str(folder)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def first_listing_seconds(folder: Path, cache: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vae_core", "runs", str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=dict(os.environ, XDG_CACHE_HOME=str(cache)),
        cwd=ROOT,
    )
    return time.perf_counter() - started


PAGE_TIMES = """
import json, os, sys, time
from streamlit.testing.v1 import AppTest
times = {}
for page in sys.argv[1:]:
    app = AppTest.from_file("router.py", default_timeout=600)
    app.switch_page(page)
    app.run()
    started = time.perf_counter()
    app.run()
    times[page] = (time.perf_counter() - started, [e.value for e in app.exception])
print(json.dumps(times))
"""


def page_seconds(folder: Path, cache: Path) -> dict:
    """Seconds of a rerun of the Runs and Checkpoints pages on `folder` (after a first draw)."""
    import json

    env = dict(
        os.environ,
        XDG_CACHE_HOME=str(cache),
        VAE_STUDIO_CHECKPOINTS=str(folder),
        VAE_STUDIO_WARM_UP="0",
        VAE_STUDIO_EXECUTOR="thread",
    )
    out = subprocess.run(
        [sys.executable, "-c", PAGE_TIMES, "app_pages/runs.py", "app_pages/checkpoints.py"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _process_group_cpu_s(group: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group `group`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def _server_group(port: int) -> int:
    """The process group of the `streamlit run` serving `port` (started in a session of its own)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(argv) and str(port).encode() in argv:
                return os.getpgid(int(entry.name))
    raise RuntimeError(f"no server on port {port}")


def idle_runs_tab_share(folder: Path, cache: Path) -> float:
    """Share of one core the server spends while one Chromium tab sits on the Runs page of `folder`:
    its CPU time over IDLE_MEASURE_S, after the page has drawn and IDLE_SETTLE_S more. No warm-up
    (its one-off imports are not the tab's cost), no run training."""
    from urllib.parse import urlparse

    from playwright.sync_api import sync_playwright

    from bench.bench_startup import CHROMIUM, CHROMIUM_ARGS, fresh_server

    with (
        fresh_server(cache / "idle_server.log", warm_up=False, cache_dir=str(cache), checkpoints=str(folder)) as (
            url,
            _,
        ),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{url}/runs")
            page.wait_for_selector("[data-testid='stDataFrame']", timeout=120_000)
            time.sleep(IDLE_SETTLE_S)
            group = _server_group(urlparse(url).port)
            began, cpu = time.monotonic(), _process_group_cpu_s(group)
            time.sleep(IDLE_MEASURE_S)
            return (_process_group_cpu_s(group) - cpu) / (time.monotonic() - began)
        finally:
            browser.close()


def run(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_store_") as scratch:
        scratch = Path(scratch)
        cache = scratch / "cache"
        make_folder(scratch / "one", 1)
        one = listing_seconds(scratch / "one", cache)
        rows.append(row("`vae-studio runs`, a folder of 1 run (median of 3 processes)", "-", f"{one:.2f} s", None))
        for count in QUICK_RUNS if quick else FULL_RUNS:
            folder = scratch / f"runs{count}"
            make_folder(folder, count)
            first = first_listing_seconds(folder, cache)
            warm = listing_seconds(folder, cache)
            ratio = warm / one
            rows.append(
                row(
                    f"`vae-studio runs`, {count:,} runs: first call (index built) / later calls",
                    f"later < {LISTING_RATIO_TARGET}x one run",
                    f"{first:.2f} s / {warm:.2f} s ({ratio:.1f}x)",
                    ratio < LISTING_RATIO_TARGET,
                )
            )
            if count == QUICK_RUNS[0]:
                share = idle_runs_tab_share(folder, cache)
                rows.append(
                    row(
                        f"Server CPU with one idle Runs tab open, {count:,} runs (Chromium; share of one core "
                        f"over {IDLE_MEASURE_S:.0f} s)",
                        f"< {IDLE_TAB_TARGET:.0%}",
                        f"{share:.1%}",
                        share < IDLE_TAB_TARGET,
                    )
                )
            for page, (seconds, errors) in page_seconds(folder, cache).items():
                name = "Runs" if "runs" in page else "Checkpoints"
                rows.append(
                    row(
                        f"{name} page rerun, {count:,} runs (AppTest)",
                        f"< {PAGE_TARGET_S:.0f} s",
                        f"{seconds:.2f} s" + (f" ({len(errors)} errors)" if errors else ""),
                        seconds < PAGE_TARGET_S and not errors,
                    )
                )
            shutil.rmtree(folder)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS[0]:,} runs only")
    print_rows(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    main()
