"""Every page opens with no exception, with and without runs, through the app's own navigation;
the run stays in the URL from page to page; a crafted ?run= is never rendered."""

import os
import stat
import tempfile

import pytest
from apphelpers import CHECKPOINTS, assert_no_exception, markdown_texts, open_page

PAGES = [
    "app_pages/train.py",
    "app_pages/latent.py",
    "app_pages/generate.py",
    "app_pages/checkpoints.py",
    "app_pages/theory.py",
]
TITLES = {
    "app_pages/train.py": "Train a VAE",
    "app_pages/latent.py": "Latent space",
    "app_pages/generate.py": "Generate",
    "app_pages/checkpoints.py": "Checkpoints",
    "app_pages/theory.py": "Theory, with your run's numbers",
}


@pytest.mark.parametrize("page", PAGES)
def test_page_opens_with_runs(app, saved_runs, page):
    open_page(app, page)
    assert_no_exception(app)
    assert app.title[0].value == TITLES[page]


def test_there_is_no_legacy_pages_folder():
    """A folder named pages/ next to app.py puts Streamlit in its file-name navigation mode."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert not os.path.exists(os.path.join(root, "pages"))


def test_pages_without_any_run_say_what_to_do(app, tmp_path, monkeypatch):
    import ui.session as session

    monkeypatch.setattr(session, "CHECKPOINT_DIR", tmp_path)
    for page in ("app_pages/latent.py", "app_pages/generate.py"):
        open_page(app, page)
        assert_no_exception(app)
        assert [i.value for i in app.info] == [
            "No run yet. Train one on the **Train** page, or upload a checkpoint on **Checkpoints**."
        ]
        assert not app.get("plotly_chart") and not app.get("image")
    open_page(app, "app_pages/checkpoints.py")
    assert any(i.value.startswith("No checkpoints yet") for i in app.info)
    assert not app.dataframe


def test_the_run_stays_in_the_url_from_page_to_page(app, saved_runs):
    app.query_params["run"] = "vae-beta4"
    app.run()
    for page in PAGES[1:] + PAGES[:1]:
        app.switch_page(page)  # as the sidebar does: Streamlit clears the query parameters
        app.query_params.clear()
        app.run()
        assert_no_exception(app)
        assert app.query_params["run"] in ("vae-beta4", ["vae-beta4"]), page
    app.switch_page("app_pages/generate.py")
    app.query_params.clear()
    app.run()
    assert app.selectbox(key="run_picker").value.endswith("vae-beta4.safetensors")


def test_a_crafted_run_in_the_url_is_ignored_and_never_rendered(app, saved_runs):
    crafted = "[Session expired, log in again](https://evil.example/login) ![](https://evil.example/p.png)"
    for page in PAGES:
        app.switch_page(page)
        app.query_params["run"] = crafted
        app.run()
        assert_no_exception(app)
        assert not any("evil.example" in text for text in markdown_texts(app)), page
        assert app.query_params.get("run") in (None, *(p.stem for p in CHECKPOINTS.glob("*.safetensors")))


def test_uploads_go_to_a_private_folder_of_this_process_not_a_shared_temp_path():
    from ui.session import upload_root

    root = upload_root()
    assert str(root) != os.path.join(tempfile.gettempdir(), "vae_studio_uploads")  # no name anyone can predict
    info = root.stat()
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    assert upload_root() == root  # once per process
