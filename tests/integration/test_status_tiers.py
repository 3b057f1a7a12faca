# SPDX-License-Identifier: AGPL-3.0-or-later
"""Who may read what of the plugin's state, in a real OctoPrint
(docs/security.md, "Who may read what"): a logged-in user with the status
permission gets the status document; the one-time passcode, the discovery
window and where the printer links to come only from admin-checked paths;
a logged-out client gets nothing."""

import pytest
import requests

from tsd_testing import ADMIN, VIEWER, octoprint_and_refserver, wait_for

OPERATOR = ("operator", "operator-password-for-tests")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with octoprint_and_refserver(
            tmp_path_factory, "tiers", users=[ADMIN + (True,)],
            grouped_users=[VIEWER + ("readonly",), OPERATOR + ("users",)]) as env:
        yield env


def api(instance):
    return instance.url + "/api/plugin/tsd"


def test_sec01_passcode_admin_only(setup):
    instance, server, api_key = setup
    admin = {"X-Api-Key": api_key}
    response = requests.post(api(instance), headers=admin, json={"command": "otp_start"}, timeout=30)
    assert response.status_code == 200, response.text

    def admin_passcode():
        body = requests.get(api(instance), headers=admin, timeout=10).json()
        return ((body.get("discovery") or {}).get("otp") or {}).get("passcode")

    # The admin sees the passcode the server issued (so the checks below can fail).
    passcode = wait_for(admin_passcode, 60)
    assert passcode

    for user in (VIEWER, OPERATOR):
        session = instance.login(*user)
        response = session.get(api(instance), timeout=10)
        assert response.status_code == 200, user
        assert passcode not in response.text, user
        body = response.json()
        assert "discovery" not in body and "otp" not in response.text
        # Linked or not, and whether the server refused the token: nothing more.
        assert body["link"] == {"linked": False, "refused": False} and body["native"]["loaded"] is True
        assert server.endpoint_prefix not in response.text
        # Nor through the commands, which are the admin's.
        refused = session.post(api(instance), json={"command": "otp_start"}, timeout=30)
        assert refused.status_code == 403 and passcode not in refused.text

    logged_out = requests.get(api(instance), timeout=10)
    assert logged_out.status_code == 403
    assert passcode not in logged_out.text and "discovery" not in logged_out.text

    response = requests.post(api(instance), headers=admin, json={"command": "otp_stop"}, timeout=30)
    assert response.status_code == 200
