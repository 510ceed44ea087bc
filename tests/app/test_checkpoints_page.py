"""Checkpoints page: the runs table, upload (good, colliding and hostile), download, resume, delete,
compare; names from files shown as text; no private path shown."""

import hashlib
import pickle
from pathlib import Path

from apphelpers import CHECKPOINTS, assert_no_exception, markdown_texts, plotly_specs, rendered, train_checkpoint


def _open(app):
    app.switch_page("app_pages/checkpoints.py")
    return app.run()


def _open_run(app, run_id: str):
    """The Checkpoints page with the saved run `run_id` selected."""
    _open(app)
    app.selectbox(key="checkpoint_selected").set_value(str(CHECKPOINTS / f"{run_id}.safetensors")).run()
    assert_no_exception(app)
    return app


def _uploader(app):
    return next(u for u in app.file_uploader if "checkpoint" in u.label.lower())


def _server_files() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in CHECKPOINTS.glob("*.safetensors")}


def test_table_lists_the_saved_runs_with_their_metrics(app, saved_runs):
    _open(app)
    assert_no_exception(app)
    table = app.dataframe[0].value
    assert {"vae-beta1", "vae-beta4", "cvae-run", "ae-run"} <= set(table["run"])
    row = table[table["run"] == "vae-beta4"].iloc[0]
    assert row["β"] == 4.0 and row["epoch"] == 2 and row["status"] == "finished"
    assert row["test −ELBO"] > 0 and row["origin"] == "trained here"


def test_an_autoencoder_has_no_bound_in_the_table_only_its_reconstruction_error(app, saved_runs):
    _open(app)
    row = app.dataframe[0].value.set_index("run").loc["ae-run"]
    assert row["test −ELBO"] is None or row["test −ELBO"] != row["test −ELBO"]  # None, or NaN in pandas
    assert row["β"] is None or row["β"] != row["β"]
    assert row["test recon"] > 0


def test_an_upload_carrying_a_server_run_id_becomes_a_new_run_and_changes_no_server_file(app, saved_runs):
    from ui.session import registry

    before = _server_files()
    _open(app)
    _uploader(app).upload("vae-beta1.safetensors", (CHECKPOINTS / "vae-beta1.safetensors").read_bytes())
    app.run()
    assert_no_exception(app)
    message = rendered(" ".join(s.value for s in app.success))
    assert "vae-beta1.safetensors: imported as run" in message
    after = _server_files()
    assert {name: after[name] for name in before} == before  # not one byte of any server file changed
    (new_file,) = set(after) - set(before)
    new_id = Path(new_file).stem
    assert new_id != "vae-beta1" and new_id in message
    # The upload is selected, here and in the URL, so Resume resumes it and nothing else.
    assert app.selectbox(key="checkpoint_selected").value == str(CHECKPOINTS / new_file)
    assert app.query_params["run"] in (new_id, [new_id])
    row = app.dataframe[0].value.set_index("run").loc[new_id]
    assert row["origin"] == "upload of vae-beta1.safetensors"
    next(n for n in app.number_input if n.label == "Train until epoch").set_value(3)
    next(b for b in app.button if b.label == "Resume training").click()
    app.run()
    assert_no_exception(app)
    job = registry().get(new_id)
    assert job is not None and job.wait(60)
    assert {name: _server_files()[name] for name in before} == before  # the resumed upload wrote its own file


def test_after_an_upload_every_run_picker_shows_it_under_a_label_of_its_own(app, saved_runs):
    _open(app)
    _uploader(app).upload("again.safetensors", (CHECKPOINTS / "vae-beta4.safetensors").read_bytes())
    app.run()
    new_id = app.query_params["run"]
    new_id = new_id[0] if isinstance(new_id, list) else new_id
    app.switch_page("app_pages/generate.py")
    app.run()
    assert_no_exception(app)
    picker = app.selectbox(key="run_picker")
    assert picker.value.endswith(f"{new_id}.safetensors")  # the upload, not the run shown before
    labels = picker.options  # as shown
    assert len(labels) == len(set(labels)), labels  # no two runs look alike


