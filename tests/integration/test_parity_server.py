# SPDX-License-Identifier: AGPL-3.0-or-later
"""Issue 15 items 1-5: what the real Obico server saw, replayed against the
reference server and a real OctoPrint at the server's real cadence (50 s
idle, 10 s boosted: no time scale, so that a status owed but not sent shows).
"""

import subprocess
import sys
import time

import pytest

from remote_rig import TOKEN, linked_octoprint, start_print
from tsd_testing import print_gcode, wait_for


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    # A webcam that gives no frames: only its place in the settings block counts here.
    camera = {"classicwebcam": {"snapshot": "http://127.0.0.1:9/snapshot.jpg"}}
    with linked_octoprint(tmp_path_factory, "parity", 1.0, camera) as rig:
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


def test_parity4_print_records_and_status_as_the_original_sends_them(linked):
    # 10 layers of 30 moves, about 5 s each
    text = print_gcode(300, sleep_ms=150, tool_temp=210, bed_temp=60, layer_every=30)
    text = text.replace("G28\n", "G28\nM117 Printing parity\n", 1)
    files = {"file": ("parity-m117.gcode", text)}
    assert linked.api("POST", "/api/files/local", files=files).status_code == 201
    # OctoPrint's analysis (the filament length) before the print.
    assert wait_for(lambda: (linked.api("GET", "/api/files/local/parity-m117.gcode").json()
                             .get("gcodeAnalysis") or {}).get("filament"), 60)
    since = time.monotonic()
    response = linked.api("POST", "/api/files/local/parity-m117.gcode",
                          json={"command": "select", "print": True})
    assert response.status_code == 204
    # The file record, before the print's first status.
    (record,) = wait_for(lambda: [r for r in linked.server.g_code_files
                                  if r["safe_filename"] == "parity-m117.gcode"], 30)
    assert record["url"] == "parity-m117.gcode" and record["filename"] == "parity-m117.gcode"
    assert record["num_bytes"] == len(text.encode()) and record["agent_signature"].startswith("md5:")
    (posted,) = [r for r in linked.server.requests_to("/api/v1/octo/g_code_files/") if r.time >= since]
    assert posted.status == 201

    def printing_statuses():
        return [s.json["status"] for s in linked.server.statuses(TOKEN)
                if s.time >= since and (s.json["status"].get("display_status") or {}).get("message")
                == "Printing parity"]

    status = wait_for(printing_statuses, 60)[-1]
    assert status["job"]["file"]["obico_g_code_file_id"] == record["id"]
    assert status["progress"]["filamentUsed"] == status["job"]["filament"]["tool0"]["length"] > 0
    assert status["file_metadata"]["hash"] and "analysis" in status["file_metadata"]
    started = [s.json for s in linked.server.statuses(TOKEN)
               if (s.json.get("event") or {}).get("event_type") == "PrintStarted" and s.time >= since]
    assert started[0]["status"]["job"]["file"]["obico_g_code_file_id"] == record["id"]

    # Layer N of M, from the G-code as sent and from the file (not rewritten).
    linked.send({"remote_status": {"viewing": True}})   # statuses every 10 s
    try:
        def layered():
            return [s for s in printing_statuses()
                    if (s.get("currentLayerHeight") or 0) >= 2
                    and ((s["file_metadata"] or {}).get("obico") or {}).get("totalLayerCount")]
        status = wait_for(layered, 60)[-1]
    finally:
        linked.send({"remote_status": {"viewing": False}})
    assert status["file_metadata"]["obico"]["totalLayerCount"] == 10
    assert 2 <= status["currentLayerHeight"] <= 10
    layers_seen = [s["currentLayerHeight"] for s in printing_statuses() if s.get("currentLayerHeight")]
    assert layers_seen == sorted(layers_seen), layers_seen
    files = linked.api("GET", "/api/files/local/parity-m117.gcode?recursive=false")
    assert "OBICO_LAYER_INDICATOR" not in text and files.json()["size"] == len(text.encode())

    settings = [s.json["settings"] for s in linked.server.statuses(TOKEN) if "settings" in s.json]
    latest = settings[-1]
    assert "tsd" in latest["installed_plugins"] and "virtual_printer" in latest["installed_plugins"]
    assert {p["name"] for p in latest["temperature"]["profiles"]} >= {"ABS", "PLA"}
    assert latest["webcams"] and latest["webcams"][0]["is_primary_camera"] is True
    assert any("FIRMWARE_NAME" in (block.get("printer_metadata") or {}) for block in settings)

    linked.send({"commands": [{"cmd": "cancel", "initiator": "user"}]})
    assert wait_for(lambda: linked.printer_state() == "Operational", 90)
    # Between prints there is no layer (as the original: None after the end).
    (ended,) = wait_for(lambda: [s for s in linked.server.statuses(TOKEN) if s.time >= since and
                                 (s.json.get("event") or {}).get("event_type") == "PrintFailed"], 30)
    assert ended.json["status"]["currentLayerHeight"] >= 2
    linked.send({"remote_status": {"viewing": True}})
    try:
        after = wait_for(lambda: [s.json for s in linked.server.statuses(TOKEN)
                                  if s.time > ended.time and s.json["current_print_ts"] == -1], 30)
    finally:
        linked.send({"remote_status": {"viewing": False}})
    assert after[-1]["status"]["currentLayerHeight"] is None


def test_parity5_the_settings_page_says_where_a_notify_only_alert_appears(linked):
    import requests

    from tsd_testing import ADMIN

    with requests.Session() as session:
        session.get(linked.instance.url + "/", timeout=30)
        csrf = next(v for k, v in session.cookies.items() if k.startswith("csrf_token"))
        response = session.post(linked.instance.url + "/api/login", headers={"X-CSRF-Token": csrf},
                                json={"user": ADMIN[0], "pass": ADMIN[1], "remember": False}, timeout=30)
        assert response.ok, response.text
        page = session.get(linked.instance.url + "/", timeout=60).text
    start = page.index('id="tsd_action_notify_help"')
    help_text = page[start:page.index("</span>", start)]
    assert "Possible Failure Detected" in help_text and "event list" in help_text
    assert "nothing to your phone or e-mail" in help_text
    # and the refused link (parity3) has its place on the same page
    assert "Refused by the server \u2014 link again." in page
