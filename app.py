"""VAE Studio: the router. Each page is a thin view in pages/; the logic lives in vae_core."""

import streamlit as st

st.set_page_config(page_title="VAE Studio", page_icon="🧬", layout="wide")

pages = [
    st.Page("pages/train.py", title="Train", icon="🏋️", default=True),
    st.Page("pages/latent.py", title="Latent space", icon="🌌"),
    st.Page("pages/generate.py", title="Generate", icon="🎨"),
    st.Page("pages/checkpoints.py", title="Checkpoints", icon="💾"),
    st.Page("pages/theory.py", title="Theory", icon="📐"),
]
st.navigation(pages).run()
