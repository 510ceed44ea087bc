"""The Checkpoints page in a real browser: download, upload, resume, and a bad upload."""

from __future__ import annotations

import json
import os
import re
import struct

from e2e_helpers import (
    SEED_RUN,
    assert_no_exception,
    button,
    choose,
    expect,
    go_to,
    progress,
    save_screenshot,
    shown_run_id,
    stop_run,
    url_run_id,
    wait_for_app,
    wait_for_status,
    wait_for_step_beyond,
    wait_until,
)

SEED_FILE = f"{SEED_RUN}.safetensors"
UPLOAD_NAME = "e2e-upload.safetensors"


def uploader(page):
    return page.locator('[data-testid="stFileUploader"]').filter(has_text="Upload a checkpoint")


def safetensors_header(data: bytes) -> dict:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size])


def test_download_upload_and_resume_a_checkpoint(open_app, app_server, runs, tmp_path):
    """Journey 6: the file downloads byte for byte, uploads back, and training resumes from it."""
    page = open_app()
    go_to(page, "Checkpoints", "Checkpoints")
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    choose(page, "Run", SEED_RUN)
    expect(page.get_by_role("heading", name=f"Run {SEED_RUN}", exact=True)).to_be_visible()

    with page.expect_download() as download_info:
        button(page, "Download .safetensors").click()
    download = download_info.value
    assert download.failure() is None, download.failure()
    assert download.suggested_filename == SEED_FILE
    saved = tmp_path / UPLOAD_NAME
    download.save_as(saved)
    data = saved.read_bytes()
    assert data == (app_server.checkpoints / SEED_FILE).read_bytes()
    assert "__metadata__" in safetensors_header(data)

    uploader(page).locator('input[type="file"]').set_input_files(str(saved))
    success = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text=UPLOAD_NAME)
    expect(success).to_be_visible()
    imported = re.search(r"imported as run (\S+) \(", success.inner_text())
    assert imported, success.inner_text()
    new_id = imported.group(1)
    assert new_id != SEED_RUN  # the upload carries the seed run's id: it becomes a run of its own
    assert (app_server.checkpoints / SEED_FILE).read_bytes() == data  # the server's file is untouched
    # The upload is selected at once, so Resume resumes it and nothing else.
    expect(page.get_by_role("heading", name=f"Run {new_id}", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Imported from {UPLOAD_NAME} (run {SEED_RUN} there)")).to_be_visible()
    assert_no_exception(page)
    page.wait_for_timeout(500)  # the table's canvas paints
    save_screenshot(page, "checkpoints")

    until = page.get_by_label("Train until epoch")
    until.fill("400")  # a run that is still going when we look
    page.wait_for_timeout(300)
    expect(until).to_have_value("400")
    button(page, "Resume training").click()

    expect(page.get_by_role("heading", name="Train a VAE", exact=True)).to_be_visible()
    wait_for_app(page)
    runs.append(new_id)
    assert url_run_id(page) == new_id, page.url
    wait_until(page, lambda: shown_run_id(page) == new_id, message=f"'Run {new_id}' on the Train page")
    state = wait_for_status(page, "running")
    assert state["epochs"] == 400 and state["epoch"] >= 30 and state["step"] > 0, state  # resumed, not restarted
    wait_for_step_beyond(page, state["step"])
    assert_no_exception(page)
    assert stop_run(page)["status"] == "stopped"
    assert (app_server.checkpoints / SEED_FILE).read_bytes() == data


def test_bad_upload_is_refused_with_a_clear_error(open_app, tmp_path):
    """Journey 6b: random bytes named .safetensors give an error naming the file; the app keeps working."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(os.urandom(4096))
    page = open_app()
    go_to(page, "Checkpoints", "Checkpoints")

    uploader(page).locator('input[type="file"]').set_input_files(str(bad))
    error = page.locator('[data-testid="stAlertContentError"]').filter(has_text="bad.safetensors")
    expect(error).to_be_visible()
    assert len(error.inner_text().strip()) > len("bad.safetensors"), error.inner_text()  # says what is wrong
    assert_no_exception(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()  # the saved runs are still listed

    go_to(page, "Train", "Train a VAE")
    assert_no_exception(page)
    go_to(page, "Checkpoints", "Checkpoints")
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    assert_no_exception(page)
    assert progress(page) is None
