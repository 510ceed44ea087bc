"""What the app tests share: an isolated checkpoint folder (set before the app is imported), small
real runs trained on scikit-learn's digits, and readers for what AppTest exposes."""

import os
import tempfile
from pathlib import Path

# Before ui.session is imported anywhere: the app reads its checkpoint folder from here.
CHECKPOINTS = Path(tempfile.mkdtemp(prefix="vae_studio_app_tests_"))
os.environ["VAE_STUDIO_CHECKPOINTS"] = str(CHECKPOINTS)
os.environ["VAE_STUDIO_WARM_UP"] = "0"  # no UMAP compilation in the background of every AppTest
# AppTest neither waits for a run process nor needs one: the pages' tests step tiny runs on this
# process's threads. The run process itself is tested in tests/unit/test_run_processes.py, through
# the real app in tests/e2e and tests/reliability/test_server_restart.py.
os.environ["VAE_STUDIO_EXECUTOR"] = "thread"

APP = str(Path(__file__).resolve().parents[1] / "router.py")  # the script; app.py serves it
TIMEOUT = 60


def train_checkpoint(name: str, *, display_name: str | None = None, **overrides) -> Path:
    """A small finished run on digits saved as CHECKPOINTS/<name>.safetensors (run id `name`);
    `overrides` change its config (the data stays digits whatever config.data says)."""
    from vae_core.checkpoint import save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.loop import run_to_end
    from vae_core.trainer import Trainer

    config = TrainConfig(
        **{**dict(data="digits", hidden=(32,), latent_dim=2, batch_size=128, epochs=2, device="cpu"), **overrides}
    )
    trainer = Trainer(config, load_dataset("digits"))
    run_to_end(trainer)
    return save_trainer_checkpoint(trainer, name, "finished", CHECKPOINTS / f"{name}.safetensors", name=display_name)


def open_page(app, page: str):
    app.switch_page(page)
    return app.run()


def assert_no_exception(app):
    assert not app.exception, [e.value for e in app.exception]


def plotly_specs(app) -> list[dict]:
    import json

    return [json.loads(c.proto.spec) for c in app.get("plotly_chart")]


def trace_values(values) -> list:
    """Plotly 7 sends numeric arrays as base64 typed arrays ({'dtype', 'bdata'}); decode either form."""
    import base64

    import numpy as np

    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).tolist()
    return list(values)


MARKDOWN_ELEMENTS = ("markdown", "caption", "title", "header", "subheader", "success", "error", "warning", "info")


def markdown_texts(app) -> list[str]:
    """The Markdown source of every element Streamlit renders as Markdown."""
    return [element.value for kind in MARKDOWN_ELEMENTS for element in app.get(kind)]


def rendered(markdown: str) -> str:
    """Markdown source with its backslash escapes removed: roughly the text a person reads."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown)


def rerun_until(app, page: str, run: str, drawn, what: str, timeout: float = 60.0):
    """Open `page` on `run` and rerun it until `drawn(app)` holds: AppTest does not run fragment
    timers, so work a page does in the background (a projection) shows only on a later run."""
    import time

    app.switch_page(page)
    app.query_params["run"] = run
    deadline = time.monotonic() + timeout
    while True:
        app.run()
        assert_no_exception(app)
        if drawn(app):
            return app
        assert time.monotonic() < deadline, f"the page never drew {what}"
        time.sleep(0.2)


def page_text(session) -> str:
    """What a person reads: Markdown, the sidebar's, and every select box's options."""
    options = [str(option) for box in session.selectbox for option in box.options]
    return rendered(" ".join(markdown_texts(session) + options))
