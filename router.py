"""VAE Studio: the router (app.py serves it). Each page is a thin view in app_pages/; the logic lives in vae_core.

Nothing heavy is imported here: the navigation is drawn first, and torch and the engine load in
the background (ui.session.start_background_warm_ups) or when a page needs them."""

import streamlit as st

from ui import access, session
from ui.sidebar import training_badge

st.set_page_config(page_title="VAE Studio", page_icon=":material/blur_on:", layout="wide")
access.check_served_mode()  # a broken served-mode setting serves nothing (fails closed)

pages = [
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", default=True),
    st.Page("app_pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
    st.Page("app_pages/generate.py", title="Generate", icon=":material/palette:"),
    st.Page("app_pages/checkpoints.py", title="Checkpoints", icon=":material/save:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("app_pages/theory.py", title="Theory", icon=":material/functions:"),
    st.Page("app_pages/experiments.py", title="Experiments", icon=":material/science:"),
]
page = st.navigation(pages, position="sidebar" if access.signed_in_or_local() else "hidden")
access.require_login()  # served to several people: no page, and no run, before signing in
session.start_background_warm_ups()
session.keep_run_in_url()
training_badge()
page.run()
