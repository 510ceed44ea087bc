"""Two browser sessions against one server: one training job per device, shared by everybody."""

from __future__ import annotations

from e2e_helpers import (assert_no_exception, button, expect, progress, shown_run_id, start_training, stop_run,
                         url_run_id, wait_for_run, wait_for_status, wait_for_step_beyond)


def test_second_session_cannot_start_while_the_first_trains(open_app, runs):
    """Journey 7: session B's Start is refused with a message naming the busy device; A keeps going."""
    first = open_app()
    second = open_app()  # a second browser context: its own cookies, its own Streamlit session

    start_training(first, "digits")
    run_id = wait_for_run(first)
    runs.append(run_id)
    running = wait_for_status(first, "running")

    start_training(second, "digits", long_run=False)
    refusal = second.locator('[data-testid="stAlertContentError"]').filter(has_text="busy")
    expect(refusal).to_be_visible()
    message = refusal.inner_text()
    assert run_id in message, message  # it says which run holds the device
    assert url_run_id(second) is None, second.url  # no run was started for B
    expect(second.get_by_text("Set the hyperparameters and press")).to_be_visible()
    assert progress(second) is None
    assert_no_exception(second)

    wait_for_step_beyond(first, running["step"])  # A was not disturbed
    assert shown_run_id(first) == run_id
    expect(button(first, "Stop")).to_be_enabled()
    assert stop_run(first)["status"] == "stopped"
