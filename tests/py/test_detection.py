# SPDX-License-Identifier: AGPL-3.0-or-later
"""What a detected failure posts to the server (octoprint_tsd/detection.py),
with a mocked plugin."""

import threading
from unittest import mock

import pytest

from octoprint_tsd.detection import Detection

SUMMARY = {"score": 1.2, "p": 0.9, "detections": 1, "frame": 40}
DETECTIONS = [{"label": "failure", "confidence": 0.9, "box": [10, 10, 20, 20]}]


@pytest.fixture
def posted():
    plugin = mock.Mock(name="plugin")
    plugin._printer.is_printing.return_value = True
    events = []
    done = threading.Event()

    def post(path, fields, files):
        events.append((path, fields, files))
        done.set()
        return 200

    plugin.post_to_server.side_effect = post
    return Detection(plugin), events, done


@pytest.mark.parametrize("action", ["notify", "pause", "cancel"])
def test_parity5_a_failure_is_posted_as_the_servers_failure_alert(posted, action):
    """The server presents FAILURE_ALERTED without event_class/event_title as
    its own AI failure alert ("Possible Failure Detected", ERROR)."""
    detection, events, done = posted
    detection.failure_action(action, SUMMARY, b"\xff\xd8\xff not a real jpeg", DETECTIONS)
    assert done.wait(5)
    ((path, fields, files),) = events
    assert path == "/api/v1/octo/printer_events/"
    assert fields["event_type"] == "FAILURE_ALERTED"
    assert "event_class" not in fields and "event_title" not in fields
    assert fields["event_text"]
    assert files["snapshot"][1].startswith(b"\xff\xd8\xff")
