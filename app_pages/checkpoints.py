"""Checkpoints: the saved runs; download, upload, resume, delete; compare runs side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui import access, session
from ui.curve_controls import compare_chart
from ui.runs import read_checkpoint, run_label
from ui.widgets import class_name, image_grid, nats, plain, show_error
from vae_core.config import limits
from vae_core.errors import VAEStudioError
from vae_core.safetensors_io import format_size

MAX_CHECKPOINT_UPLOAD_MB = 200
CHECKPOINT_SUFFIX = ".safetensors"
SELECTED_KEY = "checkpoint_selected"
TABLE_PAGE_ROWS = 100

st.title("Checkpoints")
st.caption(
    "Every run saves itself here each epoch and when it stops, as one `.safetensors` file: weights, "
    "optimiser and RNG state, history and config. Files are read without unpickling anything. "
    "An uploaded file becomes a run of its own, with a new id: it never replaces a run saved here."
)


def upload_section() -> None:
    # Any type is taken and checked here: with type=["safetensors"] the browser refuses another file
    # with only "files are not allowed.", which names neither the file nor what would be.
    upload = st.file_uploader(
        "Upload a checkpoint (.safetensors)", max_upload_size=MAX_CHECKPOINT_UPLOAD_MB, key="checkpoint_upload"
    )
    if upload is None:
        return
    marker = (upload.name, upload.size, upload.file_id)
    if st.session_state.get("_last_upload") == marker:
        return  # already handled on an earlier rerun
    st.session_state["_last_upload"] = marker
    if not upload.name.lower().endswith(CHECKPOINT_SUFFIX):
        kind = f"a {Path(upload.name).suffix} file" if Path(upload.name).suffix else "a file without an extension"
        st.session_state["_upload_message"] = (
            "error",
            f"{upload.name} is {kind}: only {CHECKPOINT_SUFFIX} checkpoints can be uploaded here, the files "
            "every run saves (a PyTorch .pt, .pth or .ckpt file is a pickle, which can run code when "
            "it is loaded, so it is never opened).",
        )
        return
    refusal = over_upload_quota(upload.name, upload.size)
    if refusal:
        st.session_state["_upload_message"] = ("error", refusal)
        return
    from vae_core.checkpoint import import_checkpoint

    received = session.save_upload(upload, "incoming")
    try:
        # A new run id, whatever the file says: the upload can never overwrite a run saved here.
        checkpoint = import_checkpoint(
            received, session.CHECKPOINT_DIR, file_name=upload.name, owner=access.current_owner()
        )  # the uploader's, whatever the file says
    except VAEStudioError as error:
        st.session_state["_upload_message"] = ("error", str(error))
        return
    finally:
        received.unlink(missing_ok=True)
    select(checkpoint.path, checkpoint.run_id)
    st.session_state["_upload_message"] = (
        "success",
        f"{upload.name}: imported as run {checkpoint.run_id} ({checkpoint.config.model}, epoch "
        f"{checkpoint.state.epoch}), selected below. "
        + ("It is yours alone." if access.served() else "Every tab of this app sees it."),
    )


def over_upload_quota(name: str, size: int) -> str | None:
    """Served, why an upload of `size` bytes would take this person past what they may keep uploaded
    (config.Limits.max_upload_bytes_per_person: their imported runs' files, counted on disk); None when
    it fits, and always locally, where the app and its disk are one person's."""
    if not access.served():
        return None
    quota, used = limits().max_upload_bytes_per_person, uploaded_bytes(access.current_owner())
    if used + size <= quota:
        return None
    return (
        f"{name} ({format_size(size)}) is not imported: your uploaded runs already take {format_size(used)} "
        f"of the {format_size(quota)} each person may keep on this server. Delete one of them first."
    )


def uploaded_bytes(owner: str | None) -> int:
    """What the checkpoints `owner` uploaded weigh on disk: their imported runs still in the folder
    (a resumed one too: it keeps where it came from)."""
    from vae_core.runs import list_runs

    total = 0
    for record in list_runs(session.CHECKPOINT_DIR):
        if owner is not None and record.owner == owner and record.imported_from and record.checkpoint:
            try:
                total += Path(record.checkpoint).stat().st_size
            except OSError:
                continue  # deleted meanwhile: it takes nothing
    return total


def select(path: str, run_id: str) -> None:
    """Make a run the one this page, the run pickers and the URL show."""
    st.session_state[SELECTED_KEY] = str(path)
    session.set_current_run(run_id)


def _rounded(value):
    return None if value is None else round(value, 2)


def saved_runs() -> list:
    """The runs of the folder that have a checkpoint and that this session may see (ui/access.py),
    newest first, from their headers alone (vae_core/runs.py: indexed, so a folder of thousands of
    runs lists in a fraction of a second); unreadable ones too where they are shown."""
    from vae_core.runs import list_runs

    records = [
        record for record in access.visible_records(list_runs(session.CHECKPOINT_DIR)) if record.checkpoint is not None
    ]
    return sorted(records, key=lambda record: record.mtime, reverse=True)


def runs_table(records: list) -> list:
    """One page of the table, newest first; returns its records. Cells are plain text, so a name read
    from a file shows as it is."""
    page_count = max(1, -(-len(records) // TABLE_PAGE_ROWS))
    page = 1
    if page_count > 1:
        page = int(
            st.number_input(
                f"Page (of {page_count}, {TABLE_PAGE_ROWS} runs each, newest first)",
                1,
                page_count,
                1,
                key="checkpoints_page",
            )
        )
    rows, shown = [], records[(page - 1) * TABLE_PAGE_ROWS : page * TABLE_PAGE_ROWS]
    for record in shown:
        if record.error is not None:
            rows.append({"run": record.run_id, "status": "unreadable", "error": record.error})
            continue
        config, origin = record.config, record.imported_from
        variational = config.get("model") != "ae"
        try:
            size = round(Path(record.checkpoint).stat().st_size / 1e6, 2)
        except OSError:
            size = None
        rows.append(
            {
                "run": record.run_id,
                "name": record.name,
                "status": record.status,
                "model": config.get("model"),
                "dataset": record.dataset,
                "z": config.get("latent_dim"),
                "β": record.in_force("beta") if variational else None,
                "recon": config.get("recon"),
                "epoch": record.epoch,
                "test −ELBO": _rounded(record.metrics.get("test_neg_elbo")) if variational else None,
                "test recon": _rounded(record.metrics.get("test_recon")),
                "active units": record.metrics.get("active_units"),
                "MB": size,
                "origin": f"upload of {origin.get('file_name')}" if origin else "trained here",
                "changed while training": record.live_changes(),
            }
        )
    if not any(row.get("changed while training") for row in rows):
        for row in rows:
            row.pop("changed while training", None)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        "An autoencoder (model `ae`) has no prior and no KL, so no ELBO: its β and test −ELBO are "
        "blank, and its test reconstruction error is what it has. β is the one in force at the last save."
    )
    return shown


def shown_config(checkpoint) -> dict:
    """The config as the file has it, except a data path, shown by its base name: an upload's full
    path names this server's private folders."""
    config = checkpoint.config.to_dict()
    config["data"] = Path(config["data"]).name
    return config


def details(path: Path, checkpoint) -> None:
    st.subheader("Run " + plain(run_label(checkpoint.name, checkpoint.run_id)))
    if checkpoint.imported_from:
        origin = checkpoint.imported_from
        st.caption(
            "Imported from "
            + plain(origin.get("file_name"))
            + (" (run " + plain(origin["run_id"]) + " there)" if origin.get("run_id") else "")
        )
    c1, c2 = st.columns([3, 2])
    with c1:
        st.markdown("**Config**")
        st.json(shown_config(checkpoint), expanded=True)
    with c2:
        st.download_button(
            "Download .safetensors",
            data=path.read_bytes,
            file_name=path.name,
            mime="application/octet-stream",
            on_click="ignore",
            width="stretch",
            key=f"download_{path}",
        )
        if access.can_control(checkpoint.owner):
            resume_form(path, checkpoint)
            delete_form(path, checkpoint)
        else:
            st.caption("A shared run of this server: you can open, decode and download it, not resume or delete it.")


def resume_form(path: Path, checkpoint) -> None:
    """Resume the run of this file: its id is the file's own name in the folder, never the id written
    inside it (a file dropped in could name another run's id, and overwrite that run's file)."""
    run_id = path.stem
    with st.form(f"resume_{run_id}", border=False):
        epochs = st.number_input(
            "Train until epoch",
            checkpoint.state.epoch + 1,
            max(limits().max_epochs, checkpoint.state.epoch + 1),
            max(checkpoint.config.epochs, checkpoint.state.epoch + 1)
            if checkpoint.state.epoch < checkpoint.config.epochs
            else checkpoint.state.epoch + 5,
        )
        if st.form_submit_button("Resume training", width="stretch"):
            from vae_core.checkpoint import check_resumable

            try:
                config = checkpoint.config.replace(epochs=int(epochs))
                data = session.run_data(config)
                check_resumable(checkpoint, data)
                registry = session.registry()
                if registry.get(run_id) is not None:
                    registry.forget(run_id)
                job = registry.start(
                    config,
                    data,
                    run_id=run_id,
                    state=checkpoint.state,
                    name=checkpoint.name or None,
                    owner=checkpoint.owner,
                )
            except VAEStudioError as error:
                show_error(error)
                return
            session.set_current_run(job.run_id)
            st.switch_page("app_pages/train.py", query_params={session.RUN_PARAM: job.run_id})


def delete_form(path: Path, checkpoint) -> None:
    from vae_core.runs import read_run

    registry = session.registry()
    job = registry.get(path.stem)
    record = read_run(session.CHECKPOINT_DIR, path.stem)
    if (job is not None and job.alive) or (record is not None and record.live):
        st.caption("This run is training; stop it before deleting its file.")
        return
    with st.popover("Delete…", width="stretch"):
        st.write("Delete **" + plain(path.name) + "** for good?")
        if st.button("Yes, delete it", type="primary", key=f"delete_{path}"):
            path.unlink(missing_ok=True)
            if job is not None:
                registry.forget(path.stem)  # out of every run picker too
            if session.current_run_id() == path.stem:
                session.set_current_run(None)
            st.session_state["_upload_message"] = ("success", f"Deleted {path.name}.")
            st.rerun()


def compare(records: dict) -> None:
    from ui.charts import ComparedRun
    from vae_core.generate import prior_samples

    st.header("Compare runs")
    labels = {
        path: f"{run_label(r.display_name, r.run_id)} ({r.config.get('model')}, "
        f"β={r.changed('beta') or format(r.config.get('beta', 0), 'g')}, z={r.config.get('latent_dim')})"
        for path, r in records.items()
    }
    # A chosen run's chip wraps its label rather than cut it: at 900 px a name, id and settings did not fit.
    chips = ".st-key-compare_runs [data-testid='stMultiSelectTagsContainer'] span"
    st.markdown(f"<style>{chips} {{ white-space: normal; height: auto; }}</style>", unsafe_allow_html=True)
    chosen = st.multiselect("Runs", list(labels), format_func=labels.get, default=list(labels)[:2], key="compare_runs")
    if not chosen:
        return
    readable = {}
    for path in chosen:  # only the runs compared are read whole
        try:
            readable[path] = read_checkpoint(Path(path))
        except (OSError, VAEStudioError) as error:
            show_error(error)
            return
    metric = st.segmented_control(
        "Curve",
        ["total", "recon", "kl"],
        default="total",
        key="compare_metric",
        format_func={"total": "total loss", "recon": "reconstruction", "kl": "KL"}.get,
    )
    histories = {p: readable[p].state.history for p in chosen}
    compare_chart(
        [
            ComparedRun(
                run_label(readable[p].name, readable[p].run_id),
                histories[p].curves(),
                histories[p].epochs,
                histories[p].steps_per_epoch,
                histories[p].events,
            )
            for p in chosen
        ],
        metric or "total",
        key="checkpoints_compare",
    )
    st.markdown(
        "**Samples from the same z** (seed 0; runs with the same latent size share every z; a "
        "conditional run decodes its first class)"
    )
    columns = st.columns(len(chosen))
    for column, p in zip(columns, chosen):
        checkpoint = readable[p]
        model = checkpoint.build_model()
        label = 0 if model.conditional else None
        last = checkpoint.state.history.epochs[-1] if checkpoint.state.history.epochs else {}
        score = (
            f"test −ELBO {nats(last.get('test_neg_elbo'))}"
            if model.variational
            else f"test reconstruction {nats(last.get('test_recon'))} (an autoencoder has no ELBO)"
        )
        if model.conditional:
            score += f" · class {class_name(0, checkpoint.dataset.class_names)}"
        with column:
            st.caption(plain(labels[p]) + " · " + plain(score))
            image_grid(prior_samples(model, 16, seed=0, label=label), 4)


upload_section()
message = st.session_state.pop("_upload_message", None)
if message:
    (show_error if message[0] == "error" else lambda text: st.success(plain(text)))(message[1])

records = saved_runs()
if not records:
    st.info("No checkpoints yet: train a run on the Train page, or upload a `.safetensors` file above.")
    st.stop()
shown = runs_table(records)
# What the pickers offer: the runs of the table's page, and the session's run wherever it is (a
# select box of 50,000 names would cost more than the page).
current_id = session.current_run_id()
current_record = next((r for r in records if r.run_id == current_id), None)
offered = shown + ([current_record] if current_record is not None and current_record not in shown else [])
readable = {record.checkpoint: record for record in offered if record.error is None}
if readable:
    paths = list(readable)
    current = session.current_run_id()
    of_current = next((p for p in paths if Path(p).stem == current), None)
    if current and of_current is None:
        # Never another run in its place (the id is not repeated: served, a link must tell nothing).
        st.info(
            "The run this page's link names has no checkpoint here yet: it appears once its first epoch has "
            "ended. Pick a run below to open it.",
            icon=":material/hourglass_top:",
        )
    if st.session_state.get(SELECTED_KEY) not in paths or (of_current and st.session_state[SELECTED_KEY] != of_current):
        st.session_state[SELECTED_KEY] = of_current or paths[0]  # follows the run of the URL, a start or an upload
    selected = st.selectbox(
        "Run",
        paths,
        key=SELECTED_KEY,
        format_func=lambda p: run_label(readable[p].display_name, readable[p].run_id),
        on_change=lambda: session.set_current_run(Path(st.session_state[SELECTED_KEY]).stem),
    )
    try:
        checkpoint = read_checkpoint(Path(selected))  # the one run shown in full
    except (OSError, VAEStudioError) as error:
        show_error(error)
    else:
        details(Path(selected), checkpoint)
    compare(readable)
