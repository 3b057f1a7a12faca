# SPDX-License-Identifier: AGPL-3.0-or-later
"""The discovery confirmation page and the link wizard in a real Chromium.

The page refuses a logged-out user and a non-admin (a clear page, no secret)
and, for an admin who clicks "Allow", posts the secret to the window that
opened it only with the reference server's origin; the server then links the
printer. The wizard links with a code typed in Chromium."""

import os
import re
import sys
from urllib.parse import quote

import pytest
import requests
import yaml

from obico_refserver import ReferenceServer, make_pki
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, VIEWER, browser_login, output_dir, wait_for


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pki = make_pki(str(tmp_path_factory.mktemp("pki-discovery-ui")))
    server = ReferenceServer([], pki=pki).start()
    basedir = str(tmp_path_factory.mktemp("octoprint-discovery-ui"))
    instance = OctoPrintInstance(basedir, python=sys.executable)
    instance.prepare(users=[ADMIN + (True,), VIEWER + (False,)],
                     extra_plugin_settings={"tsd": {"ca_file": pki["ca"],
                                                    "server_url": server.endpoint_prefix}})
    # This OctoPrint has not seen the plugin's wizard.
    config_path = os.path.join(basedir, "config.yaml")
    with open(config_path) as handle:
        config = yaml.safe_load(handle)
    config["server"]["seenWizards"].pop("tsd", None)
    with open(config_path, "w") as handle:
        yaml.safe_dump(config, handle)
    instance.start()
    try:
        yield instance, server, instance.create_api_key(*ADMIN)
    finally:
        instance.stop()
        server.stop()


def status(instance, api_key):
    return requests.get(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key}, timeout=10).json()


def device_id(instance, api_key):
    return wait_for(lambda: (status(instance, api_key).get("discovery") or {}).get("device_id"), 60)


def login_context(browser, instance, user):
    """A browser context logged into OctoPrint as user (None: logged out)."""
    context = browser.new_context(ignore_https_errors=True)   # the test CA
    if user is not None:
        context.request.get(instance.url + "/")
        csrf = [c["value"] for c in context.cookies() if c["name"].startswith("csrf_token")][0]
        response = context.request.post(instance.url + "/api/login", headers={"X-CSRF-Token": csrf},
                                        data={"user": user[0], "pass": user[1], "remember": False})
        assert response.ok, response.text()
    return context


@pytest.mark.parametrize("who, expected", [(None, "Sign in to OctoPrint as an administrator"),
                                           (VIEWER, "Only an OctoPrint administrator")])
def test_the_discovery_page_refuses_non_admins(setup, browser, who, expected):
    instance, server, api_key = setup
    device = device_id(instance, api_key)
    assert device
    context = login_context(browser, instance, who)
    try:
        page = context.new_page()
        response = page.goto(instance.url + "/plugin/tsd/discovery?device_id=" + device)
        assert response.status == 403
        assert expected in page.text_content("#tsd_discovery_refused")
        assert page.locator("#tsd_discovery_allow").count() == 0
        html = page.content()
        assert "CSRF_TOKEN" not in html and not re.search(r"[0-9a-f]{64}", html)
    finally:
        context.close()


def test_the_discovery_page_hands_the_secret_to_the_server_origin_only(setup, browser):
    instance, server, api_key = setup
    device = device_id(instance, api_key)
    context = login_context(browser, instance, ADMIN)
    try:
        app = context.new_page()
        target = instance.url + "/plugin/tsd/discovery?device_id=" + device
        app.goto(server.endpoint_prefix + "/app/link-popup?target=" + quote(target, safe=""))
        with context.expect_page() as popup_info:
            app.click("#open")
        popup = popup_info.value
        popup.wait_for_selector("#tsd_discovery_allow", state="visible", timeout=30000)
        # The page names the server it will hand the secret to, and no other.
        assert popup.evaluate("window.tsdTargetOrigin") == server.endpoint_prefix
        assert popup.text_content("#tsd_discovery_origin") == server.endpoint_prefix
        popup.click("#tsd_discovery_allow")
        popup.wait_for_function("document.querySelector('#tsd_discovery_result').textContent.length > 0",
                                timeout=30000)
        assert "Done" in popup.text_content("#tsd_discovery_result")
        popup.screenshot(path=os.path.join(output_dir("screenshots"), "tsd-discovery-allow.png"))
        app.wait_for_function("window.received.length > 0", timeout=30000)
        (message,) = app.evaluate("window.received")
        assert message["origin"] == instance.url
        assert message["data"]["device_id"] == device
        secret = message["data"]["device_secret"]
        assert re.fullmatch(r"[0-9a-f]{64}", secret)
        # A second click gets nothing: the secret is handed out once.
        csrf = [c["value"] for c in context.cookies() if c["name"].startswith("csrf_token")][0]
        again = context.request.post(instance.url + "/plugin/tsd/discovery/allow",
                                     headers={"X-CSRF-Token": csrf}, data={"device_id": device})
        assert again.status == 403 and "already handed out" in again.text()
        assert secret not in again.text()
    finally:
        context.close()
    # The app's "Link" with the secret: the printer verifies it and links.
    code = server.browser_link("ui-owner", device, secret)
    assert wait_for(lambda: status(instance, api_key)["link"]["linked"], 60)
    (printer,) = server.printers_of("ui-owner")
    assert wait_for(lambda: server.live(printer["auth_token"]) == 1, 60)
    with open(instance.octoprint_log, encoding="utf-8") as handle:
        log = handle.read()
    assert secret not in log and code not in log and printer["auth_token"] not in log
    # Unlink, for the wizard.
    response = requests.post(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key},
                             json={"command": "unlink"}, timeout=30)
    assert response.status_code == 204


