"""First load, timed as a person meets it: a freshly started `streamlit run app.py`, opened in
headless Chromium the moment `/_stcore/health` answers.

Figures (median over rounds, each round a new server, on a machine where the app has run before:
the default run's thread count is timed first and remembered for the load of the moment,
vae_core/threads.py):
- health -> the Train form usable (its Start button enabled); target 3 s;
- Start, pressed as soon as the form is usable, -> the first loss point drawn (the curves' sketch
  or the interactive chart, whichever shows first: ui/light_charts.py); target 2 s;
- health -> that first loss point: the time a person who presses Start at once waits for curves
  (a fresh server's run process loads torch and builds its first optimiser, about 3.5 s of one
  core, so a Start pressed in the first seconds waits for it);
- the same Start -> the interactive (Plotly) chart's first point;
- the same with an empty user cache, as on a machine's very first start (the thread count is timed
  and the bundled dataset parsed before the first run: vae_core/threads.py, parsed_cache.py);
- Start pressed once the server's warm-up and its run process's have ended -> the first loss point
  (what the warm-ups leave to Start);
- the background warm-up's phases, as the server logs them (ui/session.py);
- health -> form usable with the warm-up turned off (VAE_STUDIO_WARM_UP=0), so the cost of the
  warm-up thread to the first page (both compete for the GIL) is the difference.

The page times itself: the moments the form became usable, Start was pressed (the mouse button
going down) and a point was drawn are read from the page's own clock, checked once per frame (a
few selector queries), so the bench's polling costs the page little and makes no round trips.

`python bench/bench_startup.py [--quick]` prints the rows as JSON; `python -m bench --only startup`
writes them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/bench_startup.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

from bench.common import print_rows, row, skipped_row  # noqa: E402
from ui.session import WARM_UP_LOG_PREFIX  # noqa: E402
from vae_core.run_process import end_run_processes, run_process_ids  # noqa: E402
from vae_core.worker import READY_LOG_PREFIX  # noqa: E402

FORM_TARGET_S = 3.0
FIRST_POINT_TARGET_S = 2.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 60
# The loss chart's reconstruction trace has a point. Plotly may hold x as an array, a typed array or
# base64 ("bdata") as it came from the server; any non-empty one will do.
CHART_POINT_JS = """() => [...document.querySelectorAll('.st-key-loss_chart .js-plotly-plot')].some((plot) =>
  (plot.data || []).some((trace) => {
    const x = trace.name === 'reconstruction' && trace.x;
    if (!x) return false;
    if (Array.isArray(x) || ArrayBuffer.isView(x)) return x.length > 0;
    return Boolean((x._inputArray && x._inputArray.length) || x.bdata);
  }))"""
# The curves' sketch (an SVG image shown until the chart has drawn) is decoded and displayed.
SKETCH_POINT_JS = """() => [...document.querySelectorAll('.st-key-loss_sketch img')].some((img) =>
  img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().height > 0)"""
FIRST_POINT_JS = f"() => ({SKETCH_POINT_JS})() || ({CHART_POINT_JS})()"
START_USABLE_JS = """() => [...document.querySelectorAll('button')].some((button) =>
  button.innerText.trim() === 'Start training' && !button.disabled)"""
# The moment the mouse button goes down, on the page's clock.
RECORD_PRESS_JS = """() => document.addEventListener('mousedown', () => { window.__marks.pressed = performance.now(); },
  {capture: true, once: true})"""


def _marked(name: str, condition_js: str) -> str:
    """A predicate that, the first time `condition_js` holds, notes the page's clock under `name`."""
    return f"""() => {{
  window.__marks = window.__marks || {{}};
  if (window.__marks.{name} === undefined && ({condition_js})()) window.__marks.{name} = performance.now();
  return window.__marks.{name} !== undefined;
}}"""


