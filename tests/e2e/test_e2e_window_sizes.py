"""The Train page at common window sizes: Start on the first screen, and no control or number cut
short (Streamlit truncates a label that does not fit with an ellipsis, which a test of the text alone
never sees: the boxes are measured)."""

from __future__ import annotations

import pytest
from e2e_helpers import SEED_RUN, assert_no_exception, button, wait_until

WINDOWS = [(1280, 720), (1500, 1000), (900, 800)]

# Every piece of text on the page (a leaf element holding text) that is cut: wider than its own box
# (drawn with an ellipsis, "L…"), or reaching past an ancestor that hides its overflow (a segmented
# control whose last choice is cut off by its column). Charts are SVG and not looked at.
CLIPPED_JS = """() => {
  const clipped = [];
  const main = document.querySelector('[data-testid="stMain"]');
  for (const element of main.querySelectorAll('*')) {
    if (!(element instanceof HTMLElement) || element.children.length > 0) continue;
    const text = element.innerText.replace(/[\u200b\u200c\u200d\ufeff]/g, '').trim();  // KaTeX's invisible struts
    const box = element.getBoundingClientRect();
    if (!text || box.width === 0 || box.height === 0) continue;
    if (element.scrollWidth > element.clientWidth + 1 && getComputedStyle(element).overflowX !== 'visible') {
      clipped.push({text, why: 'wider than its box', scroll: element.scrollWidth, client: element.clientWidth});
      continue;
    }
    for (let parent = element.parentElement; parent && parent !== main; parent = parent.parentElement) {
      if (getComputedStyle(parent).overflowX === 'visible') continue;
      const outer = parent.getBoundingClientRect();
      if (box.right > outer.right + 1 || box.left < outer.left - 1) {
        clipped.push({text, why: 'cut by ' + (parent.dataset.testid || parent.className.toString().slice(0, 40)),
                      right: box.right, limit: outer.right});
        break;
      }
    }
  }
  return clipped;
}"""


# Chart titles (a figure's, its subplots', its axes') that overlap another title of the same chart: at
# 900 px the loss chart's two subplot titles ran into each other. Charts are SVG: their boxes are measured.
OVERLAPPING_TITLES_JS = """() => {
  const overlaps = [];
  for (const chart of document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot')) {
    const titles = [...chart.querySelectorAll('.gtitle, .annotation-text, .xtitle, .ytitle')]
      .map((element) => ({text: element.textContent.trim(), box: element.getBoundingClientRect()}))
      .filter((title) => title.text && title.box.width > 0);
    titles.forEach((a, i) => titles.slice(i + 1).forEach((b) => {
      if (a.box.left < b.box.right - 1 && b.box.left < a.box.right - 1 &&
          a.box.top < b.box.bottom - 1 && b.box.top < a.box.bottom - 1) overlaps.push([a.text, b.text]);
    }));
  }
  return overlaps;
}"""


@pytest.mark.parametrize("width,height", WINDOWS, ids=[f"{w}x{h}" for w, h in WINDOWS])
def test_the_train_page_fits_the_window(open_app, width, height):
    page = open_app(query=f"run={SEED_RUN}")
    page.set_viewport_size({"width": width, "height": height})
    start = button(page, "Start training").first
    wait_until(page, lambda: start.bounding_box(), message="the Start button")
    box = start.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= height, (box, "Start is below the first screen")
    wait_until(page, lambda: page.locator('[data-testid="stMetricValue"]').count() >= 4, message="the metrics")
    wait_until(page, lambda: page.locator(".js-plotly-plot").count() >= 2, message="the loss and KL charts")
    page.wait_for_timeout(1_000)  # the layout settles after the charts draw
    assert page.evaluate(CLIPPED_JS) == []
    assert page.evaluate(OVERLAPPING_TITLES_JS) == []
    assert_no_exception(page)


@pytest.fixture(scope="module")
def ten_dimensional_run(app_server) -> str:
    """A finished run with a 10-D latent (the seed run's is 2-D, shown without a projection choice)."""
    from vae_core.checkpoint import save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.loop import run_to_end
    from vae_core.trainer import Trainer

    trainer = Trainer(TrainConfig(data="digits", latent_dim=10, epochs=1, device="cpu"), load_dataset("digits"))
    run_to_end(trainer)
    save_trainer_checkpoint(trainer, "e2e-z10", "finished", app_server.checkpoints / "e2e-z10.safetensors")
    return "e2e-z10"


