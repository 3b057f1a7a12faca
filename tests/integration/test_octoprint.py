# SPDX-License-Identifier: AGPL-3.0-or-later
"""The plugin inside a real OctoPrint with its virtual printer."""

import os
import subprocess

import requests
import yaml

import octoprint_tsd._tsd as native
from octoprint_tsd import bridge

from tsd_testing import ADMIN, PLANTED_SECRET, VIEWER, wait_for


def status(server):
    response = requests.get(server.url + "/api/plugin/tsd", headers=server.headers(), timeout=10)
    response.raise_for_status()
    return response.json()


def test_plugin_is_loaded_and_enabled(octoprint_server):
    response = requests.get(
        octoprint_server.url + "/plugin/pluginmanager/plugins/tsd",
        headers=octoprint_server.headers(),
        timeout=10,
    )
    assert response.status_code == 200
    plugin = response.json()["plugin"]
    assert plugin["key"] == "tsd"
    assert plugin["enabled"] is True
    assert plugin["incompatible"] is False
    assert plugin["name"] == "The Spaghetti Detective"
    assert plugin["python"] == ">=3.9,<4"


def test_log_shows_native_module_loaded(octoprint_server):
    with open(octoprint_server.instance.octoprint_log, encoding="utf-8") as f:
        log = f.read()
    assert "[bridge] native module loaded: _tsd {}".format(native.__version__) in log
    assert "native module could not be loaded" not in log


def test_status_answers_with_native_version(octoprint_server):
    body = status(octoprint_server)
    assert body["native"]["loaded"] is True
    assert body["native"]["version"] == native.__version__
    assert body["native"]["libraries"] == native.library_versions()
    assert set(body["native"]["libraries"]) == {
        "libwebsockets", "openssl", "jansson", "libyaml", "libturbojpeg",
    }
    assert body["event_queue"]["closed"] is False


def test_helper_is_found_inside_the_package(octoprint_server):
    body = wait_for(lambda: status(octoprint_server)["helper"].get("version"), timeout=30)
    assert body, "helper was never probed"
    helper = status(octoprint_server)["helper"]
    assert helper["available"] is True
    assert helper["version"].startswith("tsd-helper {}".format(native.__version__))
    assert os.path.dirname(helper["path"]) == os.path.dirname(native.__file__)


def test_status_needs_a_logged_in_user(octoprint_server):
    response = requests.get(octoprint_server.url + "/api/plugin/tsd", timeout=10)
    assert response.status_code == 403


def test_settings_page_is_served(octoprint_server):
    session = octoprint_server.instance.login(*ADMIN)
    page = session.get(octoprint_server.url + "/", timeout=30)
    assert page.status_code == 200
    assert 'id="tsd_settings"' in page.text
    assert 'id="settings_plugin_tsd"' in page.text
    script = session.get(octoprint_server.url + "/plugin/tsd/static/js/tsd.js", timeout=10)
    assert script.status_code == 200
    assert "TsdSettingsViewModel" in script.text


def test_secret_settings_are_never_exposed(octoprint_server):
    admin = requests.get(
        octoprint_server.url + "/api/settings", headers=octoprint_server.headers(), timeout=10
    ).json()
    assert "auth_token" not in admin["plugins"]["tsd"]
    assert PLANTED_SECRET not in str(admin)
    assert admin["plugins"]["tsd"]["server_url"].startswith("https://")

    viewer = octoprint_server.instance.login(*VIEWER)
    settings = viewer.get(octoprint_server.url + "/api/settings", timeout=10).json()
    tsd = settings.get("plugins", {}).get("tsd", {})
    assert PLANTED_SECRET not in str(settings)
    # Admin-only settings are withheld from other users.
    assert tsd.get("server_url") is None

    with open(os.path.join(octoprint_server.instance.basedir, "config.yaml")) as f:
        config = yaml.safe_load(f)
    assert "auth_token" not in config["plugins"].get("tsd", {})
    with open(octoprint_server.instance.octoprint_log, encoding="utf-8") as f:
        assert PLANTED_SECRET not in f.read()


