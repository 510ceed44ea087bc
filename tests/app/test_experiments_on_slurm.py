"""The Experiments page with the app's runs sent to SLURM (VAE_STUDIO_EXECUTOR=slurm, a fake SLURM of
tests/fake_slurm.py): a click makes one job per run, the page follows them where they are (pending in
SLURM, then training), and once they have finished it writes the finding from their checkpoints."""

import time

from apphelpers import assert_no_exception

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core.executor_state import ACTIVE_STATES, states_in

PAGE = "app_pages/experiments.py"


def _shown(app) -> str:
    texts = [m.value for m in app.markdown] + [p.proto.text for p in app.get("progress")]
    return " ".join(texts + [e.value for e in app.error])


def test_an_experiment_on_slurm_is_followed_until_its_finding(app, fake_slurm, monkeypatch):  # noqa: F811
    import streamlit as st

    from ui import session

    monkeypatch.setenv("VAE_STUDIO_EXECUTOR", "slurm")
    st.cache_resource.clear()  # the registry of an earlier test trained here
    ours = set()
    try:
        app.switch_page(PAGE)
        app.run()
        intro = app.markdown[0].value  # where the runs train: not "one after the other on this machine"
        assert "you choose, each as a SLURM job of its own, all submitted at once (they train as" in intro
        app.selectbox(key="experiment_data").set_value("digits")
        app.number_input(key="experiment_epochs").set_value(1)
        app.run()
        before = set(states_in(session.CHECKPOINT_DIR))
        app.button(key="run_ae-vs-vae").click()
        app.run()
        assert_no_exception(app)
        ours = set(states_in(session.CHECKPOINT_DIR)) - before
        assert len(ours) == 2 and len(fake_slurm.calls("sbatch")) == 2
        shown = _shown(app)
        assert "no longer in memory" not in shown, shown
        assert "AE:" in shown and "VAE:" in shown  # each run's place, while they wait or train

        deadline = time.monotonic() + 120
        while any(states_in(session.CHECKPOINT_DIR)[run_id].state in ACTIVE_STATES for run_id in ours):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        app.run()
        assert_no_exception(app)
        assert sorted(states_in(session.CHECKPOINT_DIR)[run_id].state for run_id in ours) == ["finished"] * 2
        finding = " ".join(s.value for s in app.success)
        assert "The AE" in finding and "aggregate KL is" in finding and "for the VAE" in finding
        assert list(app.dataframe[0].value["run"]) == ["AE", "VAE"]
    finally:
        session.registry().close()
        st.cache_resource.clear()
        for run_id in ours:  # the folder is the session's: a later test's "ae-vs-vae: AE" would be "… (2)"
            for path in session.CHECKPOINT_DIR.glob(f"{run_id}*"):
                path.unlink()
