"""Checkpoints page: a file of another type is refused by the page itself, with a message naming the
file, its type and the type accepted (the browser's own refusal said only "files are not allowed.")."""

import pytest
from apphelpers import CHECKPOINTS, assert_no_exception, rendered


def _open(app):
    app.switch_page("app_pages/checkpoints.py")
    return app.run()


@pytest.mark.parametrize(
    "name, kind",
    [("model.pt", "a .pt file"), ("weights.ckpt", "a .ckpt file"), ("notes", "a file without an extension")],
)
def test_a_file_of_another_type_is_named_with_its_type_and_the_accepted_one(app, saved_runs, name, kind):
    before = sorted(path.name for path in CHECKPOINTS.iterdir())
    _open(app)
    uploader = next(u for u in app.file_uploader if "checkpoint" in u.label.lower())
    assert uploader.proto.type == []  # any type reaches the page, which says what is wrong
    uploader.upload(name, b"\x80\x04 not a checkpoint")
    app.run()
    assert_no_exception(app)
    errors = [rendered(error.value) for error in app.error]
    assert len(errors) == 1 and errors[0].startswith(
        f"{name} is {kind}: only .safetensors checkpoints can be uploaded here"
    ), errors
    assert sorted(path.name for path in CHECKPOINTS.iterdir()) == before  # nothing imported
    assert len(app.dataframe) == 1  # the table is still there


def test_a_safetensors_name_in_capitals_is_taken_as_one(app, saved_runs):
    before = set(CHECKPOINTS.iterdir())
    _open(app)
    uploader = next(u for u in app.file_uploader if "checkpoint" in u.label.lower())
    uploader.upload("COPY.SAFETENSORS", (CHECKPOINTS / "vae-beta4.safetensors").read_bytes())
    try:
        app.run()
        assert_no_exception(app)
        assert not app.error and any("COPY.SAFETENSORS: imported as run" in rendered(s.value) for s in app.success)
    finally:  # the folder is shared by the tests: the imported run goes
        for path in set(CHECKPOINTS.iterdir()) - before:
            path.unlink()
