# SPDX-License-Identifier: AGPL-3.0-or-later
"""When the native module cannot be loaded, the user is told why.

A copy of the installed package whose _tsd extension is corrupt is put first
on OctoPrint's PYTHONPATH (as a half-finished upgrade or a build for another
Python would leave it). OctoPrint must keep running, its log must name the
cause, the status API must report it, and the web UI must show a notice that
names it: never a silent fallback.
"""

import glob
import os
import shutil
import sys

import pytest
import requests

import octoprint_tsd
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, browser_login, output_dir


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory):
    site = tmp_path_factory.mktemp("broken-site")
    package = os.path.join(str(site), "octoprint_tsd")
    shutil.copytree(os.path.dirname(octoprint_tsd.__file__), package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (extension,) = glob.glob(os.path.join(package, "_tsd*.so"))
    with open(extension, "wb") as f:
        f.write(b"this is not a shared object\n")

    env = dict(os.environ)
    env["PYTHONPATH"] = str(site)
    instance = OctoPrintInstance(str(tmp_path_factory.mktemp("octoprint-broken")),
                                 python=sys.executable, env=env)
    instance.prepare(users=[ADMIN + (True,)])
    instance.start()
    try:
        yield instance, instance.create_api_key(*ADMIN), package
    finally:
        instance.stop()


def test_log_and_status_name_the_cause(broken_server):
    instance, api_key, package = broken_server
    body = requests.get(instance.url + "/api/plugin/tsd",
                        headers={"X-Api-Key": api_key}, timeout=10).json()
    assert body["native"]["loaded"] is False
    assert "ImportError" in body["native"]["error"]
    assert "_tsd" in body["native"]["error"]
    with open(instance.octoprint_log, encoding="utf-8") as f:
        log = f.read()
    assert "native module could not be loaded, the plugin is inactive: ImportError" in log
    # The plugin really came from the broken copy, and OctoPrint kept going.
    assert package in log
    assert requests.get(instance.url + "/", timeout=10).status_code == 200


def test_web_ui_shows_a_notice_naming_the_cause(broken_server, browser):
    instance, _, _ = broken_server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        browser_login(page, instance.url, *ADMIN)
        notice = page.locator(".ui-pnotify", has_text="The Spaghetti Detective is not running")
        notice.wait_for(state="visible", timeout=30000)
        text = notice.text_content()
        assert "native module could not be loaded" in text
        assert "ImportError" in text
        page.screenshot(path=os.path.join(output_dir("screenshots"), "tsd-native-error.png"))
        # The settings page carries the same cause in a banner.
        page.click("#navbar_show_settings")
        page.click("#settings_plugin_tsd_link a")
        banner = page.locator("#tsd_settings .alert-error:visible")
        banner.wait_for(state="visible", timeout=30000)
        assert "ImportError" in banner.text_content()
    finally:
        page.close()
