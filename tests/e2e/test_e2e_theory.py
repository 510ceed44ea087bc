"""The Theory page in a real browser: the IWAE button reads in full, and its result says why k=1
is not the test −ELBO shown above it."""

from __future__ import annotations

from e2e_helpers import SEED_RUN, assert_no_exception, button, expect, go_to

# True when some text inside the element is cut off (ellipsis or overflow) in its own box.
CUT_OFF_JS = """(el) => [el, ...el.querySelectorAll('*')].some((e) => e.scrollWidth > e.clientWidth + 1)"""


def test_the_iwae_button_reads_in_full_and_its_result_explains_k1(open_app):
    page = open_app(query=f"run={SEED_RUN}")
    go_to(page, "Theory", "Theory, with your run's numbers")
    iwae = button(page, "Compute the IWAE bound")
    iwae.scroll_into_view_if_needed()
    expect(iwae).to_be_visible()
    assert not iwae.evaluate(CUT_OFF_JS), iwae.inner_text()
    iwae.click()
    result = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="k=1 (the ELBO)")
    expect(result).to_be_visible(timeout=60_000)
    assert "On the first 200 test images" in result.inner_text()
    expect(page.get_by_text("Why k=1 is not the test −ELBO above")).to_be_visible()
    expect(page.get_by_text("loss = summed BCE (Bernoulli) + β × KL")).to_be_visible()
    assert_no_exception(page)
