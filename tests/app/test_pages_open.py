"""Every page opens with no exception, with and without runs."""

import pytest

from apphelpers import CHECKPOINTS, assert_no_exception, open_page

PAGES = ["app_pages/train.py", "app_pages/latent.py", "app_pages/generate.py", "app_pages/checkpoints.py", "app_pages/theory.py"]


@pytest.mark.parametrize("page", PAGES)
def test_page_opens_with_runs(app, saved_runs, page):
    open_page(app, page)
    assert_no_exception(app)
    assert app.title and app.title[0].value


def test_pages_without_any_run_say_what_to_do(app, tmp_path, monkeypatch):
    import ui.session as session
    monkeypatch.setattr(session, "CHECKPOINT_DIR", tmp_path)
    for page in PAGES[1:]:
        open_page(app, page)
        assert_no_exception(app)
    texts = " ".join(i.value for i in app.info)
    assert "No run yet" in texts or "Train" in texts
    assert CHECKPOINTS.exists()
