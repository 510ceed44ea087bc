"""A person's first visit to a freshly started server: the app's own navigation from the first paint
(never Streamlit's file-name list), the Train form usable while torch still loads in the background,
and the first loss points soon after Start: drawn as a sketch while the browser loads Plotly, which
hides the sketch once it has drawn the interactive chart. The durations are measured and recorded
(artifacts/timings.json), not asserted: on a shared machine they vary by seconds, so their targets
(form usable within 3 s of /_stcore/health, first loss point within 2 s of Start) are checked by
bench/bench_startup.py over several fresh servers."""

from __future__ import annotations

import base64
import re
import time

from conftest import VIEWPORT, serve
from e2e_helpers import (
    FIRST_LOSS_POINT_JS,
    FIRST_SKETCH_OR_CHART_POINT_JS,
    LOSS_SKETCHES_JS,
    PAGE_TIMEOUT_MS,
    button,
    expect,
    record_timing,
    stop_run_if_active,
    wait_for_app,
    wait_for_run,
    wait_until,
)

from ui.session import WARM_UP_LOG_PREFIX

APP_PAGES = ["Train", "Latent space", "Generate", "Checkpoints", "Theory"]
LEGACY_NAMES = {"app", "train", "latent", "generate", "checkpoints", "theory"}

# Records the text of every sidebar navigation link ever put in the page, from the first paint on,
# so a legacy file-name navigation that shows for a moment and is then replaced is still caught.
RECORD_NAV_JS = """
window.__navSeen = [];
new MutationObserver(() => {
  for (const link of document.querySelectorAll('[data-testid="stSidebarNavLink"]')) {
    const text = link.innerText.trim().split("\\n").pop().trim();  // the title, after the icon's name
    if (text && !window.__navSeen.includes(text)) window.__navSeen.push(text);
  }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def test_cold_server_draws_its_own_navigation_and_trains_at_once(browser, tmp_path, request):
    with serve(tmp_path, log_name="server-first-load.log") as (server, healthy_at):
        request.node._e2e_server = server
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.add_init_script(RECORD_NAV_JS)
        page = context.new_page()
        request.node._e2e_pages = [page]
        try:
            page.goto(server.url)
            start = button(page, "Start training").first
            expect(start).to_be_enabled(timeout=60_000)
            form_ready = time.monotonic()
            record_timing("cold_health_to_train_form_usable_s", form_ready - healthy_at)
            wait_for_app(page)

            started = time.monotonic()
            start.click()
            page.wait_for_function(FIRST_SKETCH_OR_CHART_POINT_JS, timeout=120_000, polling=50)
            record_timing("cold_start_click_to_first_loss_point_s", time.monotonic() - started)
            sketches = page.evaluate(LOSS_SKETCHES_JS)
            chart_came_first = page.evaluate(FIRST_LOSS_POINT_JS)
            page.wait_for_function(FIRST_LOSS_POINT_JS, timeout=120_000, polling=50)
            record_timing("cold_start_click_to_interactive_chart_s", time.monotonic() - started)
            # On a fresh server the sketch was sent, with curves in it, and showed the first points
            # unless the browser had Plotly drawing them first (then the page's CSS hides it); once
            # Plotly has drawn, no sketch takes any space (hidden, or no longer sent).
            assert len(sketches) == 1 and (sketches[0]["shown"] or chart_came_first), sketches
            svg = base64.b64decode(sketches[0]["src"].split(",", 1)[1]).decode()
            assert svg.count("<polyline") == 3 and 'data-curve="recon"' in svg, svg[:300]
            expect(page.locator(".st-key-loss_sketch")).to_be_hidden()
            wait_for_run(page)
            stop_run_if_active(page)  # the default run (10 short epochs) may have ended already

            seen = page.evaluate("() => window.__navSeen")
            assert seen[0] == "Train" and set(APP_PAGES) <= set(seen), seen  # the app's own navigation
            assert not set(seen) & LEGACY_NAMES, seen  # never the file names of a pages/ folder
            # The background warm-up runs to its end and says how long it took: Start no longer waits
            # for it (the run process checks the run), so it may end after the run's first points.
            warm_up = wait_until(
                page,
                lambda: re.search(re.escape(WARM_UP_LOG_PREFIX) + r" ([0-9.]+) s", server.log_tail(100_000)),
                timeout_s=60,
                message="the warm-up's line in the server's log",
            )
            # The warm-up thread, outside any script run, calls no Streamlit API that wants one (a
            # "missing ScriptRunContext" warning in every server's log, for a spinner nobody sees).
            assert "missing ScriptRunContext" not in server.log_tail(100_000), server.log_tail()
            record_timing("cold_server_start_to_warm_up_done_s", float(warm_up.group(1)))
        finally:
            context.close()
