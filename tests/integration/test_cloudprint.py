# SPDX-License-Identifier: AGPL-3.0-or-later
"""Print from the app (cloud print start, issue 18) end to end: a real
OctoPrint with its virtual printer and this plugin, linked to the reference
server over TLS on loopback, which keeps the owner's G-code library and
serves its files as the real server's store would.

The server's call is passthru ``file_downloader.download`` with
``[{id, url, filename, safe_filename}]``. A good file is downloaded,
checked, stored under ObicoUpload/ and printed; every refusal is answered
with an error ack, leaves no file behind and does not touch the printer.
"""

import glob
import os
import re
import time

import pytest

from remote_rig import TOKEN, ack_of, linked_octoprint, start_print
from tsd_testing import wait_for

TIME_SCALE = 0.05
PAUSE_BUDGET_S = 1.0  # a remote pause reaches the plugin within this, download or not
MARKER = re.compile(r"^(G1 X\d+ Y\d+ F\d+|M117 cloud \d+)$")


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    with linked_octoprint(tmp_path_factory, "cloudprint", TIME_SCALE) as rig:
        yield rig


def cloud_gcode(lines=40):
    """A short print whose every line can be found again in serial.log."""
    out = ["; a file from the app's library", "G28", "G90"]
    for i in range(lines):
        out.append("G1 X{} Y{} F3000".format(10 + i % 50, 10 + (i * 7) % 50))
        if i % 10 == 0:
            out.append("M117 cloud {}".format(i))
    return "\n".join(out) + "\n"


