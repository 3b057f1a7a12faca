# SPDX-License-Identifier: AGPL-3.0-or-later
# This project is built by meson through meson-python (see pyproject.toml).
# `python setup.py install` would skip the native module, so it is refused.
import sys

sys.exit(
    "OctoPrint-TSD is built with meson-python. Install it with:\n"
    "    pip install .\n"
    "(system packages needed: see README.md)"
)
