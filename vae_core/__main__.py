"""`python -m vae_core`: the CLI, as the `vae-studio` command runs it."""

import sys

from .cli import main

sys.exit(main())