def write_file(tmp_path, name, text=None, size=None):
    path = str(tmp_path / name)
    with open(path, "w") as f:
        if size is None:
            f.write(text)
        else:
            line = "G1 X10 Y10 F3000\n"
            f.write(line * (size // len(line) + 1))
    return path


def download(linked, ref, row, url, safe_filename=None):
    linked.send({"passthru": {"ref": ref, "target": "file_downloader", "func": "download",
                              "args": [{"id": row["id"], "url": url, "filename": row["filename"],
                                        "safe_filename": safe_filename or row["safe_filename"]}]}})
    return wait_for(lambda: ack_of(linked, ref), 60)


def uploads(linked):
    return os.path.join(linked.instance.basedir, "uploads")


def leftovers(linked, name):
    """What a download of name left in OctoPrint's upload folder: the stored
    copy, or a temporary file of any download."""
    found = glob.glob(os.path.join(uploads(linked), "ObicoUpload", name))
    found += glob.glob(os.path.join(uploads(linked), ".tsd-download-*"))
    return found


def set_plugin_settings(linked, **values):
    response = linked.api("POST", "/api/settings", json={"plugins": {"tsd": values}})
    assert response.status_code == 200, response.text


def assert_refused(linked, ack, text, started_before, name="part.gcode"):
    assert ack is not None and "error" in ack, ack
    assert text in ack["error"], ack
    assert leftovers(linked, name) == []
    assert linked.printer_state() == "Operational"
    assert len([s for s in linked.server.statuses(TOKEN)
                if (s.json.get("event") or {}).get("event_type") == "PrintStarted"]) == started_before


def print_starts(linked):
    return len([s for s in linked.server.statuses(TOKEN)
                if (s.json.get("event") or {}).get("event_type") == "PrintStarted"])


def test_cloudprint_download_verify_and_print(linked, tmp_path):
    text = cloud_gcode()
    path = write_file(tmp_path, "benchy.gcode", text)
    row, url = linked.server.add_cloud_file(path, "My Benchy.gcode", declare_md5=True)
    mark = len(linked.serial_log())
    ack = download(linked, "cloud-1", row, url, safe_filename="../../My_Benchy.gcode")
    assert ack == {"ref": "cloud-1", "ret": {"target_path": "ObicoUpload/My_Benchy.gcode"}}
    # Stored under the name the allow-list made, byte for byte; no temp file left.
    stored = os.path.join(uploads(linked), "ObicoUpload", "My_Benchy.gcode")
    with open(stored) as f:
        assert f.read() == text
    assert glob.glob(os.path.join(uploads(linked), ".tsd-download-*")) == []
    # The server's record has the signature the print-start upsert sends, so
    # the print links to this file.
    patch = wait_for(lambda: [p for p in linked.server.g_code_file_patches if p[1] == row["id"]], 10)
    assert patch and patch[0][2]["safe_filename"] == "My_Benchy.gcode"
    assert patch[0][2]["agent_signature"].startswith("md5:")
    started = wait_for(lambda: [s.json for s in linked.server.statuses(TOKEN)
                                if (s.json.get("event") or {}).get("event_type") == "PrintStarted"], 60)
    assert started[-1]["status"]["job"]["file"]["obico_g_code_file_id"] == row["id"]
    assert len(linked.server.g_code_files) >= 1 and linked.server.g_code_file(row["id"])["agent_signature"]
    # The virtual printer received the file's G-code, in order, all of it.
    expected = [line for line in text.splitlines() if MARKER.match(line)]
    assert wait_for(lambda: [line for line in linked.sent_since(mark) if MARKER.match(line)] == expected, 120)
    assert wait_for(lambda: linked.printer_state() == "Operational", 120)


def test_cloudprint_status_says_downloading_with_progress(linked, tmp_path):
    """While a download runs the server sees its pseudo-state: "G-Code
    Downloading", not operational, with the progress."""
    path = write_file(tmp_path, "slow.gcode", size=3 * 1024 * 1024)
    row, url = linked.server.add_cloud_file(path, "slow.gcode", rate=1024 * 1024)
    linked.send({"passthru": {"ref": "cloud-slow", "target": "file_downloader", "func": "download",
                              "args": [{"id": row["id"], "url": url, "filename": "slow.gcode",
                                        "safe_filename": "slow.gcode"}]}})
    state = wait_for(lambda: [s.json["status"]["state"] for s in linked.server.statuses(TOKEN)
                              if (s.json["status"].get("state") or {}).get("text") == "G-Code Downloading"
                              and s.json["status"]["state"]["download"]["expected"]], 30)
    assert state[-1]["flags"]["operational"] is False
    assert state[-1]["download"]["expected"] == os.path.getsize(path)
    assert 0 <= state[-1]["download"]["percent"] < 100
    # A second call meanwhile is refused: one download at a time.
    second = download(linked, "cloud-slow-2", row, url)
    assert "error" in second
    # The tab's status shows it too.
    tab = linked.status()["cloud_print"]
    assert tab["downloading"] is None or tab["downloading"]["filename"] == "slow.gcode"
    ack = wait_for(lambda: ack_of(linked, "cloud-slow"), 60)
    assert ack["ret"] == {"target_path": "ObicoUpload/slow.gcode"}
    assert wait_for(lambda: linked.printer_state() == "Printing", 30)
    linked.send({"commands": [{"cmd": "cancel", "initiator": "user"}]})
    assert wait_for(lambda: linked.printer_state() == "Operational", 60)
    os.unlink(os.path.join(uploads(linked), "ObicoUpload", "slow.gcode"))


def test_cloudprint_remote_pause_during_download_within_budget_and_cancel(linked, tmp_path):
    """The download runs on its own C thread: a pause from the server is
    handled at once meanwhile; a cancel ends the download, with an error
    ack and no file."""
    started = print_starts(linked)
    path = write_file(tmp_path, "part.gcode", size=4 * 1024 * 1024)
    row, url = linked.server.add_cloud_file(path, "part.gcode", rate=1024 * 1024)
    linked.send({"passthru": {"ref": "cloud-pause", "target": "file_downloader", "func": "download",
                              "args": [{"id": row["id"], "url": url, "filename": "part.gcode",
                                        "safe_filename": "part.gcode"}]}})
    assert wait_for(lambda: (linked.status()["cloud_print"]["downloading"] or {}).get("bytes"), 30)
    for _ in range(3):
        done = linked.status()["remote"]["actions_done"]
        sent = time.monotonic()
        linked.send({"commands": [{"cmd": "pause", "initiator": "user"}]})
        assert wait_for(lambda: linked.status()["remote"]["actions_done"] > done, 10, interval=0.01)
        assert time.monotonic() - sent < PAUSE_BUDGET_S
    assert ack_of(linked, "cloud-pause") is None  # still downloading
    linked.send({"commands": [{"cmd": "cancel", "initiator": "user"}]})
    ack = wait_for(lambda: ack_of(linked, "cloud-pause"), 30)
    assert_refused(linked, ack, "cancelled", started)


@pytest.mark.parametrize("case", [
    "loopback_not_the_server", "lan_host", "http_off_loopback", "redirect_into_lan",
    "redirect_to_loopback_ip", "md5_mismatch", "closes_mid_way", "not_gcode",
    "server_size_mismatch",
])
def test_cloudprint_refusals(linked, tmp_path, case):
    started = print_starts(linked)
    path = write_file(tmp_path, "part.gcode", cloud_gcode())
    server = linked.server
    row, url = server.add_cloud_file(path, "part.gcode")
    expected = {
        "loopback_not_the_server": "127.0.0.1",
        "lan_host": "private",
        "http_off_loopback": "https://",
        "redirect_into_lan": "private",
        "redirect_to_loopback_ip": "loopback",
        "md5_mismatch": "MD5",
        "closes_mid_way": "closed",
        "not_gcode": "NUL",
        "server_size_mismatch": "the server's file has",
    }[case]
    if case == "loopback_not_the_server":
        # The server is "localhost"; the same machine by another name is not it.
        row, url = server.add_cloud_file(path, "part.gcode", host="127.0.0.1")
    elif case == "lan_host":
        url = "https://10.255.255.1:{}/_storage/x/part.gcode".format(server.port)
    elif case == "http_off_loopback":
        url = "http://192.168.1.50/part.gcode"
    elif case == "redirect_into_lan":
        url = server.add_redirect("https://192.168.1.60/part.gcode")
    elif case == "redirect_to_loopback_ip":
        _, target = server.add_cloud_file(path, "part.gcode", host="127.0.0.1")
        url = server.add_redirect(target)
    elif case == "md5_mismatch":
        row, url = server.add_cloud_file(path, "part.gcode", md5="AAAAAAAAAAAAAAAAAAAAAA==")
    elif case == "closes_mid_way":
        big = write_file(tmp_path, "big.gcode", size=2 * 1024 * 1024)
        row, url = server.add_cloud_file(big, "part.gcode", close_after=300 * 1024)
    elif case == "not_gcode":
        binary = str(tmp_path / "part.bin")
        with open(binary, "wb") as f:
            f.write(b"G28\n\x00\x01\x02binary")
        row, url = server.add_cloud_file(binary, "part.gcode")
    elif case == "server_size_mismatch":
        # The server's record is of another file than the store sent.
        with server._lock:
            next(r for r in server.g_code_files if r["id"] == row["id"])["num_bytes"] += 1
    before = len(server.storage_requests)
    ack = download(linked, "cloud-" + case, row, url)
    assert_refused(linked, ack, expected, started)
    if case in ("lan_host", "http_off_loopback", "loopback_not_the_server"):
        # Refused before any connection to where the URL pointed.
        assert len(server.storage_requests) == before
    if case != "server_size_mismatch":  # the record is checked by the PATCH's answer
        assert not [p for p in server.g_code_file_patches if p[1] == row["id"]]


def test_cloudprint_too_big_and_disk_full(linked, tmp_path):
    started = print_starts(linked)
    path = write_file(tmp_path, "huge.gcode", size=2 * 1024 * 1024)
    row, url = linked.server.add_cloud_file(path, "huge.gcode")
    set_plugin_settings(linked, cloud_print_max_mb=1)
    try:
        assert_refused(linked, download(linked, "cloud-too-big", row, url), "more than", started,
                       "huge.gcode")
    finally:
        set_plugin_settings(linked, cloud_print_max_mb=500)
    # Less free space in the upload folder than the margin: as a full disk.
    set_plugin_settings(linked, cloud_print_free_margin_mb=1024 * 1024)
    try:
        assert_refused(linked, download(linked, "cloud-disk-full", row, url), "free space", started,
                       "huge.gcode")
    finally:
        set_plugin_settings(linked, cloud_print_free_margin_mb=100)


def test_cloudprint_refused_while_printing(linked, tmp_path):
    path = write_file(tmp_path, "part.gcode", cloud_gcode())
    row, url = linked.server.add_cloud_file(path, "part.gcode")
    start_print(linked)
    before = len(linked.server.storage_requests)
    ack = download(linked, "cloud-busy", row, url)
    assert "not allowed while printing" in ack["error"]
    assert len(linked.server.storage_requests) == before
    assert leftovers(linked, "part.gcode") == []
    linked.send({"commands": [{"cmd": "cancel", "initiator": "user"}]})
    assert wait_for(lambda: linked.printer_state() == "Operational", 60)
