"""The Train page is the run's page for any run, in Chromium: a run started in the app trains in a
process of its own, outlives a SIGKILL of its server, and the restarted server shows it live on the
Train page (curves, progress) and stops it through the checkpoints folder; a run of the CLI is
followed live on the same page, with its reconstruction and KL curves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import VIEWPORT, serve
from e2e_helpers import (
    PAGE_TIMEOUT_MS,
    ROOT,
    assert_no_exception,
    loss_points,
    progress,
    recon_and_kl_steps,
    start_training,
    wait_for_app,
    wait_for_run,
    wait_until,
)

from vae_core.run_process import end_run_processes, run_process_ids


def _open(browser, server, query: str):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{server.url}/?{query}")
    wait_for_app(page)
    return context, page


def test_a_run_outlives_its_server_and_the_restarted_server_shows_and_stops_it(browser, tmp_path, request):
    with serve(tmp_path, log_name="server-before-kill.log", end_runs=False) as (server, _):
        request.node._e2e_server = server
        context, page = _open(browser, server, "")
        start_training(page, dataset="digits", long_run=True)  # 200 epochs at batch 16: minutes
        run_id = wait_for_run(page)
        wait_until(page, lambda: (p := progress(page)) and p["step"] > 0, timeout_s=60, message="a first step")
        context.close()
        assert run_process_ids(tmp_path)
        os.killpg(server.process.pid, signal.SIGKILL)  # no clean shutdown: the server's process group dies
        server.process.wait()
    try:
        orphans = run_process_ids(tmp_path)
        assert orphans, "the run's process died with its server"
        with serve(tmp_path, log_name="server-after-kill.log") as (server, _):
            request.node._e2e_server = server
            context, page = _open(browser, server, f"run={run_id}")
            first = wait_until(
                page,
                lambda: (p := progress(page)) and p["status"] == "running" and p,
                timeout_s=60,
                message="the run shown running by the restarted server",
            )
            assert first["epochs"] == 200
            wait_until(
                page,
                lambda: (p := progress(page)) and p["step"] > first["step"],
                timeout_s=60,
                message="its step count advancing, live",
            )
            wait_until(page, lambda: recon_and_kl_steps(page), timeout_s=10, message="reconstruction and KL curves")
            assert "outlived the server that started it" in page.inner_text("body")
            page.get_by_role("button", name="Stop", exact=True).click()  # through the folder: no pipe to it
            stopped = wait_until(
                page,
                lambda: (p := progress(page)) and p["status"] == "stopped" and p,
                timeout_s=60,
                message="the run stopped from the restarted server",
            )
            assert stopped["step"] < stopped["total_steps"]
            wait_until(
                page,
                lambda: not set(orphans) & set(run_process_ids(tmp_path)),
                timeout_s=30,
                message="its process gone once the folder's queue is empty",
            )
            assert_no_exception(page)
            context.close()
    finally:
        end_run_processes(tmp_path)


def test_a_cli_run_is_followed_live_on_the_train_page(browser, tmp_path, request):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vae_core",
            "train",
            "--data",
            "digits",
            "--hidden",
            "16",
            "--latent-dim",
            "2",
            "--batch-size",
            "16",
            "--epochs",
            "200",
            "--quiet",
            "--out-dir",
            str(tmp_path),
            "--name",
            "cli run on the train page",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with serve(tmp_path, log_name="server-cli-run.log") as (server, _):
            request.node._e2e_server = server
            run_id = wait_until_file(tmp_path)
            context, page = _open(browser, server, f"run={run_id}")
            first = wait_until(
                page,
                lambda: (p := progress(page)) and p["status"] == "running" and p,
                timeout_s=90,
                message="the CLI run shown running",
            )
            later = wait_until(
                page,
                lambda: (p := progress(page)) and p["step"] > first["step"] and p,
                timeout_s=60,
                message="its step count advancing without a reload",
            )
            assert later["epochs"] == 200
            counts = wait_until(
                page,
                lambda: (c := loss_points(page)).get("KL", 0) > 0 and c,
                timeout_s=30,
                message="its reconstruction and KL curves",
            )
            assert counts.get("reconstruction", 0) > 0
            assert "Trained by another process" in page.inner_text("body")
            assert_no_exception(page)
            context.close()
    finally:
        process.kill()
        process.wait(timeout=30)


def wait_until_file(folder) -> str:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        records = list(folder.glob("*.progress.json"))
        if records:
            return records[0].name.removesuffix(".progress.json")
        time.sleep(0.1)
    raise AssertionError("the CLI run wrote no progress record")