WARM_UP_LINE = re.compile(re.escape(WARM_UP_LOG_PREFIX) + r" ([0-9.]+) s: (.*)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@contextmanager
def fresh_server(log_path: Path, warm_up: bool = True, cache_dir: str | None = None, checkpoints: str | None = None):
    """A new `streamlit run app.py` process on a free port, with an empty checkpoint folder (or
    `checkpoints`) and the user cache `cache_dir` if given; yields (url, the time.time() its health
    check first answered)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAE_STUDIO_")}
    checkpoints = checkpoints or tempfile.mkdtemp(prefix="bench_startup_")
    env.update(VAE_STUDIO_CHECKPOINTS=checkpoints, PYTHONUNBUFFERED="1", VAE_STUDIO_WARM_UP="1" if warm_up else "0")
    if cache_dir is not None:
        env["XDG_CACHE_HOME"] = cache_dir
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
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_ok(f"{url}/_stcore/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become healthy: {log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        yield url, time.time()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        end_run_processes(checkpoints)  # a run process outlives its server (vae_core/worker.py)


def warm_up_report(log_path: Path, timeout_s: float = 0.0) -> tuple[float, str] | None:
    """(total seconds, the phases) from the server's warm-up line, waiting up to timeout_s for it."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = WARM_UP_LINE.search(log_path.read_text(errors="replace"))
        if found or time.monotonic() >= deadline:
            return (float(found.group(1)), found.group(2)) if found else None
        time.sleep(0.1)


def run_process_warm(checkpoints: str, timeout_s: float = START_TIMEOUT_S) -> bool:
    """Wait until the server's run process (of folder `checkpoints`) has logged that it is warm: its log
    is the file its stderr is open on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in run_process_ids(checkpoints):
            with contextlib.suppress(OSError):
                if READY_LOG_PREFIX in Path(os.readlink(f"/proc/{pid}/fd/2")).read_text(errors="replace"):
                    return True
        time.sleep(0.05)
    return False


def one_round(
    browser, log_path: Path, warm_up: bool = True, start_when: str = "usable", cache_dir: str | None = None
) -> dict:
    """One fresh server: seconds from health to a usable form and, unless start_when is "never", from
    Start (pressed when the form is usable, or once the warm-up has ended) to the first loss point
    and to the interactive chart's first point."""
    measured = {}
    checkpoints = tempfile.mkdtemp(prefix="bench_startup_")
    with fresh_server(log_path, warm_up, cache_dir, checkpoints) as (url, healthy_at):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(url)
            page.wait_for_function(_marked("usable", START_USABLE_JS), timeout=START_TIMEOUT_S * 1000, polling="raf")
            origin = page.evaluate("() => performance.timeOrigin") / 1000
            measured["form"] = origin + page.evaluate("() => window.__marks.usable") / 1000 - healthy_at
            if start_when == "never":
                return measured
            if start_when == "warm" and (
                warm_up_report(log_path, START_TIMEOUT_S) is None or not run_process_warm(checkpoints)
            ):
                raise RuntimeError("the warm-up did not finish")
            page.evaluate(RECORD_PRESS_JS)
            page.get_by_role("button", name="Start training", exact=True).first.click()  # the form has one at each end
            for name, condition in (("point", FIRST_POINT_JS), ("chart", CHART_POINT_JS)):
                page.wait_for_function(_marked(name, condition), timeout=START_TIMEOUT_S * 1000, polling="raf")
            marks = page.evaluate("() => window.__marks")
            measured["first_point"] = (marks["point"] - marks["pressed"]) / 1000
            measured["from_health"] = origin + marks["point"] / 1000 - healthy_at
            measured["chart_point"] = (marks["chart"] - marks["pressed"]) / 1000
            measured["warm_up"] = warm_up_report(log_path, START_TIMEOUT_S)
        finally:
            page.close()
    return measured


def _seconds(values: list[float]) -> str:
    spread = f" (rounds: {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
    return f"{statistics.median(values):.2f} s{spread}"


def remember_default_timing() -> None:
    """What an earlier run leaves the next one: the default run's thread count, timed now and
    remembered with the load of the moment (threads.run_threads)."""
    from vae_core.config import TrainConfig
    from vae_core.data import DEFAULT_DATASET, load_dataset
    from vae_core.device import resolve_device
    from vae_core.own_threads import on_a_thread_of_its_own
    from vae_core.threads import run_threads

    config = TrainConfig()

    def time_it() -> None:  # the data loaded on this short-lived thread too: no idle OpenMP team stays behind
        dataset, device = load_dataset(DEFAULT_DATASET), resolve_device(config.device)
        run_threads(config, dataset, device)

    on_a_thread_of_its_own(time_it)


def run(quick: bool = False) -> list[dict]:
    if not os.access(CHROMIUM, os.X_OK):
        return [skipped_row("first load", f"{CHROMIUM} is missing")]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return [skipped_row("first load", "the playwright package is not installed")]
    rounds = 1 if quick else 3
    remember_default_timing()
    cold, first_ever, warm, unwarmed = [], [], [], []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for number in range(rounds):  # interleaved, so a busy spell of the machine hits all alike
                log = Path(folder, f"server-{number}.log")
                cold.append(one_round(browser, log))
                first_ever.append(one_round(browser, log, cache_dir=tempfile.mkdtemp(dir=folder)))
                warm.append(one_round(browser, log, start_when="warm"))
                unwarmed.append(one_round(browser, log, warm_up=False, start_when="never"))
        finally:
            browser.close()
    forms = [r["form"] for r in cold + warm]
    cold_points = [r["first_point"] for r in cold]
    warm_ups = [r["warm_up"] for r in cold + warm if r.get("warm_up")]
    rows = [
        row(
            "first load: /_stcore/health -> Train form usable (fresh server, Chromium)",
            f"<= {FORM_TARGET_S:g} s",
            _seconds(forms),
            statistics.median(forms) <= FORM_TARGET_S,
        ),
        row(
            "first run: Start (pressed once the form is usable) -> first loss point drawn (sketch or chart)",
            f"<= {FIRST_POINT_TARGET_S:g} s",
            _seconds(cold_points),
            statistics.median(cold_points) <= FIRST_POINT_TARGET_S,
        ),
        row(
            "first run: health check -> first loss point drawn, Start pressed once the form is usable",
            "-",
            _seconds([r["from_health"] for r in cold]),
            None,
        ),
        row(
            "first run: Start -> the interactive chart's first point",
            "-",
            _seconds([r["chart_point"] for r in cold]),
            None,
        ),
        row(
            "first run on a machine's first start (empty user cache): Start -> first loss point drawn",
            "-",
            _seconds([r["first_point"] for r in first_ever]),
            None,
        ),
        row(
            "first run: Start (pressed once the server and its run process are warm) -> first loss point drawn",
            "-",
            _seconds([r["first_point"] for r in warm]),
            None,
        ),
        row(
            "first load with the warm-up off (its GIL cost to the page is the difference)",
            "-",
            _seconds([r["form"] for r in unwarmed]),
            None,
        ),
    ]
    if warm_ups:
        total, phases = min(warm_ups)
        rows.append(row("background warm-up from server start (fastest round)", "-", f"{total:.2f} s ({phases})", None))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    print_rows(run(quick=parser.parse_args().quick))