def test_the_wizard_links_with_a_code(setup, browser):
    instance, server, api_key = setup
    assert status(instance, api_key)["link"]["linked"] is False
    code = server.issue_code(user="wizard-owner", printer_name="Wizard's Voron")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        browser_login(page, instance.url, *ADMIN)
        page.wait_for_selector("#tsd_wizard", state="visible", timeout=60000)
        page.check("#tsd_wizard_server_self")
        page.fill("#tsd_wizard_server_url", "http://obico.example.org")
        page.fill("#tsd_wizard_code", code)
        page.click("#tsd_wizard_link_button")
        page.wait_for_selector("#tsd_wizard_message.alert-error", state="visible", timeout=30000)
        assert "https://" in page.text_content("#tsd_wizard_message")   # insecure_url, its own message
        page.fill("#tsd_wizard_server_url", server.endpoint_prefix)
        page.fill("#tsd_wizard_code", "000000")
        page.click("#tsd_wizard_link_button")
        page.wait_for_function(
            "document.querySelector('#tsd_wizard_message').textContent.indexOf('wrong or has expired') >= 0",
            timeout=30000)
        page.fill("#tsd_wizard_code", code)
        page.click("#tsd_wizard_link_button")
        page.wait_for_selector("#tsd_wizard_message.alert-success", state="visible", timeout=30000)
        assert "Wizard's Voron" in page.text_content("#tsd_wizard_message")
        page.screenshot(path=os.path.join(output_dir("screenshots"), "tsd-wizard-linked.png"))
    finally:
        page.close()
    body = status(instance, api_key)
    assert body["link"] == {"linked": True, "server": server.endpoint_prefix, "printer_name": "Wizard's Voron"}
    (printer,) = server.printers_of("wizard-owner")
    assert wait_for(lambda: server.live(printer["auth_token"]) == 1, 60)
    assert not [e for e in errors if "tsd" in e.lower()], errors


def test_the_settings_page_shows_a_passcode_that_links(setup, browser):
    """An admin starts a one-time passcode in the settings; the passcode the
    server issued appears; the owner types it in the app; the printer links
    and the passcode goes away."""
    instance, server, api_key = setup
    response = requests.post(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key},
                             json={"command": "unlink"}, timeout=30)
    assert response.status_code == 204
    config_path = os.path.join(instance.basedir, "config.yaml")
    # What the wizard's "Finish" does: it is not shown again.
    response = requests.post(instance.url + "/api/setup/wizard", headers={"X-Api-Key": api_key},
                             json={"handled": ["tsd"]}, timeout=30)
    assert response.ok, response.text
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        browser_login(page, instance.url, *ADMIN)
        page.click("#navbar_show_settings")
        page.click("#settings_plugin_tsd_link a")
        page.wait_for_selector("#tsd_otp_button", state="visible", timeout=30000)
        page.click("#tsd_otp_button")
        page.wait_for_selector("#tsd_otp_passcode", state="visible", timeout=30000)
        passcode = page.text_content("#tsd_otp_passcode strong").strip()
        assert re.fullmatch(r"[0-9a-z]{5}", passcode), passcode
        assert page.locator("#tsd_otp_stop_button").is_visible()
        assert server.claim_otp("passcode-owner", passcode)
        assert wait_for(lambda: status(instance, api_key)["link"]["linked"], 60)
        page.wait_for_selector("#tsd_otp_passcode", state="hidden", timeout=30000)
    finally:
        page.close()
    (printer,) = server.printers_of("passcode-owner")
    assert wait_for(lambda: server.live(printer["auth_token"]) == 1, 60)
    with open(config_path) as handle:
        assert passcode not in handle.read()
