# SPDX-License-Identifier: AGPL-3.0-or-later
"""Issue 15 items 1-5: what the real Obico server saw, replayed against the
reference server and a real OctoPrint at the server's real cadence (50 s
idle, 10 s boosted: no time scale, so that a status owed but not sent shows).
"""

import subprocess
import sys
import time

import pytest

from test_remote import TOKEN, linked_octoprint, start_print
from tsd_testing import wait_for


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    with linked_octoprint(tmp_path_factory, "parity", 1.0) as rig:
        yield rig


def server_state(status):
    return ((status.json or {}).get("status") or {}).get("state", {}).get("text")


def lag_behind_octoprint(linked, expected, since, timeout=60):
    """Seconds between OctoPrint reaching state `expected` and the server
    receiving a status that says so (negative: the server heard first)."""
    octoprint_at = server_at = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (octoprint_at is None or server_at is None):
        if octoprint_at is None and linked.printer_state() == expected:
            octoprint_at = time.monotonic()
        if server_at is None:
            server_at = next((s.time for s in linked.server.statuses(TOKEN)
                              if s.time >= since and server_state(s) == expected), None)
        time.sleep(0.05)
    assert octoprint_at is not None, "OctoPrint never reached " + expected
    assert server_at is not None, "the server never heard " + expected
    return server_at - octoprint_at


def test_parity1_the_server_sees_where_a_remote_action_settles(linked):
    start_print(linked)
    for command, settled in (("pause", "Paused"), ("resume", "Printing"), ("cancel", "Operational")):
        sent = time.monotonic()
        linked.send({"commands": [{"cmd": command, "initiator": "user",
                                   "args": {"retract": 0, "lift_z": 0}}]})
        lag = lag_behind_octoprint(linked, settled, sent)
        assert lag < 2.0, (command, lag)
        assert server_state(linked.server.statuses(TOKEN)[-1]) == settled
    # Boosted after a remote action: every 10 s, not 50 s.
    start = time.monotonic()
    time.sleep(21)
    assert len([s for s in linked.server.statuses(TOKEN) if s.time > start]) >= 2


def cli_status(linked):
    done = subprocess.run([sys.executable, "-m", "octoprint", "--basedir", linked.instance.basedir,
                           "plugins", "tsd:status"], cwd=linked.instance.basedir,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_parity3_a_refused_token_is_not_linked(linked):
    refused = "refused by the server \u2014 link again"
    assert wait_for(lambda: linked.status()["remote"]["state"] == "connected", 30)
    assert linked.status()["link"]["linked"] is True
    linked.server.tokens.discard(TOKEN)     # the owner deleted the printer
    try:
        linked.server.close(TOKEN, 1011, "printer deleted")
        assert wait_for(lambda: linked.status()["remote"]["state"] == "unauthorized", 30)
        link = linked.status()["link"]
        assert link["linked"] is False and link["refused"] is True, link
        assert refused in link["error"]
        code, text = cli_status(linked)
        assert code != 0 and refused in text and "Linked to" not in text, (code, text)
    finally:
        linked.server.tokens.add(TOKEN)
    # Accepted again (the owner restored it): linked again, everywhere.
    assert linked.api("POST", "/api/plugin/tsd", json={"command": "reconnect"}).status_code == 204
    assert wait_for(lambda: linked.status()["remote"]["state"] == "connected", 30)
    assert linked.status()["link"]["linked"] is True
    code, text = cli_status(linked)
    assert code == 0 and "Linked to" in text, (code, text)
