"""Two browser sessions against one server: one training job per device, the next one queued, and
every tab shown what trains, with a link to it."""

from __future__ import annotations

from e2e_helpers import (
    assert_no_exception,
    expect,
    shown_run_id,
    start_training,
    stop_run,
    stop_run_if_active,
    url_run_id,
    wait_for_run,
    wait_for_status,
    wait_for_step_beyond,
    wait_until,
)


def test_a_second_session_queues_behind_the_first_and_sees_it_in_the_sidebar(open_app, runs):
    """Journey 7: session B's Start queues behind A's run (which B's sidebar links to); A keeps going."""
    first = open_app()
    second = open_app()  # a second browser context: its own cookies, its own Streamlit session

    start_training(first, "digits")
    run_id = wait_for_run(first)
    runs.append(run_id)
    running = wait_for_status(first, "running")

    second.reload()  # a tab opened while A trains
    # A's run, linked by its name (its id is in the link's address); the click below opens it. While the
    # page re-runs, Streamlit may show the previous run's element beside the new one: take the first.
    badge = (
        second.locator(f'[data-testid="stPageLink-NavLink"][href*="run={run_id}"]').filter(has_text="Training: ").first
    )
    expect(badge).to_be_visible()
    start_training(second, "digits", long_run=False)
    queued_id = wait_until(
        second, lambda: (rid := url_run_id(second)) and rid != run_id and rid, message="B's own run in its URL"
    )
    runs.append(queued_id)
    expect(second.get_by_text("Queued, number 1 in line")).to_be_visible()
    assert wait_for_status(second, "queued")["step"] == 0
    assert_no_exception(second)

    wait_for_step_beyond(first, running["step"])  # A was not disturbed
    assert shown_run_id(first) == run_id
    badge.click()  # B's link opens A's run
    wait_until(second, lambda: shown_run_id(second) == run_id, message="A's run in B's tab")
    wait_until(second, lambda: url_run_id(second) == run_id, message=f"?run={run_id} in B's URL")
    assert stop_run(second)["status"] == "stopped"  # B may stop A: one person, every tab sees every run

    second.goto(second.url.split("?")[0] + f"?run={queued_id}")
    wait_for_status(second, "running", "finished")  # B's queued run started when A ended
    stop_run_if_active(second)  # B drives the run it queued (unless, being short, it has ended)
