"""VAE Studio's server: Streamlit's ASGI app around the router (router.py), started as usual with
`streamlit run app.py`.

Why not the router itself: a plain Streamlit script first runs when a browser connects, so the
first visitor would wait for torch, the engine and the default dataset to load. The app's lifespan
starts that warm-up in the background as the server starts instead."""

from contextlib import asynccontextmanager

import streamlit as st

from ui.access import stop_on_a_broken_served_mode
from ui.session import start_background_warm_ups


@asynccontextmanager
async def warm_up_on_start(_app):
    stop_on_a_broken_served_mode()  # a served mode whose settings cannot be read fails closed
    start_background_warm_ups()
    yield


app = st.App("router.py", lifespan=warm_up_on_start)