@pytest.mark.parametrize("width,height", WINDOWS, ids=[f"{w}x{h}" for w, h in WINDOWS])
def test_the_latent_page_fits_the_window(open_app, ten_dimensional_run, width, height):
    from e2e_helpers import go_to

    page = open_app(query=f"run={ten_dimensional_run}")
    page.set_viewport_size({"width": width, "height": height})
    go_to(page, "Latent space", "Latent space")
    wait_until(
        page,
        lambda: page.locator(".st-key-latent_scatter .js-plotly-plot").count(),
        timeout_s=90,
        message="the scatter",
    )
    page.wait_for_timeout(1_000)
    assert page.evaluate(CLIPPED_JS) == []
    assert_no_exception(page)


def test_start_pressed_at_the_foot_of_the_form_brings_the_new_run_into_view(open_app, runs):
    """The form is taller than the window: after its last button, the run it started (and any error
    of it) is scrolled into view, not left above the fold."""
    from e2e_helpers import stop_run_if_active, url_run_id, wait_for_run

    page = open_app()
    page.set_viewport_size({"width": 1280, "height": 720})
    before = url_run_id(page)
    last_start = button(page, "Start training").last
    last_start.scroll_into_view_if_needed()
    assert (
        page.evaluate("() => window.scrollY") > 0
        or page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTop") > 0
    )
    last_start.click()
    wait_until(page, lambda: (run := url_run_id(page)) and run != before, timeout_s=120, message="the new run")
    runs.append(wait_for_run(page))
    top = page.locator(".st-key-run_top")
    # Below Streamlit's header bar (about 60 px), within the window.
    wait_until(
        page,
        lambda: (box := top.bounding_box()) and 50 <= box["y"] < 720 - box["height"],
        timeout_s=30,
        message="the run's line within the window",
    )
    stop_run_if_active(page)


# The other pages, each with the run of the link: title, then what it draws, measured once settled.
OTHER_PAGES = [
    ("Generate", "Generate"),
    ("Checkpoints", "Checkpoints"),
    ("Runs", "Runs"),
    ("Theory", "Theory, with your run's numbers"),
    ("Experiments", "Experiments: the note's claims, on your data"),
]


@pytest.mark.parametrize("width,height", WINDOWS, ids=[f"{w}x{h}" for w, h in WINDOWS])
def test_every_other_page_fits_the_window(open_app, ten_dimensional_run, width, height):
    from e2e_helpers import go_to, settle

    page = open_app(query=f"run={ten_dimensional_run}")
    page.set_viewport_size({"width": width, "height": height})
    cut = {}
    for title, heading in OTHER_PAGES:
        go_to(page, title, heading)
        tabs = page.locator('[data-testid="stMain"] [role="tab"]')
        # Each tab's own contents (a hidden tab's have no size, so they are measured with it open).
        for index in range(max(1, tabs.count())):
            name = title
            if tabs.count():
                name = f"{title} / {tabs.nth(index).inner_text().strip()}"
                tabs.nth(index).click()
            settle(page)
            page.wait_for_timeout(1_000)  # the layout settles after the charts draw
            assert_no_exception(page)
            if clipped := page.evaluate(CLIPPED_JS):
                cut[name] = clipped
            if overlapping := page.evaluate(OVERLAPPING_TITLES_JS):
                cut[f"{name} (chart titles)"] = overlapping
    assert cut == {}


def test_a_divergence_while_the_page_is_scrolled_down_is_brought_into_view(open_app, runs, app_server):
    """A run that diverges while its person reads the foot of the page: the error, at the top of the
    run's panel, is scrolled into view (it was left off-screen). The learning rate is raised to 100
    through the run store, as another server or tab would; a step later the loss is NaN."""
    from e2e_helpers import start_training, url_run_id, wait_for_run, wait_for_step_beyond

    from vae_core.run_commands import send_command

    page = open_app()
    page.set_viewport_size({"width": 1280, "height": 720})
    start_training(page)
    run_id = url_run_id(page)
    runs.append(wait_for_run(page))
    wait_for_step_beyond(page, 0, timeout_s=60)
    page.keyboard.press("End")
    page.mouse.wheel(0, 20_000)  # to the foot of the page: the run's panel is far above
    page.wait_for_timeout(500)
    top = page.locator(".st-key-run_top")
    assert (box := top.bounding_box()) is None or box["y"] + box["height"] < 0, "the panel should be off-screen"
    send_command(app_server.checkpoints, run_id, "lr", 100.0)
    error = page.locator(".st-key-run_top [data-testid='stAlertContentError']")
    wait_until(page, lambda: error.count() > 0, timeout_s=60, message="the divergence error")
    expect_text = error.first.inner_text()
    assert "diverged" in expect_text, expect_text
    wait_until(
        page,
        lambda: (box := error.first.bounding_box()) and box["y"] >= 0 and box["y"] + box["height"] <= 720,
        timeout_s=15,
        message="the error within the window",
    )
