"""vae_core: the engine of VAE Studio. Plain PyTorch and NumPy; never imports Streamlit."""

import os

# Before anything here imports torch: MKL reads this once, when it starts, and in strict mode its
# results do not depend on the number of threads. That lets the trainer pick the thread count by
# measuring (threads.py) without losing bit-for-bit reproducible runs. A user's own value wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
