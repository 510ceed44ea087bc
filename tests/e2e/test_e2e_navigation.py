"""The run a person looks at stays in the address bar (?run=) through sidebar page switches, a
reload and a new tab, so every view of it can be bookmarked or shared."""

from __future__ import annotations

from e2e_helpers import SEED_RUN, assert_no_exception, expect, go_to, url_run_id, wait_for_app, wait_until

PAGES = [
    ("Latent space", "Latent space"),
    ("Generate", "Generate"),
    ("Checkpoints", "Checkpoints"),
    ("Theory", "Theory, with your run's numbers"),
    ("Train", "Train a VAE"),
]


def _picker_shows_seed_run(page) -> None:
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').get_by_role("combobox")
    expect(picker).to_have_value(f"{SEED_RUN} · saved")


def test_the_run_stays_in_the_url_through_page_switches_reloads_and_new_tabs(open_app):
    page = open_app(path="latent", query=f"run={SEED_RUN}")
    for title, heading in PAGES:
        go_to(page, title, heading)
        wait_until(page, lambda: url_run_id(page) == SEED_RUN, message=f"?run= on {title}")
        assert_no_exception(page)
    go_to(page, "Generate", "Generate")
    page.reload()
    wait_for_app(page)
    assert url_run_id(page) == SEED_RUN, page.url
    _picker_shows_seed_run(page)
    other = open_app(path=page.url.split("/", 3)[3])  # the address, pasted into a new tab
    expect(other.get_by_role("heading", name="Generate", exact=True)).to_be_visible()
    _picker_shows_seed_run(other)
    assert url_run_id(other) == SEED_RUN
