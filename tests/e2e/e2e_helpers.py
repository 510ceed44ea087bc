"""What the e2e tests do to and read from the page: Streamlit widgets driven the way a user does
(clicks, keys), and what is on screen read back (text, Plotly traces, images).

Plotly note: the `data` property of a `.js-plotly-plot` element holds the traces as Streamlit sent
them; numeric arrays arrive base64-encoded ({dtype, bdata}), so lengths are decoded here.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

try:
    from playwright.sync_api import Page, expect
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # the conftest skips (or, under CI, fails) the suite with a clear reason
    Page = object
    expect = None
    PlaywrightTimeoutError = TimeoutError

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TIMINGS_FILE = ARTIFACTS / "timings.json"
SEED_RUN = "e2e-mnist"  # run id and file stem of the finished mnist-sample run the server folder starts with
PAGE_TIMEOUT_MS = 30_000  # default for every wait: the machine has 2 cores and trains meanwhile

if expect is not None:
    expect.set_options(timeout=PAGE_TIMEOUT_MS)

TIMINGS: dict[str, float] = {}


def record_timing(name: str, seconds: float) -> None:
    """Keep a measured duration: printed, shown in the terminal summary and written to
    artifacts/timings.json at once (so it survives a later failure). Never asserted against a bound."""
    TIMINGS[name] = round(seconds, 3)
    print(f"[e2e timing] {name}: {seconds:.2f} s")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2, sort_keys=True) + "\n")


# -- waiting -----------------------------------------------------------------------------------------------

APP_READY_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.dataset.testConnectionState === 'CONNECTED' && app.dataset.testScriptState === 'notRunning';
}"""


def wait_for_app(page: Page, timeout: int = PAGE_TIMEOUT_MS) -> None:
    """The app is mounted, connected to the server, its script has run once (the sidebar holds the
    st.navigation pages, not the pages/ folder's file names) and there is no 'Connecting' widget."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(APP_READY_JS, timeout=timeout)
    expect(page.locator('[data-testid="stSidebarNavLink"]').filter(has_text="Train")).to_be_visible(timeout=timeout)
    expect(page.get_by_text("Connecting", exact=True)).to_have_count(0)


def wait_until(
    page: Page,
    condition: Callable[[], object],
    timeout_s: float = 30,
    interval_ms: int = 200,
    message: str = "condition",
) -> object:
    """Poll `condition` (Python side) until it returns something truthy; fail with `message`."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # an element re-rendered under us: try again
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {message}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        page.wait_for_timeout(interval_ms)


def assert_no_exception(page: Page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"the app shows an exception: {exceptions.first.inner_text()[:2000]}"


# -- navigation and widgets --------------------------------------------------------------------------------


def nav_link(page: Page, title: str):
    return page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title)


def go_to(page: Page, title: str, heading: str) -> None:
    """Click a sidebar link and wait for the page's title."""
    nav_link(page, title).click()
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    wait_for_app(page)


def selectbox(page: Page, label: str, scope=None):
    scope = scope or page
    return scope.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True))


def choose(page: Page, label: str, option: str, scope=None) -> None:
    """Pick `option` (its shown text) in the selectbox labelled `label`."""
    box = selectbox(page, label, scope)
    combo = box.get_by_role("combobox")
    combo.click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(combo).to_have_value(option)
    settle(page)


def settle(page: Page, ms: int = 300) -> None:
    """Give the rerun a widget change starts time to begin, then wait until it has finished, so the
    next action does not land on an element that the rerun is about to replace."""
    page.wait_for_timeout(ms)
    page.wait_for_function(APP_READY_JS)


def slider_input(page: Page, label: str):
    """The keyboard-focusable range input of the slider labelled `label`."""
    box = page.locator('[data-testid="stSlider"]').filter(has=page.get_by_text(label, exact=True))
    return box.locator('input[type="range"]')


def slider_to_end(page: Page, label: str, key: str = "End") -> str:
    """Move a slider to its maximum (End) or minimum (Home) with the keyboard; returns its value."""
    thumb = slider_input(page, label)
    thumb.focus()
    thumb.press(key)
    return slider_value(page, label)


