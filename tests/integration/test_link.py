# SPDX-License-Identifier: AGPL-3.0-or-later
"""Linking with a code, end to end: the reference server issues a code to a
user, the OctoPrint admin types it into the plugin's settings page in
Chromium, the plugin exchanges it for a token, stores it, and connects."""

import os
import sys

import pytest
import requests

from obico_refserver import ReferenceServer, make_pki
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, VIEWER, browser_login, output_dir, wait_for


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pki = make_pki(str(tmp_path_factory.mktemp("pki-link")))
    server = ReferenceServer([], pki=pki).start()
    basedir = str(tmp_path_factory.mktemp("octoprint-link"))
    instance = OctoPrintInstance(basedir, python=sys.executable)
    instance.prepare(users=[ADMIN + (True,), VIEWER + (False,)],
                     extra_plugin_settings={"tsd": {"ca_file": pki["ca"],
                                                    "server_url": server.endpoint_prefix}})
    instance.start()
    try:
        yield instance, server, instance.create_api_key(*ADMIN)
    finally:
        instance.stop()
        server.stop()


def status(instance, api_key):
    return requests.get(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key}, timeout=10).json()


def open_settings(page, url):
    browser_login(page, url, *ADMIN)
    page.click("#navbar_show_settings")
    page.click("#settings_plugin_tsd_link a")
    page.wait_for_selector("#tsd_link_code", state="visible", timeout=30000)


def test_a_wrong_code_is_refused_with_a_clear_message(setup, browser):
    instance, server, api_key = setup
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        open_settings(page, instance.url)
        page.fill("#tsd_link_code", "000000")
        page.click("#tsd_link_button")
        page.wait_for_selector("#tsd_link_message.alert-error", state="visible", timeout=30000)
        assert "wrong or has expired" in page.text_content("#tsd_link_message")
    finally:
        page.close()
    assert status(instance, api_key)["link"]["linked"] is False
    assert not os.path.exists(os.path.join(instance.basedir, "data", "tsd", "tsd-token"))


def test_only_an_admin_can_link(setup):
    instance, server, _ = setup
    code = server.issue_code(user="mallory")
    viewer = instance.login(*VIEWER)
    response = viewer.post(instance.url + "/api/plugin/tsd", json={"command": "link", "code": code}, timeout=30)
    assert response.status_code == 403
    logged_out = requests.post(instance.url + "/api/plugin/tsd", json={"command": "link", "code": code}, timeout=30)
    assert logged_out.status_code in (400, 401, 403)  # CSRF or auth: refused either way
    assert server.printers_of("mallory") == []


def test_link_with_a_code_in_the_settings_page(setup, browser):
    instance, server, api_key = setup
    code = server.issue_code(user="alice", printer_name="Alice's Prusa")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        open_settings(page, instance.url)
        page.fill("#tsd_link_code", code)
        page.click("#tsd_link_button")
        page.wait_for_selector("#tsd_link_message.alert-success", state="visible", timeout=30000)
        assert "Alice's Prusa" in page.text_content("#tsd_link_message")
        page.wait_for_selector("#tsd_link_summary", state="visible", timeout=30000)
        page.screenshot(path=os.path.join(output_dir("screenshots"), "tsd-linked.png"))
    finally:
        page.close()
    body = status(instance, api_key)
    assert body["link"] == {"linked": True, "server": server.endpoint_prefix, "printer_name": "Alice's Prusa"}
    (token,) = [t for t in server.tokens if server.owner_of(t) == "alice"]
    assert token not in str(body)
    # The printer connects with its new token, to its owner's account.
    assert wait_for(lambda: server.live(token) == 1, 30)
    assert wait_for(lambda: status(instance, api_key)["remote"]["state"] == "connected", 30)
    # The code worked once.
    again = requests.post(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key},
                          json={"command": "link", "code": code}, timeout=30)
    assert again.status_code == 400 and again.json()["error"] == "wrong_code"
    with open(instance.octoprint_log, encoding="utf-8") as f:
        assert token not in f.read()
    settings = requests.get(instance.url + "/api/settings", headers={"X-Api-Key": api_key}, timeout=10).json()
    assert token not in str(settings)


def test_unlink_deletes_the_token_and_closes_the_link(setup):
    instance, server, api_key = setup
    (token,) = [t for t in server.tokens if server.owner_of(t) == "alice"]
    response = requests.post(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key},
                             json={"command": "unlink"}, timeout=30)
    assert response.status_code == 204
    assert not os.path.exists(os.path.join(instance.basedir, "data", "tsd", "tsd-token"))
    assert wait_for(lambda: server.live(token) == 0, 15)
    assert status(instance, api_key)["link"]["linked"] is False
