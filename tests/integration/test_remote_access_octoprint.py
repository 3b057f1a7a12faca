# SPDX-License-Identifier: AGPL-3.0-or-later
"""OctoPrint remote access against a real OctoPrint whose autologin for
local networks is ON (as admin, for 127.0.0.0/8): a browser on the printer
itself is logged in automatically, but a request through the server's
tunnel must never be (docs/security.md, "OctoPrint remote access").

The reference server sends the requests as obico-server does (BSON
http.tunnelv2 on the device websocket); the plugin replays them.
"""

import json
import re
import threading
import time

import pytest
import requests

from remote_rig import TOKEN, linked_octoprint, start_print
from tsd_testing import ADMIN, wait_for
import tunnel_frames

AUTOLOGIN = {"accessControl": {"autologinLocal": True, "autologinAs": ADMIN[0],
                               "localNetworks": ["127.0.0.0/8", "::1/128"]}}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with linked_octoprint(tmp_path_factory, "remote-access", 1.0, octoprint_settings=AUTOLOGIN) as linked:
        assert wait_for(lambda: linked.server.live(TOKEN) == 1, 60)
        yield linked


_refs = iter(range(1, 1 << 30))


def ask(rig, method, path, headers=None, body=None):
    ref = "v2.{}.{}.{}.{}".format(next(_refs), method, int(time.time()), path)
    rig.server.send(TOKEN, tunnel_frames.http_request(ref, method, path, headers, body))
    return tunnel_frames.wait_reply(rig.server, TOKEN, ref, 60)


def cookie_header(cookies):
    """What a browser sends back of Set-Cookie fields: name=value, a later
    field replacing an earlier one of the same name."""
    jar = {}
    for cookie in cookies:
        name, _, value = cookie.split(";", 1)[0].partition("=")
        jar[name.strip()] = value
    return "; ".join("{}={}".format(name, value) for name, value in jar.items())


def csrf_token(cookies):
    for cookie in cookies:
        match = re.match(r"csrf_token_P\d+=([^;]*)", cookie)
        if match:
            return match.group(1)
    return None


def octoprint_log(rig):
    with open(rig.instance.octoprint_log, encoding="utf-8", errors="replace") as f:
        return f.read()


def autologins(rig):
    return octoprint_log(rig).count("via autologin")


def test_autologin_is_on_for_a_local_browser(rig):
    """The premise: OctoPrint logs a browser on loopback in as admin."""
    session = requests.Session()
    assert session.get(rig.instance.url + "/", timeout=30, allow_redirects=False).status_code == 200
    csrf = [c.value for c in session.cookies if c.name.startswith("csrf_token")]
    direct = session.post(rig.instance.url + "/api/login", json={"passive": True}, timeout=30,
                          headers={"X-CSRF-Token": csrf[0]})
    assert direct.status_code == 200
    assert direct.json()["name"] == ADMIN[0] and direct.json()["_login_mechanism"] == "autologin"


def test_tunnelled_browser_gets_no_automatic_session(rig):
    before = autologins(rig)
    spoof = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
    # Where a local browser gets the UI, the tunnelled one is sent to the login page...
    page = ask(rig, "get", "/", spoof)
    assert page.status == 302 and page.header("Location").startswith("/login"), page
    login_page = ask(rig, "get", page.header("Location"), spoof)
    assert login_page.status == 200 and b"login" in login_page.content.lower()
    # ...and the UI's passive login, with a valid CSRF token, stays anonymous.
    cookies = login_page.cookies
    headers = dict(spoof, **{"Content-Type": "application/json", "X-CSRF-Token": csrf_token(cookies),
                             "Cookie": cookie_header(cookies)})
    passive = ask(rig, "post", "/api/login", headers, b'{"passive": true}')
    assert passive.status == 200, passive
    answer = json.loads(passive.content)
    assert answer.get("name") is None and "_login_mechanism" not in answer, answer
    # OctoPrint saw the outside address: it calls the client external.
    assert answer["_is_external_client"] is True
    me = ask(rig, "get", "/api/currentuser", {"Cookie": cookie_header(cookies + passive.cookies)})
    assert me.status == 200 and json.loads(me.content)["name"] is None
    assert autologins(rig) == before


def test_tunnelled_login_works_and_is_logged(rig):
    first = ask(rig, "get", "/login")
    token = csrf_token(first.cookies)
    assert token, first.cookies
    headers = {"Content-Type": "application/json", "X-CSRF-Token": token,
               "Cookie": cookie_header(first.cookies)}
    wrong = ask(rig, "post", "/api/login", headers,
                b'{"user": "admin", "pass": "not-the-password", "remember": false}')
    assert wrong.status == 403
    good = ask(rig, "post", "/api/login", headers,
               ('{"user": "%s", "pass": "%s", "remember": false}' % ADMIN).encode())
    assert good.status == 200, good
    assert json.loads(good.content)["name"] == ADMIN[0]
    # OctoPrint's session works through the tunnel with the cookies it set.
    session = cookie_header(first.cookies + good.cookies)
    me = ask(rig, "get", "/api/currentuser", {"Cookie": session})
    assert me.status == 200 and json.loads(me.content)["name"] == ADMIN[0]
    # Both logins are in the log, neither password is.
    assert wait_for(lambda: "[remote access] 'admin' logged in" in octoprint_log(rig), 10)
    assert wait_for(lambda: "[remote access] a login to OctoPrint through the server's remote "
                            "access failed (HTTP 403)" in octoprint_log(rig), 10)
    log = octoprint_log(rig)
    assert "not-the-password" not in log and ADMIN[1] not in log
    # OctoPrint saw the login come from the tunnel's outside address.
    assert "Actively logging in user admin from 198.51.100.1" in log


