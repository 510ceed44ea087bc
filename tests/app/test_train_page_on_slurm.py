"""The Train page on a run sent to SLURM (VAE_STUDIO_EXECUTOR=slurm, a fake SLURM of tests/fake_slurm.py):
while its job is pending the page says where the run is, as the Runs page does, on a timer, in place of
"not in the checkpoints folder yet"; once the job trains, the page shows the run live."""

import time

from apphelpers import assert_no_exception, rendered

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


def test_a_run_whose_job_failed_before_any_record_says_why_to_its_owner_alone(app, fake_slurm, monkeypatch):  # noqa: F811
    """A job that fails before writing any record (its data cannot be read, say) leaves only its state:
    the Train page says why to the run's owner, not "not in the checkpoints folder yet"; served, to no one
    else, and a state that names no owner to no one."""
    import streamlit as st
    from test_multi_user import ALICE, BOB, owner, served_session

    from ui import session
    from vae_core.executor_state import update_state
    from vae_core.run_ids import new_run_id

    monkeypatch.setenv("VAE_STUDIO_EXECUTOR", "slurm")
    st.cache_resource.clear()
    registry = session.registry()
    alices, nobodys = new_run_id(), new_run_id()
    reason = "the data file /data/alice.npz cannot be read"
    try:
        update_state(session.CHECKPOINT_DIR, alices, state="failed", job_id="41", reason=reason, owner=owner(ALICE))
        update_state(session.CHECKPOINT_DIR, nobodys, state="failed", job_id="42", reason=reason)
        said = f"Run {alices} ended in SLURM before its job wrote any record: failed (job 41): {reason}."
        app.query_params["run"] = alices
        app.run()  # one person's app: every run is theirs
        assert_no_exception(app)
        assert [rendered(e.value) for e in app.error] == [said] and [w.value for w in app.warning] == []

        assert [rendered(e.value) for e in served_session(ALICE, "app_pages/train.py", run_id=alices).error] == [said]
        for user, run_id in ((BOB, alices), (BOB, nobodys), (ALICE, nobodys)):
            page = served_session(user, "app_pages/train.py", run_id=run_id)
            assert [e.value for e in page.error] == [], (user["name"], run_id)
            assert any("is not in the checkpoints folder yet" in w.value for w in page.warning)
    finally:
        registry.close()
        st.cache_resource.clear()
        for run_id in (alices, nobodys):
            for path in session.CHECKPOINT_DIR.glob(f"{run_id}*"):
                path.unlink()


def test_a_run_with_a_record_that_slurm_gave_up_on_says_why(app, fake_slurm, monkeypatch):  # noqa: F811
    """Only the executor knows that a run whose record is from its last epoch was given up (time limits
    without a new epoch): the Train page says so above the run; a state that ended well adds nothing."""
    import streamlit as st
    from apphelpers import train_checkpoint

    from ui import session
    from vae_core.executor_state import update_state
    from vae_core.run_ids import new_run_id

    monkeypatch.setenv("VAE_STUDIO_EXECUTOR", "slurm")
    st.cache_resource.clear()
    registry = session.registry()
    run_id = new_run_id()
    reason = "time limit again without saving a new epoch (still 2): not requeued; raise time_min"
    try:
        train_checkpoint(run_id)
        update_state(session.CHECKPOINT_DIR, run_id, state="failed", job_id="43", reason=reason)
        app.query_params["run"] = run_id
        app.run()
        assert_no_exception(app)
        assert any(f"`{run_id}`" in m.value for m in app.markdown)  # the run's own panel, from its record
        assert [rendered(e.value) for e in app.error] == [f"Its SLURM job: failed (job 43): {reason}."]
        update_state(session.CHECKPOINT_DIR, run_id, state="finished", reason=None)
        app.run()
        assert [e.value for e in app.error] == []
    finally:
        registry.close()
        st.cache_resource.clear()
        for path in session.CHECKPOINT_DIR.glob(f"{run_id}*"):
            path.unlink()
