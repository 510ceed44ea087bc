"""Streamlit view helpers shared by the pages: session state, run access, charts, widgets.
The logic lives in vae_core; nothing here trains or computes a loss."""