def test_owner_turns_remote_access_off_and_on(rig):
    def set_remote_access(value):
        response = rig.api("POST", "/api/settings", json={"plugins": {"tsd": {"remote_access": value}}})
        assert response.status_code == 200

    set_remote_access(False)
    try:
        off = ask(rig, "get", "/api/version")
        assert off.status == 403 and b"turned off" in off.content
    finally:
        set_remote_access(True)
    assert ask(rig, "get", "/api/version").status in (200, 401, 403)
    assert ask(rig, "get", "/login").status == 200


def test_sockjs_through_the_tunnel_gives_live_updates_after_login(rig):
    """OctoPrint's push socket (SockJS over ws.tunnel): it opens, it stays
    anonymous until the browser authenticates with its login session, then
    the printer's state and temperatures arrive live."""
    first = ask(rig, "get", "/login")
    headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf_token(first.cookies),
               "Cookie": cookie_header(first.cookies)}
    login = ask(rig, "post", "/api/login", headers,
                ('{"user": "%s", "pass": "%s", "remember": false}' % ADMIN).encode())
    assert login.status == 200
    session = json.loads(login.content)["session"]
    ref = "{}.sockjs".format(time.time())

    def frames():
        found = []
        for received in rig.server.messages(TOKEN):
            if isinstance(received.text, (bytes, bytearray)):
                kind, frame = tunnel_frames.decode(bytes(received.text))
                if kind == "ws" and frame["ref"] == ref:
                    found.append(frame)
        return found

    def messages():
        """SockJS 'a[...]' frames, decoded."""
        found = []
        for frame in frames():
            data = frame["data"]
            if isinstance(data, str) and data.startswith("a"):
                found.extend(json.loads(data[1:]))
        return found

    # The path OctoPrint's SockJS client opens: /sockjs/<server>/<session>/websocket.
    rig.server.send(TOKEN, tunnel_frames.ws_request(ref, "connect", "/sockjs/317/tsdtest1/websocket"))
    assert wait_for(lambda: any("connected" in m for m in messages()), 30), frames()
    assert frames()[0]["data"] == "o"
    assert all(isinstance(f["data"], str) for f in frames())  # SockJS speaks text
    auth = json.dumps([json.dumps({"auth": "{}:{}".format(ADMIN[0], session)})])
    rig.server.send(TOKEN, tunnel_frames.ws_request(ref, "tunnel_message", data=auth))
    assert wait_for(lambda: any("current" in m and m["current"].get("temps") for m in messages()), 30)
    temps = [m["current"]["temps"] for m in messages() if "current" in m and m["current"].get("temps")]
    assert "tool0" in temps[-1][-1]
    rig.server.send(TOKEN, tunnel_frames.ws_request(ref, "tunnel_close"))


PAUSE_BUDGET_S = 3.0  # from the server's pause command to OctoPrint pausing, tunnel flooded


def test_flood_through_the_tunnel_does_not_delay_a_pause(rig):
    """Bad input and floods through remote access while a print runs: a 100 MB
    body, malformed BSON, 10,000 requests at once, more sockets than allowed.
    OctoPrint and the command path keep working: a pause from the server
    still lands within PAUSE_BUDGET_S, and the link stays up."""
    start_print(rig)
    connects = rig.server.connect_count
    rig.server.send(TOKEN, tunnel_frames.http_request("v2.huge", "post", "/api/files/local", {},
                                                      b"\0" * (100 * 1024 * 1024)))
    rig.server.send(TOKEN, b"\x13\x00\x00\x00\x03ws.tunnel\x00\x05\x00\x00\x00")
    rig.server.send(TOKEN, b"not bson at all")
    for i in range(40):
        rig.server.send(TOKEN, tunnel_frames.ws_request("flood.%d" % i, "connect",
                                                        "/sockjs/1/flood%d/websocket" % i))
    sender = threading.Thread(target=lambda: [
        rig.server.send(TOKEN, tunnel_frames.http_request("v2.flood.%d" % i, "get", "/api/files?recursive=true"))
        for i in range(10000)])
    sender.start()
    try:
        assert wait_for(lambda: len(tunnel_frames.replies(rig.server, TOKEN)) > 200, 60)
        sent = time.monotonic()
        rig.send({"commands": [{"cmd": "pause", "initiator": "system", "args": {"retract": 1, "lift_z": 1}}]})
        assert wait_for(lambda: rig.printer_state() in ("Pausing", "Paused"), 30, interval=0.05)
        took = time.monotonic() - sent
        print("pause landed {:.3f} s after the command, tunnel flooded".format(took))
        assert took < PAUSE_BUDGET_S, took
    finally:
        sender.join(120)
    assert wait_for(lambda: rig.printer_state() == "Paused", 60)
    assert wait_for(lambda: len([r for ref, r in tunnel_frames.replies(rig.server, TOKEN).items()
                                 if ref.startswith("v2.flood.")]) == 10000, 180)
    flood = [r for ref, r in tunnel_frames.replies(rig.server, TOKEN).items() if ref.startswith("v2.flood.")]
    # OctoPrint's own answer (403: the flood is not logged in), or busy at once.
    statuses = {r.status for r in flood}
    assert statuses <= {403, 503} and 403 in statuses, statuses
    # Over the frame limit: dropped whole, and answered 413 by its ref.
    assert tunnel_frames.replies(rig.server, TOKEN)["v2.huge"].status == 413
    assert rig.server.connect_count == connects and rig.server.live(TOKEN) == 1
    # OctoPrint still answers through the tunnel afterwards.
    assert ask(rig, "get", "/api/version").status in (200, 401, 403)
    rig.api("POST", "/api/job", json={"command": "cancel"})
    assert wait_for(lambda: rig.printer_state() == "Operational", 90)
