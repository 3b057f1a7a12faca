# SPDX-License-Identifier: AGPL-3.0-or-later
"""The server link's life cycle under concurrent requests, in a real
OctoPrint: link, unlink and reconnect from three threads at once (the
token-file watcher joins in, since every link and unlink changes the token
file). Afterwards the reference server sees exactly one websocket when the
printer is linked, and none when it is not: no orphan tunnel."""

import os
import threading
import time

import pytest
import requests

from tsd_testing import ADMIN, octoprint_and_refserver

ROUNDS = 12
OWNER = "hammer-owner"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with octoprint_and_refserver(tmp_path_factory, "lifecycle", users=[ADMIN + (True,)]) as env:
        yield env


def live_websockets(server):
    return {p["auth_token"]: server.live(p["auth_token"]) for p in server.printers_of(OWNER)}


def test_sec06_link_unlink_reconnect_from_three_threads_leave_one_tunnel_or_none(setup):
    instance, server, api_key = setup
    url = instance.url + "/api/plugin/tsd"
    errors = []

    def command(name, **fields):
        response = requests.post(url, headers={"X-Api-Key": api_key}, json=dict(fields, command=name),
                                 timeout=120)
        if response.status_code not in (200, 204):
            errors.append((name, response.status_code, response.text))

    def hammer(action):
        for _ in range(ROUNDS):
            action()
            time.sleep(0.05)

    threads = [
        threading.Thread(target=hammer, args=(lambda: command(
            "link", code=server.issue_code(user=OWNER, printer_name="Hammered")),)),
        threading.Thread(target=hammer, args=(lambda: command("unlink"),)),
        threading.Thread(target=hammer, args=(lambda: command("reconnect"),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors

    token_path = os.path.join(instance.basedir, "data", "tsd", "tsd-token")

    def settled():
        # The token-file watcher polls every few seconds; closed websockets
        # take a moment to be noticed by the server.
        time.sleep(8)
        return live_websockets(server)

    # Once more, the last word: linked.
    command("link", code=server.issue_code(user=OWNER, printer_name="Hammered"))
    assert os.path.exists(token_path)
    live = settled()
    assert sum(live.values()) == 1, live
    status = requests.get(url, headers={"X-Api-Key": api_key}, timeout=10).json()
    assert status["link"]["linked"] is True
    # Then unlinked: nothing is left connected.
    command("unlink")
    live = settled()
    assert sum(live.values()) == 0, live
    assert not errors, errors