def slider_value(page: Page, label: str) -> str:
    """The value the slider shows (aria-valuetext). Not input_value(): the native range input snaps
    to min + k*step, so a default off that grid (Latent page: 359 points, step 100) reads as 300."""
    return (slider_input(page, label).get_attribute("aria-valuetext") or "").replace(",", "")


# -- the Train page ----------------------------------------------------------------------------------------

PROGRESS_RE = re.compile(
    r"(queued|starting|running|paused|finished|stopped|failed|cancelled|killed|stale) · epoch (\d+)/(\d+) · "
    r"step ([\d,]+)/([\d,]+)"
)
ACTIVE = ("queued", "starting", "running", "paused")


def progress(page: Page) -> dict | None:
    """The Train page's progress line, parsed: status, epoch, epochs, step, total_steps."""
    bars = page.locator('[data-testid="stProgress"]')
    if bars.count() == 0:
        return None
    match = PROGRESS_RE.search(bars.first.inner_text(timeout=5_000))
    if not match:
        return None
    status, epoch, epochs, step, total = match.groups()
    return {
        "status": status,
        "epoch": int(epoch),
        "epochs": int(epochs),
        "step": int(step.replace(",", "")),
        "total_steps": int(total.replace(",", "")),
    }


def wait_for_status(page: Page, *statuses: str, timeout_s: float = 30) -> dict:
    return wait_until(
        page,
        lambda: (p := progress(page)) and p["status"] in statuses and p,
        timeout_s=timeout_s,
        message=f"the progress line to say {' or '.join(statuses)}",
    )


def wait_for_step_beyond(page: Page, step: int, timeout_s: float = 30) -> dict:
    return wait_until(
        page,
        lambda: (p := progress(page)) and p["step"] > step and p,
        timeout_s=timeout_s,
        message=f"the step count to pass {step}",
    )


def _run_line(page: Page):
    return (
        page.locator('[data-testid="stMarkdownContainer"] p')
        .filter(has=page.locator("strong", has_text=re.compile(r"^Run$")))
        .first
    )


def run_line(page: Page) -> str:
    """The line 'Run `<id>` · dataset · model · z=… · device' above the live panel."""
    return _run_line(page).inner_text(timeout=5_000).strip()


def shown_run_id(page: Page) -> str:
    """The id in the line 'Run `<id>` · …' above the live panel."""
    return _run_line(page).locator("code").inner_text(timeout=5_000).strip()


def url_run_id(page: Page) -> str | None:
    match = re.search(r"[?&]run=([^&#]+)", page.url)
    return match.group(1) if match else None


def button(page: Page, name: str, scope=None):
    return (scope or page).get_by_role("button", name=name, exact=True)


def start_training(page: Page, dataset: str | None = "digits", long_run: bool = True) -> float:
    """Fill the form like a user and press Start training; returns the monotonic time of the click.
    long_run: Epochs to its maximum (200) and Batch size to its minimum (16), so a digits run lasts
    minutes instead of seconds (the test stops it)."""
    if dataset is not None:
        choose(page, "Dataset", dataset)
    if long_run:
        assert slider_to_end(page, "Epochs", "End") == "200"
        slider_to_end(page, "Batch size", "Home")
    before = url_run_id(page)  # the page may already show a run: the newest one, opened with no ?run=
    clicked_at = time.time()
    started = time.monotonic()
    button(page, "Start training").first.click()  # the top one: the form has one at each end
    wait_until(
        page,
        lambda: _is_new_run(url_run_id(page), before, clicked_at),
        timeout_s=180,
        message=f"a new run's id in the URL (it showed {before!r} before Start)",
    )
    return started


def _is_new_run(run_id: str | None, before: str | None, clicked_at: float) -> bool:
    """An id this Start made: not the one shown before it, and stamped (YYYYMMDD-HHMMSS-…, the server's
    local time) no earlier than the second of the click, so a rerun opening another run is not taken."""
    match = re.match(r"^(\d{8}-\d{6})-", run_id or "")
    if not match or run_id == before:
        return False
    return time.mktime(time.strptime(match.group(1), "%Y%m%d-%H%M%S")) >= int(clicked_at)


