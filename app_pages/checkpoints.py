"""Checkpoints: the saved runs; download, upload, resume, delete; compare runs side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui import charts, session
from ui.runs import checkpoint_files, read_checkpoint
from ui.widgets import image_grid, nats
from vae_core.checkpoint import check_resumable, load_checkpoint
from vae_core.errors import VAEStudioError
from vae_core.generate import prior_samples

MAX_CHECKPOINT_UPLOAD_MB = 200

st.title("Checkpoints")
st.caption("Every run saves itself here each epoch and when it stops, as one `.safetensors` file: weights, "
           "optimiser and RNG state, history and config. Files are read without unpickling anything.")


def upload_section() -> None:
    upload = st.file_uploader("Upload a checkpoint (.safetensors)", type=["safetensors"],
                              max_upload_size=MAX_CHECKPOINT_UPLOAD_MB, key="checkpoint_upload")
    if upload is None:
        return
    marker = (upload.name, upload.size, upload.file_id)
    if st.session_state.get("_last_upload") == marker:
        return  # already handled on an earlier rerun
    st.session_state["_last_upload"] = marker
    raw = upload.getvalue()
    try:
        checkpoint = load_checkpoint(raw, name=upload.name)
    except VAEStudioError as error:
        st.session_state["_upload_message"] = ("error", str(error))
        return
    folder = session.private_dir() / "checkpoints"
    folder.mkdir(exist_ok=True)
    target = folder / f"{Path(upload.name).stem}.safetensors"
    target.write_bytes(raw)
    st.session_state["_upload_message"] = ("success", f"{upload.name}: run {checkpoint.run_id}, "
                                                      f"{checkpoint.config.model}, epoch {checkpoint.state.epoch}. "
                                                      "It is listed below, for this browser session only.")


def runs_table(files: list[Path]) -> dict[str, object]:
    """Reads every checkpoint (cached); unreadable ones are listed with their error."""
    rows, readable = [], {}
    for path in files:
        try:
            checkpoint = read_checkpoint(path)
        except VAEStudioError as error:
            rows.append({"file": path.name, "status": "unreadable", "error": str(error)})
            continue
        readable[str(path)] = checkpoint
        summary = checkpoint.summary()
        rows.append({"file": path.name, "status": summary["status"], "model": summary["model"],
                     "dataset": summary["dataset"], "z": summary["latent_dim"], "β": summary["beta"],
                     "recon": summary["recon"], "epoch": summary["epoch"],
                     "test −ELBO": None if summary["test_neg_elbo"] is None else round(summary["test_neg_elbo"], 2),
                     "active units": summary["active_units"],
                     "MB": round(path.stat().st_size / 1e6, 2),
                     "owner": "you (upload)" if session.private_dir() in path.parents else "server"})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    return readable


def details(path: Path, checkpoint) -> None:
    st.subheader(f"Run {checkpoint.run_id}")
    c1, c2 = st.columns([3, 2])
    with c1:
        st.markdown("**Config**")
        st.json(checkpoint.config.to_dict(), expanded=True)
    with c2:
        st.download_button("Download .safetensors", data=path.read_bytes, file_name=path.name,
                           mime="application/octet-stream", on_click="ignore", width="stretch",
                           key=f"download_{path}")
        resume_form(checkpoint)
        delete_form(path, checkpoint)


def resume_form(checkpoint) -> None:
    with st.form(f"resume_{checkpoint.run_id}", border=False):
        epochs = st.number_input("Train until epoch", checkpoint.state.epoch + 1, 100_000,
                                 max(checkpoint.config.epochs, checkpoint.state.epoch + 1) if
                                 checkpoint.state.epoch < checkpoint.config.epochs else checkpoint.state.epoch + 5)
        if st.form_submit_button("Resume training", width="stretch"):
            try:
                config = checkpoint.config.replace(epochs=int(epochs))
                data = session.dataset(config.data, config.image_size, config.test_fraction, config.seed)
                check_resumable(checkpoint, data)
                registry = session.registry()
                if registry.get(checkpoint.run_id) is not None:
                    registry.forget(checkpoint.run_id)
                job = registry.start(config, data, run_id=checkpoint.run_id, state=checkpoint.state)
            except VAEStudioError as error:
                st.error(str(error), icon=":material/warning:")
                return
            session.set_current_run(job.run_id)
            st.switch_page("app_pages/train.py", query_params={session.RUN_PARAM: job.run_id})


def delete_form(path: Path, checkpoint) -> None:
    job = session.registry().get(checkpoint.run_id)
    if job is not None and job.alive:
        st.caption("This run is training; stop it before deleting its file.")
        return
    with st.popover("Delete…", width="stretch"):
        st.write(f"Delete **{path.name}** for good?")
        if st.button("Yes, delete it", type="primary", key=f"delete_{path}"):
            path.unlink(missing_ok=True)
            st.session_state["_upload_message"] = ("success", f"Deleted {path.name}.")
            st.rerun()


def compare(readable: dict) -> None:
    st.header("Compare runs")
    labels = {p: f"{Path(p).stem} ({c.config.model}, β={c.state.beta:g}, z={c.config.latent_dim})"
              for p, c in readable.items()}
    chosen = st.multiselect("Runs", list(labels), format_func=labels.get, default=list(labels)[:2],
                            key="compare_runs")
    if not chosen:
        return
    metric = st.segmented_control("Curve", ["total", "recon", "kl"], default="total", key="compare_metric",
                                  format_func={"total": "total loss", "recon": "reconstruction", "kl": "KL"}.get)
    runs = [(Path(p).stem, readable[p].state.history.curves(), readable[p].state.history.epochs) for p in chosen]
    st.plotly_chart(charts.compare_figure(runs, metric or "total"), key="compare_chart")
    st.markdown("**Samples from the same z** (seed 0; runs with the same latent size share every z)")
    columns = st.columns(len(chosen))
    for column, p in zip(columns, chosen):
        checkpoint = readable[p]
        with column:
            last = checkpoint.state.history.epochs[-1] if checkpoint.state.history.epochs else {}
            st.caption(f"{labels[p]} · test −ELBO {nats(last.get('test_neg_elbo'))}")
            image_grid(prior_samples(checkpoint.build_model(), 16, seed=0), 4)


upload_section()
message = st.session_state.pop("_upload_message", None)
if message:
    (st.error if message[0] == "error" else st.success)(message[1])

files = checkpoint_files()
if not files:
    st.info("No checkpoints yet: train a run on the Train page, or upload a `.safetensors` file above.")
    st.stop()
readable = runs_table(files)
if readable:
    paths = list(readable)
    selected = st.selectbox("Run", paths, format_func=lambda p: Path(p).name, key="checkpoint_selected")
    details(Path(selected), readable[selected])
    compare(readable)
