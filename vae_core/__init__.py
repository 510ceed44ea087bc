"""vae_core: the engine of VAE Studio. Plain PyTorch and NumPy; never imports Streamlit."""

__version__ = "0.1.0"
