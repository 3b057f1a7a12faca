# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Prometheus text of /plugin/tsd/metrics (octoprint_tsd/metrics.py):
what it reports from the plugin's state, and that Prometheus's own checker
(promtool, Debian's prometheus package) accepts it."""

import shutil
import subprocess
from unittest import mock

import pytest

from octoprint_tsd import metrics

PROMTOOL = shutil.which("promtool")


def plugin_with(watcher=None, uploader=None, remote=None, linked=False, state="unlinked"):
    plugin = mock.Mock(name="plugin")
    plugin._plugin_version = "1.2.3"
    plugin._farm.instance = 'mk3 "01"'
    detection = plugin._detection
    detection.watcher = None if watcher is None else mock.Mock(info=mock.Mock(return_value=watcher))
    detection.uploader = None if uploader is None else mock.Mock(info=mock.Mock(return_value=uploader))
    plugin._linking.remote = None if remote is None else mock.Mock(info=mock.Mock(return_value=remote))
    plugin._linking.info = {"linked": linked, "server": "https://secret-host.example"}
    plugin._linking.status.return_value = {"state": state, "detail": "https://secret-host.example"}
    return plugin


BUSY = dict(
    watcher={"frames": 40, "detections_ok": 38, "detection_errors": 2, "actions_taken": 1,
             "last": {"adjusted": 0.61, "p": 0.72, "verdict": "warn"},
             "helper": {"starts": 3, "crashes": 1, "timeouts": 1, "answers": 38,
                        "last_answer_ms": 180.5, "rss_bytes": 123456789}},
    uploader={"posted": 7, "failed": 1},
    remote={"actions_done": 5, "actions_refused": 2},
    linked=True, state="connected",
)


def samples(text):
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_a_busy_printer():
    text = metrics.document(plugin_with(**BUSY))
    got = samples(text)
    assert got["tsd_failure_score"] == 0.61 and got["tsd_failure_probability"] == 0.72
    assert got['tsd_verdict{verdict="warn"}'] == 1 and got['tsd_verdict{verdict="ok"}'] == 0
    assert got["tsd_frames_total"] == 40 and got["tsd_detections_total"] == 38
    assert got["tsd_detection_errors_total"] == 2 and got["tsd_failure_actions_total"] == 1
    assert got["tsd_helper_restarts_total"] == 2 and got["tsd_helper_crashes_total"] == 1
    assert got["tsd_helper_latency_seconds"] == 0.1805
    assert got["tsd_helper_rss_bytes"] == 123456789
    assert got["tsd_linked"] == 1 and got['tsd_link_state{state="connected"}'] == 1
    assert got['tsd_link_state{state="unauthorized"}'] == 0
    assert got["tsd_uploads_total"] == 7 and got["tsd_upload_failures_total"] == 1
    assert got['tsd_remote_commands_total{result="accepted"}'] == 5
    assert got['tsd_remote_commands_total{result="refused"}'] == 2
    assert got['tsd_info{printer="mk3 \\"01\\"",version="1.2.3"}'] == 1
    assert "secret-host" not in text  # no server address, let alone a token


def test_an_idle_unlinked_printer_reports_no_score():
    got = samples(metrics.document(plugin_with()))
    assert "tsd_failure_score" not in got and not any(k.startswith("tsd_verdict") for k in got)
    assert got["tsd_linked"] == 0 and got['tsd_link_state{state="unlinked"}'] == 1
    assert got['tsd_remote_commands_total{result="refused"}'] == 0


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
@pytest.mark.parametrize("state", [BUSY, {}], ids=["busy", "idle"])
def test_promtool_accepts_the_text(state):
    text = metrics.document(plugin_with(**state))
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stderr
