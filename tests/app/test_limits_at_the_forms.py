"""Issue 23, items 2 and 4: a new run over the limits (config.Limits) is refused by the form that
would make it, with one message, before anything is queued or allocated. The Train form once started
200 hidden layers of 4096 (6.7 billion parameters), and the sweep form queued 256 runs a submit."""

import pytest
from apphelpers import CHECKPOINTS, assert_no_exception, rendered


@pytest.fixture
def no_jobs_left():
    yield
    from ui.session import registry
    from vae_core.runs import checkpoint_path

    registry().stop_all()
    for job in registry().jobs():
        checkpoint_path(CHECKPOINTS, job.run_id).unlink(missing_ok=True)


@pytest.mark.parametrize(
    "hidden, limits, problem",
    [
        ("4 " * 20, {}, "at most 16 hidden layers"),
        ("256 256", {"VAE_STUDIO_MAX_PARAMETERS": "10000"}, "more than the limit of 10,000"),
    ],
    ids=["layers", "parameters"],
)
def test_the_train_form_refuses_a_model_over_the_limits_and_starts_nothing(
    app, no_jobs_left, monkeypatch, hidden, limits, problem
):
    from ui.session import registry

    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    app.run()
    {s.label: s for s in app.selectbox}["Dataset"].set_value("digits")
    {s.label: s for s in app.slider}["Epochs"].set_value(1)
    next(t for t in app.text_input if t.label == "Hidden sizes").set_value(hidden)
    next(b for b in app.button if b.label == "Start training").click()
    app.run()
    assert_no_exception(app)
    assert any(problem in rendered(error.value) for error in app.error), [e.value for e in app.error]
    assert registry().jobs() == []


def test_the_sweep_form_refuses_more_runs_than_one_request_may_queue(app, no_jobs_left):
    from ui.session import registry

    app.switch_page("app_pages/runs.py")
    app.run()
    app.text_input(key="sweep_first_values").input(" ".join(str(1 + i) for i in range(65)))
    next(button for button in app.button if button.label == "Queue the sweep").click()
    app.run()
    assert_no_exception(app)
    assert any("more than the limit of 64" in rendered(error.value) for error in app.error), [
        e.value for e in app.error
    ]
    assert registry().jobs() == []
