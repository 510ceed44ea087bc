"""VAE Studio: the router. Each page is a thin view in pages/; the logic lives in vae_core."""

import streamlit as st

from ui.session import start_background_warm_ups

st.set_page_config(page_title="VAE Studio", page_icon=":material/blur_on:", layout="wide")

pages = [
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", default=True),
    st.Page("pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
    st.Page("pages/generate.py", title="Generate", icon=":material/palette:"),
    st.Page("pages/checkpoints.py", title="Checkpoints", icon=":material/save:"),
    st.Page("pages/theory.py", title="Theory", icon=":material/functions:"),
]
start_background_warm_ups()
st.navigation(pages).run()
