"""The Train page in a real browser: live curves, pause/resume, β changed mid-run, reload."""

from __future__ import annotations

import re
import time

from e2e_helpers import (
    FIRST_LOSS_POINT_JS,
    LOSS_CHART,
    assert_no_exception,
    button,
    chart,
    expect,
    images,
    last_loss_step,
    loaded,
    progress,
    recon_and_kl_steps,
    record_timing,
    run_line,
    save_screenshot,
    shown_run_id,
    start_training,
    stop_run,
    url_run_id,
    wait_for_app,
    wait_for_run,
    wait_for_status,
    wait_for_step_beyond,
    wait_until,
)

COLD_START_TIMEOUT_MS = 180_000  # first run of the server: imports and loads MNIST; measured, never asserted


def test_default_training_shows_loss_curves_that_grow(page, runs):
    """Journey 1: the defaults (mnist-sample, mlp), one click, and the curves fill in live."""
    # The panel beside the form shows the newest run (or, with none yet, how to start one).
    expect(page.get_by_role("combobox", name="Dataset")).to_have_value("mnist-sample")
    expect(page.get_by_role("combobox", name="Model")).to_have_value(re.compile(r"^mlp\b"))

    started = start_training(page, dataset=None, long_run=False)
    run_id = wait_for_run(page)  # the panel shows the new run
    runs.append(run_id)
    page.wait_for_function(FIRST_LOSS_POINT_JS, arg=run_id, timeout=COLD_START_TIMEOUT_MS, polling=50)
    record_timing("start_to_first_loss_point_s_mnist_sample_defaults", time.monotonic() - started)
    assert shown_run_id(page) == run_id
    # Polled, not read once: the page re-runs as the first points arrive, and may redraw the chart (CI saw it absent).
    first_steps = wait_until(
        page, lambda: recon_and_kl_steps(page), timeout_s=10, message="reconstruction and KL points on the chart"
    )
    wait_until(
        page,
        lambda: (later := recon_and_kl_steps(page)) and all(later[name] > first_steps[name] for name in later),
        timeout_s=30,
        message=f"both curves to grow past steps {first_steps}",
    )
    figure = wait_until(page, lambda: (f := chart(page, LOSS_CHART)) and f["traces"] and f, message="the loss chart")
    assert {t["name"] for t in figure["traces"]} >= {"total", "reconstruction", "KL"}, figure["traces"]
    state = progress(page)
    assert state["epochs"] == 10 and state["status"] in ("running", "finished"), state
    assert " · mnist-sample · mlp · " in run_line(page), run_line(page)

    # After the first epoch: test -ELBO markers and a reconstruction grid; that is the screenshot.
    wait_until(page, lambda: loaded(images(page)), timeout_s=120, message="the reconstructions image")
    wait_until(
        page,
        lambda: any(t["name"] == "test −ELBO" for t in chart(page, LOSS_CHART)["traces"]),
        timeout_s=60,
        message="the test −ELBO markers",
    )
    assert_no_exception(page)
    save_screenshot(page, "train")
    if progress(page)["status"] in ("running", "paused"):
        assert stop_run(page)["status"] in ("stopped", "finished")


def test_pause_resume_and_beta_change_while_running(page, runs):
    """Journey 2: Pause holds the step count, Resume continues, β changed live marks the chart."""
    started = start_training(page, "digits")
    runs.append(run_id := wait_for_run(page))
    page.wait_for_function(FIRST_LOSS_POINT_JS, arg=run_id, timeout=COLD_START_TIMEOUT_MS, polling=50)
    record_timing("start_to_first_loss_point_s_digits_batch16", time.monotonic() - started)
    wait_for_status(page, "running")

    button(page, "Pause").click()
    paused = wait_for_status(page, "paused")
    expect(button(page, "Resume")).to_be_enabled()
    expect(button(page, "Pause")).to_be_disabled()
    page.wait_for_timeout(1_500)
    still = progress(page)
    assert still["status"] == "paused" and still["step"] == paused["step"], (paused, still)

    button(page, "Resume").click()
    running = wait_for_status(page, "running")
    wait_for_step_beyond(page, running["step"])

    beta = page.get_by_label("β now").filter(visible=True)  # a rerun may leave a stale copy for a moment
    beta.fill("4")
    button(page, "Apply").filter(visible=True).click()
    wait_until(
        page,
        lambda: "beta=4" in chart(page, LOSS_CHART)["annotations"],
        timeout_s=20,
        message="the 'beta=4' annotation on the loss chart",
    )
    figure = chart(page, LOSS_CHART)
    assert any(s["dash"] == "dot" and s["type"] == "line" for s in figure["shapes"]), figure["shapes"]
    expect(page.get_by_label("β now").filter(visible=True).first).to_have_value("4")
    # The snapshot keeps coming after the change: more steps, and the curve reaches past them.
    before = progress(page)
    wait_for_step_beyond(page, before["step"])
    wait_until(page, lambda: last_loss_step(page) > before["step"], message="new points after β changed")
    assert_no_exception(page)
    assert stop_run(page)["status"] == "stopped"


def test_reload_finds_the_same_run_still_going(page, runs):
    """Journey 3: a reload is a new session; ?run=<id> in the URL brings the page back to the run."""
    start_training(page, "digits")
    run_id = wait_for_run(page)
    runs.append(run_id)
    before = wait_for_status(page, "running")

    page.reload()
    wait_for_app(page)
    assert url_run_id(page) == run_id, page.url
    wait_until(page, lambda: shown_run_id(page) == run_id, message=f"'Run {run_id}' after the reload")
    after = wait_for_step_beyond(page, before["step"])
    assert after["status"] == "running", after
    wait_for_step_beyond(page, after["step"])  # still increasing, seen from the new session
    assert_no_exception(page)
    assert stop_run(page)["status"] == "stopped"


# From now on, each change in how many Plotly plots the loss chart's place holds, frame by frame.
WATCH_LOSS_CHART_JS = f"""() => {{ window.lossPlotCounts = []; let last = -1;
  const look = () => {{
    const count = document.querySelectorAll({LOSS_CHART!r}).length;
    if (count !== last) {{ window.lossPlotCounts.push(count); last = count; }}
    requestAnimationFrame(look);
  }};
  look();
}}"""


def test_the_loss_chart_stays_drawn_while_the_page_reruns(page, runs):
    """The page re-runs whole as a run's first points arrive and as it ends. The chart must not vanish
    for those frames: it did as a run ended (the form that changes lr and β went, and Streamlit redrew
    all that followed it from scratch)."""
    page.evaluate(WATCH_LOSS_CHART_JS)
    start_training(page, "digits", long_run=False)
    runs.append(run_id := wait_for_run(page))
    page.wait_for_function(FIRST_LOSS_POINT_JS, arg=run_id, timeout=COLD_START_TIMEOUT_MS, polling=50)
    wait_for_status(page, "finished", timeout_s=120)
    expect(page.get_by_label("β now")).to_have_count(0)  # the rerun at its end has come: no live controls
    counts = page.evaluate("window.lossPlotCounts")
    shown = counts[next(i for i, count in enumerate(counts) if count) :]  # from the first chart on
    assert 0 not in shown, counts
