"""The Generate page in a real browser: samples from the prior are drawn as an image."""

from __future__ import annotations

from e2e_helpers import SEED_RUN, assert_no_exception, expect, go_to, images, loaded, save_screenshot, wait_until


def test_samples_from_the_prior_show_an_image(open_app):
    """Journey 5: the first tab decodes z ~ N(0, I) into a grid that the browser loads."""
    page = open_app(query=f"run={SEED_RUN}")
    go_to(page, "Generate", "Generate")
    expect(page.get_by_text(f"Run {SEED_RUN}", exact=False).first).to_be_visible()
    tab = page.get_by_role("tab", name="Samples from the prior")
    expect(tab).to_have_attribute("aria-selected", "true")

    panel = page.get_by_role("tabpanel").filter(has_text="decoded z ~ N(0, T²I)")
    expect(panel).to_be_visible()
    grid = wait_until(
        page,
        lambda: loaded(images(page, '[role="tabpanel"]:not([hidden]) [data-testid="stImage"] img')),
        message="the samples image to load",
    )
    assert grid[0]["naturalWidth"] > 0 and grid[0]["naturalHeight"] > 0, grid
    assert_no_exception(page)
    save_screenshot(page, "generate")
