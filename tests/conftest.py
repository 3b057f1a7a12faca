# SPDX-License-Identifier: AGPL-3.0-or-later
"""Shared by every pytest suite: the tests run against the plugin as pip
installed it into .venv, never against the source folder of the checkout."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "tests"))


def pytest_configure(config):
    import octoprint_tsd

    location = os.path.dirname(os.path.abspath(octoprint_tsd.__file__))
    if location == os.path.join(REPO, "octoprint_tsd"):
        raise RuntimeError(
            "octoprint_tsd was imported from the checkout, not from the installed "
            "package: run the tests with .venv/bin/pytest (make test does)"
        )
    expected = os.environ.get("TSD_EXPECT_PACKAGE_DIR")
    if expected and location != os.path.abspath(expected):
        raise RuntimeError(
            "octoprint_tsd came from {}, expected {}".format(location, expected)
        )
