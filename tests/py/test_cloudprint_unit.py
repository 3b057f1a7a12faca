# SPDX-License-Identifier: AGPL-3.0-or-later
"""Print from the app, the shim's side (octoprint_tsd/cloudprint.py and its
place in remote.py), with a mocked OctoPrint; the allow-list and the
download are the real native ones. The end-to-end tests are in
tests/integration/test_cloudprint.py."""

import json
import os
from unittest import mock

import pytest

from octoprint_tsd import bridge, cloudprint, remote, settings
from tsd_testing import idle_printer_plugin


class FakeTunnel:
    def __init__(self):
        self.sent = []

    def send(self, text):
        self.sent.append(json.loads(text))
        return True

    def send_status(self, text):
        return True


@pytest.fixture
def link(tmp_path):
    plugin = idle_printer_plugin(str(tmp_path), free_margin_mb=1, agent_version="test")
    plugin._plugin_manager.enabled_plugins = {"tsd": None}
    plugin._settings.global_get.return_value = []
    plugin._detection.server_webcams.return_value = []
    r = remote.Remote(plugin, mock.Mock(name="logger"))
    r._tunnel = FakeTunnel()
    r._dispatcher = bridge.new_dispatcher()
    r._download_policy = ("obico.example", False, None)
    return r, plugin, tmp_path


def download(r, url, ref="d1"):
    r._on_message(json.dumps({"passthru": {
        "ref": ref, "target": "file_downloader", "func": "download",
        "args": [{"id": 5, "url": url, "filename": "a.gcode", "safe_filename": "a.gcode"}]}}).encode())
    return [m["passthru"] for m in r._tunnel.sent if m["passthru"]["ref"] == ref]


def test_cloudprint_free_space_bounds_the_download(tmp_path):
    free = __import__("shutil").disk_usage(str(tmp_path)).free
    assert cloudprint.max_download_bytes(str(tmp_path), 1, 0) == 1024 * 1024
    assert cloudprint.max_download_bytes(str(tmp_path), 10 ** 9, 1) <= free - 1024 * 1024
    with pytest.raises(cloudprint.CloudPrintError, match="free space"):
        cloudprint.max_download_bytes(str(tmp_path), 500, free // (1024 * 1024) + 1)


@pytest.mark.parametrize("printer_fact", ["is_operational", "is_ready"])
def test_cloudprint_refused_unless_operational_and_ready(link, printer_fact):
    r, plugin, folder = link
    getattr(plugin._printer, printer_fact).return_value = False
    (ack,) = download(r, "https://storage.example/a.gcode")
    assert "Printer busy" in ack["error"]
    assert not r.cloud_print.active() and os.listdir(str(folder)) == []


def test_cloudprint_url_refused_before_anything_is_created(link):
    r, _, folder = link
    (ack,) = download(r, "http://192.168.1.20/a.gcode")
    assert "https://" in ack["error"]
    assert not r.cloud_print.active() and os.listdir(str(folder)) == []


def test_cloudprint_pseudo_state_while_downloading(link):
    r, _, _ = link
    r.cloud_print._job = {"bytes": 250, "expected": 1000}
    state = r.build_status()["status"]["state"]
    assert state["text"] == "G-Code Downloading"
    assert state["flags"]["operational"] is False
    assert state["download"] == {"bytes": 250, "expected": 1000, "percent": 25}
    # A second download is refused while one runs.
    assert r.printer_facts()["operational"] is False
    r.cloud_print._job = None
    assert r.build_status()["status"]["state"]["text"] == "Operational"


def test_cloudprint_settings_are_clamped():
    data = settings.checked({"cloud_print_max_mb": "0", "cloud_print_free_margin_mb": "x"})
    assert data == {"cloud_print_max_mb": 1}
    assert "cloud_print_max_mb" in [path[0] for path in settings.ADMIN_SETTING_PATHS]