def wait_for_run(page: Page, timeout_s: float = 90) -> str:
    """After Start: the URL carries ?run=<id> and the live panel shows the same id; returns it."""
    run_id = wait_until(page, lambda: url_run_id(page), timeout_s=timeout_s, message="?run=<id> in the URL")
    wait_until(page, lambda: shown_run_id(page) == run_id, timeout_s=timeout_s, message=f"'Run {run_id}' on the page")
    return run_id


def stop_run(page: Page) -> dict:
    button(page, "Stop").click()
    return wait_for_status(page, "stopped", "finished", "failed")


def stop_run_if_active(page: Page) -> None:
    """Stop the run shown unless it has ended; a short run may end between the look and the click,
    leaving Stop disabled, which is no failure (used in teardown from a fresh session on ?run=<id>)."""
    state = wait_until(page, lambda: progress(page), timeout_s=20, message="the progress line")
    if state["status"] in ACTIVE:
        with contextlib.suppress(PlaywrightTimeoutError):
            button(page, "Stop").click(timeout=10_000)
        wait_for_status(page, "stopped", "finished", "failed")


# -- Plotly --------------------------------------------------------------------------------------------

# Each trace's point count and last x: Plotly 6+ sends arrays base64-encoded ({dtype, bdata}), decoded here.
_PLOTS_JS = """(selector) => {
  const typed = {i1: Int8Array, u1: Uint8Array, u1c: Uint8ClampedArray, i2: Int16Array, u2: Uint16Array,
                 i4: Int32Array, u4: Uint32Array, f4: Float32Array, f8: Float64Array};
  const values = (v) => {
    if (v === undefined || v === null) return [];
    if (Array.isArray(v) || ArrayBuffer.isView(v)) return v;
    if (v._inputArray) return v._inputArray;
    if (typeof v.bdata === 'string') {
      const raw = Uint8Array.from(atob(v.bdata), (c) => c.charCodeAt(0));
      const Kind = typed[v.dtype] || Float64Array;
      return new Kind(raw.buffer, 0, Math.floor(raw.length / Kind.BYTES_PER_ELEMENT));
    }
    return [];
  };
  const trace = (t) => {
    const x = values(t.x);
    return {name: t.name, type: t.type, points: x.length, last_x: x.length ? Number(x[x.length - 1]) : null};
  };
  return [...document.querySelectorAll(selector)].map((el) => {
    const box = el.getBoundingClientRect();
    return {
      traces: (el.data || []).map(trace),
      revision: el.layout ? el.layout.uirevision : undefined,
      annotations: ((el.layout && el.layout.annotations) || []).map((a) => String(a.text)),
      shapes: ((el.layout && el.layout.shapes) || []).map((s) => ({type: s.type, dash: s.line && s.line.dash,
                                                                 x0: s.x0})),
      width: box.width, height: box.height,
    };
  });
}"""

LOSS_CHART = ".st-key-loss_chart .js-plotly-plot"


def plots(page: Page, selector: str = ".js-plotly-plot") -> list[dict]:
    return page.evaluate(_PLOTS_JS, selector)


def chart(page: Page, selector: str) -> dict | None:
    found = plots(page, selector)
    return found[0] if found else None


def trace_points(figure: dict | None, name: str) -> int:
    if not figure:
        return 0
    return sum(t["points"] for t in figure["traces"] if t["name"] == name)


def loss_points(page: Page) -> dict[str, int]:
    figure = chart(page, LOSS_CHART)
    return {name: trace_points(figure, name) for name in ("total", "reconstruction", "KL")}


def last_loss_step(page: Page, name: str = "reconstruction") -> float:
    """The step of the loss chart's last point on curve `name` (0 with none). A long run's record merges
    its points in pairs past runs.MAX_POINTS, so a growing curve is one whose last step grows, not its count."""
    figure = chart(page, LOSS_CHART)
    steps = [t["last_x"] for t in (figure or {"traces": []})["traces"] if t["name"] == name and t["last_x"] is not None]
    return max(steps, default=0.0)


