"""A fresh server draws the Train form without torch: the form lists datasets, models and devices
from torch-free modules, and the engine loads in the background (ui/session.py's warm-up) or when a
run is shown. Run in a fresh interpreter, since the test process has long imported torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

from apphelpers import APP, TIMEOUT

ROOT = Path(APP).parent

FIRST_RENDER = f"""
import json, sys
from streamlit.testing.v1 import AppTest
app = AppTest.from_file({APP!r}, default_timeout={TIMEOUT}).run()
print(json.dumps({{
    "exceptions": [str(e.value) for e in app.exception],
    "buttons": [b.label for b in app.button],
    "selects": {{s.label: list(s.options) for s in app.selectbox}},
    "heavy_modules": sorted(m for m in ("torch", "vae_core.models", "vae_core.trainer", "vae_core.jobs")
                           if m in sys.modules),
}}))
"""


def test_the_train_form_draws_without_importing_torch(tmp_path):
    env = {**os.environ, "VAE_STUDIO_WARM_UP": "0", "VAE_STUDIO_CHECKPOINTS": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", FIRST_RENDER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["exceptions"] == []
    assert "Start training" in seen["buttons"]
    assert seen["heavy_modules"] == []  # torch and the engine wait for the warm-up or for a run
    selects = seen["selects"]
    assert selects["Dataset"][0] == "mnist-sample"
    assert [option.split(" — ")[0] for option in selects["Model"]] == ["mlp", "conv", "ae", "cvae", "vqvae"]
    assert selects["Device"][:2] == ["auto", "cpu"]  # the rest once the warm-up has looked


def test_a_device_choice_survives_the_warm_up_finding_more_devices(app, monkeypatch):
    from test_train_page import _set_small_run, _start

    from ui import session

    _set_small_run(app.run(), epochs=1)
    device = next(s for s in app.selectbox if s.label == "Device")
    assert device.options == ["auto", "cpu"]
    device.set_value("cpu")
    _start(app)  # a form's choices reach the server when it is submitted
    assert next(s for s in app.selectbox if s.label == "Device").value == "cpu"
    monkeypatch.setattr(session, "_devices_found", ("cuda", "cpu"))  # what the warm-up finds on a GPU machine
    app.run()
    device = next(s for s in app.selectbox if s.label == "Device")
    assert device.options == ["auto", "cuda", "cpu"] and device.value == "cpu"


FIRST_START = f"""
import json, sys, time
from streamlit.testing.v1 import AppTest
from ui import session
app = AppTest.from_file({APP!r}, default_timeout={TIMEOUT}).run()
# A first epoch of seconds (281 steps of a wide model): the page below is the one Start draws once the
# run's first points have come, before its first checkpoint (whose header the sidebar reads with torch).
next(t for t in app.text_input if t.label == "Hidden sizes").set_value("1024 1024 1024")
{{s.label: s for s in app.select_slider}}["Batch size"].set_value(16)
next(b for b in app.button if b.label == "Start training").click()
app.run()
(job,) = session.registry().jobs()
print(json.dumps({{
    "step": job.snapshot().step,
    "epoch": job.snapshot().epoch,
    "exceptions": [str(e.value) for e in app.exception],
    "errors": [str(e.value) for e in app.error],
    "status": job.snapshot().status,
    "run_shown": any(job.run_id in str(m.value) for m in app.markdown),
    "heavy_modules": sorted(m for m in ("torch", "vae_core.models", "vae_core.trainer", "vae_core.jobs")
                           if m in sys.modules),
}}))
session.registry().stop_all()
"""


def test_start_on_a_fresh_server_trains_a_run_without_importing_torch_here(tmp_path):
    """The Train form's Start with the app's own executor (a run process): the run process checks the
    run and trains it, and the server shows it live, all before (and without) importing torch."""
    from vae_core.run_process import end_run_processes

    env = {
        **os.environ,
        "VAE_STUDIO_WARM_UP": "0",
        "VAE_STUDIO_EXECUTOR": "process",
        "VAE_STUDIO_CHECKPOINTS": str(tmp_path),
    }
    try:
        result = subprocess.run(
            [sys.executable, "-c", FIRST_START], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
    finally:
        end_run_processes(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert (seen["exceptions"], seen["errors"]) == ([], [])
    assert seen["status"] == "running" and seen["step"] > 0 and seen["epoch"] == 0 and seen["run_shown"]
    assert seen["heavy_modules"] == []