def test_hostile_uploads_get_a_clear_message_and_the_page_keeps_working(app, saved_runs, tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    payloads = {
        "pickle.safetensors": pickle.dumps({"x": Boom()}),
        "random.safetensors": bytes(range(256)) * 40,
        "empty.safetensors": b"",
        "truncated.safetensors": saved_runs[0].read_bytes()[:5000],
    }
    before = _server_files()
    for name, content in payloads.items():
        _open(app)
        _uploader(app).upload(name, content)
        app.run()
        assert_no_exception(app)
        errors = rendered(" ".join(e.value for e in app.error))
        assert name in errors, (name, errors)
        assert len(app.dataframe) == 1  # the table is still there
    assert not (tmp_path / "pwned").exists()
    assert _server_files() == before  # nothing was imported


def test_names_from_a_file_are_shown_as_text_never_as_markdown(app, saved_runs):
    crafted = "![p](https://evil.example/p.png)[Log in](https://evil.example)"
    train_checkpoint("named-run", display_name=crafted)
    _open_run(app, "named-run")
    texts = markdown_texts(app)
    assert any(crafted in rendered(text) for text in texts)  # the name is shown, as the text it is
    assert not any("](" in text for text in texts), [t for t in texts if "](" in t]  # never as a link or image
    assert crafted in set(app.dataframe[0].value["name"])


def test_the_config_shows_a_data_file_by_its_base_name_only(app, saved_runs):
    private = "/tmp/vae_studio_uploads_abcd/0123456789abcdef/data/my digits.npz"
    train_checkpoint("from-an-upload", data=private)
    _open_run(app, "from-an-upload")
    shown = " ".join(j.proto.body for j in app.get("json"))
    assert '"data": "my digits.npz"' in shown
    assert "vae_studio_uploads" not in shown and "0123456789abcdef" not in " ".join(markdown_texts(app))


def test_download_gives_the_file_bytes(app, saved_runs):
    _open(app)
    button = next(b for b in app.get("download_button") if "Download" in b.proto.label)
    assert button.proto.label == "Download .safetensors"


def test_resume_starts_a_job_from_the_checkpoint(app, saved_runs):
    from ui.session import registry

    resumable = train_checkpoint("resume-me")
    _open(app)
    app.selectbox(key="checkpoint_selected").set_value(str(resumable)).run()
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


def test_resume_continues_the_run_of_the_file_given_not_the_id_written_inside_it(app, saved_runs):
    """A file dropped into the folder whose metadata names another run's id: Resume trains the file's
    own run (its name in the folder) and leaves the other run's file as it was."""
    import shutil

    from ui.session import registry

    victim = CHECKPOINTS / "vae-beta1.safetensors"
    before = hashlib.sha256(victim.read_bytes()).hexdigest()
    gift = CHECKPOINTS / "20261201-000000-gift.safetensors"
    shutil.copy(victim, gift)  # inside, its run id is still vae-beta1
    try:
        _open(app)
        app.selectbox(key="checkpoint_selected").set_value(str(gift)).run()
        next(n for n in app.number_input if n.label == "Train until epoch").set_value(3)
        next(b for b in app.button if b.label == "Resume training").click()
        app.run()
        assert_no_exception(app)
        job = registry().get("20261201-000000-gift")
        assert job is not None and job.wait(60) and job.snapshot().epoch == 3
        assert registry().get("vae-beta1") is None
        assert hashlib.sha256(victim.read_bytes()).hexdigest() == before
    finally:
        gift.unlink(missing_ok=True)


def test_delete_asks_first_then_removes_the_file(app, saved_runs):
    doomed = train_checkpoint("doomed")
    _open(app)
    app.selectbox(key="checkpoint_selected").set_value(str(doomed)).run()
    assert doomed.exists()
    next(b for b in app.button if b.label == "Yes, delete it").click()
    app.run()
    assert_no_exception(app)
    assert not doomed.exists()
    assert any("Deleted doomed.safetensors" in rendered(s.value) for s in app.success)


def test_a_deleted_run_trained_here_leaves_every_run_picker(app, saved_runs):
    """The run was trained in this server, so its job is still in memory after it finished."""
    from ui.session import registry, run_data
    from vae_core.config import TrainConfig

    config = TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu")
    job = registry().start(config, run_data(config))
    assert job.wait(60)
    app.switch_page("app_pages/latent.py")
    app.run()
    assert any(job.run_id in key for key in app.selectbox(key="run_picker").options)
    _open_run(app, job.run_id)
    next(b for b in app.button if b.label == "Yes, delete it").click()
    app.run()
    assert_no_exception(app)
    for page in ("app_pages/latent.py", "app_pages/generate.py", "app_pages/theory.py"):
        app.switch_page(page)
        app.run()
        assert_no_exception(app)
        assert not any(job.run_id in key for key in app.selectbox(key="run_picker").options), page


def test_compare_shows_curves_of_each_run_and_samples_from_the_same_z(app, saved_runs):
    _open(app)
    app.multiselect(key="compare_runs").set_value(
        [str(CHECKPOINTS / "vae-beta1.safetensors"), str(CHECKPOINTS / "vae-beta4.safetensors")]
    ).run()
    assert_no_exception(app)
    spec = next(s for s in plotly_specs(app) if any("test −ELBO" in (t.get("name") or "") for t in s["data"]))
    names = [t["name"] for t in spec["data"]]
    assert names == ["vae-beta1", "vae-beta1 test −ELBO", "vae-beta4", "vae-beta4 test −ELBO"]
    assert len(app.get("image")) >= 2


def test_compare_draws_a_conditional_run_and_an_autoencoder_too(app, saved_runs):
    _open(app)
    app.multiselect(key="compare_runs").set_value(
        [str(CHECKPOINTS / "cvae-run.safetensors"), str(CHECKPOINTS / "ae-run.safetensors")]
    ).run()
    assert_no_exception(app)
    captions = rendered(" ".join(c.value for c in app.caption))
    assert "class 0" in captions and "an autoencoder has no ELBO" in captions


def test_a_dangling_link_or_a_link_loop_named_like_a_checkpoint_is_not_a_run(app, saved_runs):
    import os

    dangling, loop = CHECKPOINTS / "dangling.safetensors", CHECKPOINTS / "loop.safetensors"
    os.symlink(CHECKPOINTS / "nowhere", dangling)
    os.symlink(loop, loop)
    try:
        _open(app)
        assert_no_exception(app)
    finally:
        dangling.unlink()
        loop.unlink()
