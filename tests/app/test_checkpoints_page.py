"""Checkpoints page: the runs table, upload (good and hostile), download, resume, delete, compare."""

import pickle

from apphelpers import CHECKPOINTS, assert_no_exception, plotly_specs


def _open(app):
    app.switch_page("app_pages/checkpoints.py")
    return app.run()


def _uploader(app):
    return next(u for u in app.file_uploader if "checkpoint" in u.label.lower())


def test_table_lists_the_saved_runs_with_their_metrics(app, saved_runs):
    _open(app)
    assert_no_exception(app)
    table = app.dataframe[0].value
    assert {"vae-beta1.safetensors", "vae-beta4.safetensors", "cvae-run.safetensors"} <= set(table["file"])
    row = table[table["file"] == "vae-beta4.safetensors"].iloc[0]
    assert row["β"] == 4.0 and row["epoch"] == 2 and row["status"] == "finished"
    assert row["test −ELBO"] > 0


def test_a_good_upload_is_accepted_and_listed_for_this_session(app, saved_runs):
    _open(app)
    _uploader(app).upload("mine.safetensors", saved_runs[0].read_bytes())
    app.run()
    assert_no_exception(app)
    assert any("mine.safetensors: run vae-beta1" in s.value for s in app.success)
    app.run()
    table = app.dataframe[0].value
    mine = table[table["file"] == "mine.safetensors"].iloc[0]
    assert mine["owner"] == "you (upload)"
    assert not (CHECKPOINTS / "mine.safetensors").exists()  # private to the session, not shared


def test_hostile_uploads_get_a_clear_message_and_the_page_keeps_working(app, saved_runs, tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    payloads = {"pickle.safetensors": pickle.dumps({"x": Boom()}), "random.safetensors": bytes(range(256)) * 40,
                "empty.safetensors": b"", "truncated.safetensors": saved_runs[0].read_bytes()[:5000]}
    for name, content in payloads.items():
        _open(app)
        _uploader(app).upload(name, content)
        app.run()
        assert_no_exception(app)
        errors = " ".join(e.value for e in app.error)
        assert name in errors, (name, errors)
        assert len(app.dataframe) == 1  # the table is still there
    assert not (tmp_path / "pwned").exists()


def test_download_gives_the_file_bytes(app, saved_runs):
    _open(app)
    button = next(b for b in app.get("download_button") if "Download" in b.proto.label)
    assert button.proto.label == "Download .safetensors"


def test_resume_starts_a_job_from_the_checkpoint(app, saved_runs):
    from apphelpers import train_checkpoint
    from ui.session import registry

    resumable = train_checkpoint("resume-me")
    _open(app)
    selector = app.selectbox(key="checkpoint_selected")
    selector.set_value(str(resumable)).run()
    next(n for n in app.number_input if n.label == "Train until epoch").set_value(3)
    next(b for b in app.button if b.label == "Resume training").click()
    app.run()
    assert_no_exception(app)
    job = registry().get("resume-me")
    assert job is not None
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.epoch == 3 and snap.status == "finished"
    assert snap.curves.step[0] == 1 and len(snap.curves) == snap.step  # history carried over, no gap


def test_delete_asks_first_then_removes_the_file(app, saved_runs, tmp_path):
    from apphelpers import train_checkpoint
    doomed = train_checkpoint("doomed")
    _open(app)
    app.selectbox(key="checkpoint_selected").set_value(str(doomed)).run()
    assert doomed.exists()
    next(b for b in app.button if b.label == "Yes, delete it").click()
    app.run()
    assert_no_exception(app)
    assert not doomed.exists()
    assert any("Deleted doomed.safetensors" in s.value for s in app.success)


def test_compare_shows_curves_of_each_run_and_samples_from_the_same_z(app, saved_runs):
    _open(app)
    app.multiselect(key="compare_runs").set_value([str(CHECKPOINTS / "vae-beta1.safetensors"),
                                                   str(CHECKPOINTS / "vae-beta4.safetensors")]).run()
    assert_no_exception(app)
    spec = next(s for s in plotly_specs(app) if any("test −ELBO" in (t.get("name") or "") for t in s["data"]))
    names = [t["name"] for t in spec["data"]]
    assert names == ["vae-beta1", "vae-beta1 test −ELBO", "vae-beta4", "vae-beta4 test −ELBO"]
    captions = [c for img in app.get("image") for c in img.captions]
    assert len(app.get("image")) >= 2 and captions is not None
