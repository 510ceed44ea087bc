"""The Train page on a run sent to SLURM (VAE_STUDIO_EXECUTOR=slurm, a fake SLURM of tests/fake_slurm.py):
while its job is pending the page says where the run is, as the Runs page does, on a timer, in place of
"not in the checkpoints folder yet"; once the job trains, the page shows the run live."""

import time

from apphelpers import assert_no_exception

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core.config import TrainConfig
from vae_core.executor_state import read_state, state_path
from vae_core.runs import read_run

TINY = dict(data="digits", hidden=(16,), latent_dim=2, batch_size=16, device="cpu", threads=1)


def test_a_run_pending_in_slurm_shows_its_place_then_trains_live(app, fake_slurm, monkeypatch):  # noqa: F811
    import streamlit as st

    from ui import session
    from vae_core.data import load_dataset

    monkeypatch.setenv("VAE_STUDIO_EXECUTOR", "slurm")
    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")  # no free node: the job waits until released below
    st.cache_resource.clear()  # the registry of an earlier test trained here
    registry = session.registry()
    run_id = None
    try:
        run_id = registry.submit(TrainConfig(epochs=500, **TINY), load_dataset("digits"), name="on the cluster").run_id
        job_id = read_state(state_path(session.CHECKPOINT_DIR, run_id)).job_id
        app.query_params["run"] = run_id
        app.run()
        assert_no_exception(app)
        assert [w.value for w in app.warning] == []  # not "not in the checkpoints folder yet"
        assert [i.value for i in app.info] == [
            f"Run `{run_id}` is pending in SLURM (job {job_id}). It shows here, live, once its job trains."
        ]

        fake_slurm.release(job_id)
        deadline = time.monotonic() + 120
        while (record := read_run(session.CHECKPOINT_DIR, run_id)) is None or not record.live or record.step == 0:
            assert time.monotonic() < deadline, read_state(state_path(session.CHECKPOINT_DIR, run_id))
            time.sleep(0.1)
        app.run()
        assert_no_exception(app)
        assert any(f"**Run** on the cluster · `{run_id}`" in m.value for m in app.markdown)
        assert not any("pending in SLURM" in i.value for i in app.info)
    finally:
        if run_id is not None:
            registry.cancel(run_id)
        registry.close()
        st.cache_resource.clear()
        for path in session.CHECKPOINT_DIR.glob(f"{run_id}*") if run_id else ():
            path.unlink()  # the AppTests' folder is shared: a later test must not find this run
