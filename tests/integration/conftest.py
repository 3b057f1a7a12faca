# SPDX-License-Identifier: AGPL-3.0-or-later
"""One real OctoPrint (from PyPI, in .venv) for the integration suite: a
temporary base folder, the virtual printer, an admin and a non-admin user, and
an application key for the admin made through OctoPrint's own API."""

import os
import shutil
import sys

import pytest

from octoprint_instance import OctoPrintInstance

from tsd_testing import ADMIN, PLANTED_SECRET, VIEWER, keep_octoprint_logs


class Server:
    def __init__(self, instance, api_key):
        self.instance = instance
        self.url = instance.url
        self.api_key = api_key

    def headers(self):
        return {"X-Api-Key": self.api_key}


@pytest.fixture(scope="session")
def octoprint_server(tmp_path_factory):
    basedir = tmp_path_factory.mktemp("octoprint")
    instance = OctoPrintInstance(str(basedir), python=sys.executable)
    instance.prepare(
        users=[ADMIN + (True,), VIEWER + (False,)],
        extra_plugin_settings={"tsd": {"auth_token": PLANTED_SECRET}},
    )
    instance.start()
    try:
        api_key = instance.create_api_key(*ADMIN)
        yield Server(instance, api_key)
    finally:
        instance.stop()
        keep_octoprint_logs(instance.basedir, None)


CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path():
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    if not found:
        pytest.fail("Debian's chromium is not installed (scripts/setup.sh installs it)")
    return found


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()