def test_settings_are_validated_on_save(octoprint_server):
    url = octoprint_server.url + "/api/settings"
    headers = octoprint_server.headers()
    response = requests.post(
        url,
        json={"plugins": {"tsd": {"action": "explode", "sensitivity": 7, "frame_interval": 5}}},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200
    tsd = requests.get(url, headers=headers, timeout=10).json()["plugins"]["tsd"]
    assert tsd["action"] == "pause"  # unknown action refused, old value kept
    assert tsd["sensitivity"] == 2.0  # clamped
    assert tsd["frame_interval"] == 5


def test_plugin_sees_printer_state_changes(octoprint_server):
    url = octoprint_server.url
    headers = octoprint_server.headers()
    response = requests.post(
        url + "/api/connection",
        json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200, "autoconnect": False},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 204
    assert wait_for(lambda: status(octoprint_server)["printer"]["state"] == "OPERATIONAL", 60)
    states = [entry["state"] for entry in status(octoprint_server)["printer"]["history"]]
    assert "OPERATIONAL" in states
    assert states.index("OPERATIONAL") > 0  # something came before it (connecting)

    response = requests.post(
        url + "/api/connection", json={"command": "disconnect"}, headers=headers, timeout=10
    )
    assert response.status_code == 204
    assert wait_for(
        lambda: status(octoprint_server)["printer"]["state"] in ("CLOSED", "OFFLINE"), 30
    )


def test_software_update_hook_is_registered(octoprint_server):
    response = requests.get(
        octoprint_server.url + "/plugin/softwareupdate/check",
        params={"targets": "tsd"},
        headers=octoprint_server.headers(),
        timeout=60,
    )
    assert response.status_code == 200
    information = response.json()["information"]
    assert "tsd" in information
    assert information["tsd"]["displayName"] == "The Spaghetti Detective"
    assert information["tsd"]["displayVersion"] == native.__version__


def run_cli(server, *args):
    done = subprocess.run(
        [server.instance.python, "-m", "octoprint", "--basedir", server.instance.basedir,
         "plugins"] + list(args),
        cwd=server.instance.basedir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
    )
    return done.returncode, done.stdout.decode("utf-8", "replace")


def test_cli_link_status_unlink_and_the_running_server_follows(octoprint_server):
    token_dir = os.path.join(octoprint_server.instance.basedir, "data", "tsd")
    code, out = run_cli(octoprint_server, "tsd:status")
    assert code == 0 and "Not linked." in out
    code, out = run_cli(octoprint_server, "tsd:link", "--code", "12")
    assert code == 1 and "6 digits" in out
    code, out = run_cli(octoprint_server, "tsd:link", "--code", "123456", "--server", "https://127.0.0.1:9")
    assert code == 1 and "could not be reached" in out
    assert not os.path.exists(os.path.join(token_dir, "tsd-token"))

    # A token put in place while OctoPrint runs is picked up without a restart.
    os.makedirs(token_dir, exist_ok=True)
    assert bridge.save_token(token_dir, "https://127.0.0.1:9", "0123456789abcdef0123", "Bench") is None
    code, out = run_cli(octoprint_server, "tsd:status")
    assert code == 0 and 'Linked to https://127.0.0.1:9 as "Bench"' in out
    assert "0123456789abcdef0123" not in out
    assert wait_for(lambda: status(octoprint_server)["remote"]["state"] in ("connecting", "disconnected"), 20)
    code, out = run_cli(octoprint_server, "tsd:unlink")
    assert code == 0 and "Unlinked." in out
    assert wait_for(lambda: status(octoprint_server)["remote"]["state"] == "unlinked", 20)
    with open(octoprint_server.instance.octoprint_log, encoding="utf-8") as f:
        assert "0123456789abcdef0123" not in f.read()