def recon_and_kl_steps(page: Page) -> dict[str, float] | None:
    """The last step of the loss chart's reconstruction and KL curves, or None unless both have points.
    Poll it (wait_until) rather than read it once: a rerun may redraw the chart, absent for a frame."""
    figure = chart(page, LOSS_CHART)
    last = {t["name"]: t["last_x"] for t in (figure or {"traces": []})["traces"] if t["points"]}
    return (
        {"reconstruction": last["reconstruction"], "KL": last["KL"]} if {"reconstruction", "KL"} <= set(last) else None
    )


# Pass the run's id (wait_for_function(..., arg=run_id)) to count only its own chart, which the Train page
# marks with it (uirevision), not the chart of the run shown before, still on the page for a frame.
FIRST_LOSS_POINT_JS = (
    "(runId) => { const found = ("
    + _PLOTS_JS
    + """)('"""
    + LOSS_CHART
    + """');
  return found.length > 0 && (!runId || found[0].revision === runId)
    && found[0].traces.some((t) => t.name === 'reconstruction' && t.points > 0);
}"""
)
# The curves' SVG sketch (shown while the browser loads Plotly: ui/light_charts.py), as the page shows
# it: {"shown": decoded and taking space, "src": its data URI} per sketch image.
LOSS_SKETCHES_JS = """() => [...document.querySelectorAll('.st-key-loss_sketch img')].map((img) => ({
  shown: img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().height > 0, src: img.src}))"""
FIRST_SKETCH_OR_CHART_POINT_JS = (
    f"() => ({LOSS_SKETCHES_JS})().some((sketch) => sketch.shown) || ({FIRST_LOSS_POINT_JS})()"
)


# -- images ------------------------------------------------------------------------------------------------

IMAGES_JS = """(selector) => [...document.querySelectorAll(selector)].map((img) => ({
  src: img.currentSrc.slice(0, 80), complete: img.complete, naturalWidth: img.naturalWidth,
  naturalHeight: img.naturalHeight, width: img.getBoundingClientRect().width}))"""


def images(page: Page, selector: str = '[data-testid="stImage"] img') -> list[dict]:
    return page.evaluate(IMAGES_JS, selector)


def loaded(found: list[dict]) -> list[dict]:
    return [i for i in found if i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0]


# -- screenshots -------------------------------------------------------------------------------------------

CALM_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== 'notRunning') return false;
  if ([...document.querySelectorAll('[data-stale="true"]')].some((e) => e.getClientRects().length)) return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return charts.every((c) => c.querySelector('.main-svg'));
}"""


def wait_for_calm(page: Page, timeout: float = 10_000) -> bool:
    """Wait for a moment between reruns: no script running (a live fragment re-runs every second),
    nothing faded as stale, every Plotly chart drawn. False when there was no such moment in time."""
    try:
        page.wait_for_function(CALM_JS, timeout=timeout)
        return True
    except Exception:
        return False


def full_page_screenshot(page: Page, path: str | Path, timeout: float = 30_000) -> None:
    """Streamlit scrolls inside [data-testid="stMain"], not the document, so Playwright's full_page
    would only capture the viewport: grow the viewport to the content's height for the shot."""
    viewport = page.viewport_size or {"width": 1400, "height": 900}
    height = page.evaluate("""() => {
      const main = document.querySelector('[data-testid="stMain"]');
      return Math.max(window.innerHeight, main ? main.scrollHeight : 0, document.documentElement.scrollHeight);
    }""")
    try:
        if height > viewport["height"]:
            page.set_viewport_size({"width": viewport["width"], "height": min(int(height), 6000)})
            page.wait_for_timeout(500)  # charts and images re-layout
        wait_for_calm(page, timeout=min(timeout, 10_000))
        page.screenshot(path=str(path), animations="disabled", timeout=timeout)
    finally:
        page.set_viewport_size(viewport)


def save_screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    """docs/screenshots/<name>.png, 1400 px wide: the whole page, or just the 1400x900 viewport."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.mouse.move(5, (page.viewport_size or {"height": 900})["height"] - 5)  # no hover effects in the picture
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    if full_page:
        full_page_screenshot(page, path)
    else:
        page.screenshot(path=str(path), animations="disabled")
    return path
