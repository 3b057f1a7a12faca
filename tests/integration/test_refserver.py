# SPDX-License-Identifier: AGPL-3.0-or-later
"""The reference server's REST API (shared/reference/obico-protocol.md,
sections 2.2 and 3), checked with `requests`, and its device websocket on the
same TLS port. These tests pin down the server that the linking tests use."""

import asyncio
import threading
import json
import re
import ssl

import aiohttp
import pytest
import requests
from requests.adapters import HTTPAdapter

from obico_refserver import ReferenceServer, make_pki
from tsd_testing import wait_for

TOKEN = "0123456789abcdef0123"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
# What the real server answered to an unknown token (reference section 11), byte for byte.
INVALID_BODY = b'{"error":"Invalid or Inactive Token","is_authenticated":"False"}'
INVALID = {"error": "Invalid or Inactive Token", "is_authenticated": "False"}


def run_apart(coroutine, timeout=60):
    """Runs a coroutine on its own loop in its own thread: the main thread may
    already run one (Playwright's sync API does, in the browser tests)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed to the test thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the websocket session did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki-refserver")))


@pytest.fixture
def server(pki):
    srv = ReferenceServer([TOKEN], pki=pki).start()
    yield srv
    srv.stop()


class Client:
    """requests against the server, trusting the test CA; optionally from a
    given loopback source address (127.0.0.2 is another "home")."""

    def __init__(self, server, pki, source=None):
        self.prefix = server.endpoint_prefix
        self.session = requests.Session()
        # Per request: REQUESTS_CA_BUNDLE in the environment beats session.verify.
        self.verify = pki["ca"] if pki else True
        if source:
            adapter = SourceAddressAdapter(source)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)

    def request(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = "Token " + token
        return self.session.request(method, self.prefix + path, headers=headers, timeout=10,
                                    verify=self.verify, **kwargs)


class SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source, **kwargs):
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def verify(client, code, method="POST"):
    return client.request(method, "/api/v1/octo/verify/", params={"code": code})


def test_verify_issues_a_token_once(server, pki):
    client = Client(server, pki)
    code = server.issue_code(user="alice", printer_name="Alice's printer")
    assert re.fullmatch(r"[0-9]{6}", code)
    response = verify(client, code)
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == code and body["verified_at"] and body["expired_at"] and body["id"]
    printer = body["printer"]
    assert printer["name"] == "Alice's printer"
    assert re.fullmatch(r"[0-9a-f]{20}", printer["auth_token"])
    assert {"id", "created_at", "retract_on_pause", "lift_z_on_pause", "settings"} <= set(printer)
    assert "user" not in printer
    token = printer["auth_token"]
    assert token in server.tokens
    assert server.owner_of(token) == "alice"
    assert [p["auth_token"] for p in server.printers_of("alice")] == [token]
    assert server.owner_of(TOKEN) is None and server.owner_of("nope") is None

    again = verify(client, code)
    assert again.status_code == 404 and "detail" in again.json()
    assert [r.status for r in server.requests_to("/api/v1/octo/verify/")] == [200, 404]

    # The server also accepts GET; codes are unique.
    codes = {server.issue_code(user="bob") for _ in range(50)}
    assert len(codes) == 50
    second = verify(client, sorted(codes)[0], method="GET")
    assert second.status_code == 200
    assert second.json()["printer"]["auth_token"] != token
    assert server.owner_of(second.json()["printer"]["auth_token"]) == "bob"


def test_verify_rejects_malformed_unknown_expired_and_throttled(server, pki):
    client = Client(server, pki)
    for bad in ("12345", "1234567", "abcdef", "", "12 456"):
        assert verify(client, bad).status_code == 400, bad
    assert client.request("POST", "/api/v1/octo/verify/").status_code == 400
    code = server.issue_code()
    unknown = "{:06d}".format((int(code) + 1) % 10 ** 6)
    response = verify(client, unknown)
    assert response.status_code == 404 and "detail" in response.json()
    expired = server.issue_code(ttl=0)
    assert verify(client, expired).status_code == 404

    server.throttle_verify = True
    assert verify(client, code).status_code == 429
    server.throttle_verify = False
    assert verify(client, code).status_code == 200  # a throttled try did not use it up
    tokens = len(server.tokens)
    assert tokens == 2


def test_relink_code_rotates_the_token(server, pki):
    client = Client(server, pki)
    first = verify(client, server.issue_code(user="carol", printer_name="Carol's")).json()["printer"]
    relink = server.issue_code(user="carol", printer_id=first["id"])
    second = verify(client, relink).json()["printer"]
    assert second["id"] == first["id"] and second["name"] == "Carol's"
    assert second["auth_token"] != first["auth_token"]
    assert first["auth_token"] not in server.tokens and second["auth_token"] in server.tokens
    assert client.request("GET", "/api/v1/octo/printer/", first["auth_token"]).status_code == 401
    assert client.request("GET", "/api/v1/octo/printer/", second["auth_token"]).status_code == 200
    assert len(server.printers_of("carol")) == 1


def test_printer_get_needs_a_token(server, pki):
    client = Client(server, pki)
    response = client.request("GET", "/api/v1/octo/printer/", TOKEN)
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"is_pro": False}
    assert body["printer"]["is_pro"] is False and body["printer"]["retract_on_pause"] == 6.5
    assert {"id", "name"} <= set(body["printer"])
    assert client.request("GET", "/api/v1/octo/ping/", TOKEN).status_code == 200

    for headers in ({}, {"Authorization": "Token"}, {"Authorization": "bearer " + TOKEN},
                    {"Authorization": "Token " + TOKEN + " x"}, {"Authorization": "Token nope"}):
        response = client.request("GET", "/api/v1/octo/printer/", headers=headers)
        assert response.status_code == 401, headers
    assert response.json() == INVALID

    token = verify(client, server.issue_code(printer_name="Named")).json()["printer"]["auth_token"]
    assert client.request("GET", "/api/v1/octo/printer/", token).json()["printer"]["name"] == "Named"
    renamed = client.request("PATCH", "/api/v1/octo/printer/", token, json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["printer"]["name"] == "Renamed"
    assert server.printer(token)["name"] == "Renamed"
    assert server.printer_patches == [(token, {"name": "Renamed"})]

    server.tokens.discard(TOKEN)  # the printer was deleted
    assert client.request("GET", "/api/v1/octo/printer/", TOKEN).status_code == 401


def test_pic_is_recorded(server, pki):
    client = Client(server, pki)
    response = client.request("POST", "/api/v1/octo/pic/", TOKEN,
                              files={"pic": ("snap.jpg", JPEG, "image/jpeg")},
                              data={"viewing_boost": "true"})
    assert response.status_code == 200 and response.json() == {"result": "ok"}
    response = client.request("POST", "/api/v1/octo/pic/", TOKEN,
                              files={"pic": ("snap.jpg", JPEG, "image/jpeg")})
    assert response.status_code == 200
    assert [(p.token, p.jpeg, p.viewing_boost) for p in server.pics] == [
        (TOKEN, JPEG, True), (TOKEN, JPEG, False)]

    assert client.request("POST", "/api/v1/octo/pic/", TOKEN,
                          data={"viewing_boost": "true"}).status_code == 400
    assert client.request("POST", "/api/v1/octo/pic/", TOKEN,
                          files={"pic": ("x.jpg", b"not an image")}).status_code == 400
    response = client.request("POST", "/api/v1/octo/pic/", "f" * 20,
                              files={"pic": ("snap.jpg", JPEG, "image/jpeg")})
    assert response.status_code == 401 and response.json() == INVALID
    assert len(server.pics) == 2


def test_printer_event_is_recorded(server, pki):
    client = Client(server, pki)
    fields = {"event_title": "Filament change", "event_text": "<b>M600</b>",
              "event_class": "WARNING", "event_type": "FILAMENT_CHANGE", "notify": "true"}
    response = client.request("POST", "/api/v1/octo/printer_events/", TOKEN, data=fields,
                              files={"snapshot": ("snapshot.jpg", JPEG, "image/jpeg")})
    assert response.status_code == 200 and response.json() == {"result": "ok"}
    plain = dict(fields, event_class="ERROR", event_type="PRINTER_ERROR")
    plain.pop("notify")
    assert client.request("POST", "/api/v1/octo/printer_events/", TOKEN, data=plain).status_code == 200
    first, second = server.printer_events
    assert first.token == TOKEN and first.fields == fields and first.snapshot == JPEG
    assert first.event_text == "<b>M600</b>" and first.notify is True
    assert second.snapshot is None and second.event_type == "PRINTER_ERROR" and second.notify is False
    assert second.time >= first.time

    response = client.request("POST", "/api/v1/octo/printer_events/", "f" * 20, data=fields)
    assert response.status_code == 401 and response.json() == INVALID
    assert len(server.printer_events) == 2


async def _send_status(server, pki, token, current_print_ts):
    context = ssl.create_default_context(cafile=pki["ca"])
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.url, ssl=context, headers={"Authorization": "bearer " + token})
        await ws.receive()                       # remote_status
        await ws.send_str(json.dumps({"status": {"_ts": 1}, "current_print_ts": current_print_ts}))
        await ws.close()


def test_parity5_failure_alerted_is_filled_in_by_the_server(server, pki):
    """Section 11: FAILURE_ALERTED without event_class/event_title, during a
    print, is stored as the server's own "Possible Failure Detected" (ERROR)."""
    client = Client(server, pki)
    alert = {"event_type": "FAILURE_ALERTED", "event_text": "score 1.2"}
    assert client.request("POST", "/api/v1/octo/printer_events/", TOKEN, data=alert).status_code == 200
    run_apart(_send_status(server, pki, TOKEN, 1700000000))
    assert wait_for(lambda: server.statuses(TOKEN), 10)
    for fields in (alert, dict(alert, event_title="Ours", event_class="WARNING"),
                   dict(alert, event_type="PRINTER_ERROR")):
        response = client.request("POST", "/api/v1/octo/printer_events/", TOKEN, data=fields)
        assert response.content == b'{"result":"ok"}'
    idle, printing, titled, other = server.printer_events
    assert (idle.event_class, idle.event_title) == (None, None)          # no current print
    assert (printing.event_class, printing.event_title) == ("ERROR", "Possible Failure Detected")
    assert printing.fields == alert                                      # as posted
    assert (titled.event_class, titled.event_title) == ("WARNING", "Ours")
    assert (other.event_class, other.event_title) == (None, None)


def test_parity4_g_code_file_records_are_upserted(server, pki):
    client = Client(server, pki)
    fields = {"filename": "Benchy.gcode", "safe_filename": "Benchy.gcode", "num_bytes": "1234",
              "agent_signature": "md5:0a1b", "url": "folder/Benchy.gcode"}
    created = client.request("POST", "/api/v1/octo/g_code_files/", TOKEN, data=fields)
    assert created.status_code == 201
    row = created.json()
    assert created.content == json.dumps(row, separators=(",", ":")).encode()  # DRF's compact JSON
    assert {k: row[k] for k in fields} == dict(fields, num_bytes=1234) and isinstance(row["id"], int)
    again = client.request("POST", "/api/v1/octo/g_code_files/", TOKEN, data=fields)
    assert again.status_code == 200 and again.content == created.content
    other = client.request("POST", "/api/v1/octo/g_code_files/", TOKEN,
                           data=dict(fields, agent_signature="md5:ffff"))
    assert other.status_code == 201 and other.json()["id"] != row["id"]
    bad = client.request("POST", "/api/v1/octo/g_code_files/", TOKEN, data={"filename": "x"})
    assert bad.status_code == 400 and bad.json()["safe_filename"] == ["This field is required."]
    refused = client.request("POST", "/api/v1/octo/g_code_files/", "f" * 20, data=fields)
    assert refused.status_code == 401 and refused.json() == INVALID
    assert len(server.g_code_files) == 2


def device_info(device_id, host_or_ip="192.168.1.20"):
    return {"device_id": device_id, "hostname": "octopi", "host_or_ip": host_or_ip, "port": 80,
            "os": "Linux", "arch": "aarch64", "rpi_model": "Raspberry Pi 4", "octopi_version": "1.0",
            "plugin_version": "2.6.1", "agent": "Obico for OctoPrint",
            "printerprofile": "Default", "machine_type": "Virtual"}


def test_unlinked_is_keyed_by_the_peer_address(server, pki):
    home_a = Client(server, pki, source="127.0.0.2")
    home_b = Client(server, pki, source="127.0.0.3")
    spoof = {"X-Forwarded-For": "203.0.113.7"}
    response = home_a.request("POST", "/api/v1/octo/unlinked/", json=device_info("a1"), headers=spoof)
    assert response.status_code == 200 and response.json() == {"messages": []}
    home_a.request("POST", "/api/v1/octo/unlinked/", json=device_info("a1"))
    home_b.request("POST", "/api/v1/octo/unlinked/", json=device_info("b1", "10.0.0.9"))

    seen_a = server.discovered("127.0.0.2")
    assert [(d.device_id, d.polls, d.info["host_or_ip"]) for d in seen_a] == [("a1", 2, "192.168.1.20")]
    assert [d.device_id for d in server.discovered("127.0.0.3")] == ["b1"]
    assert server.discovered("203.0.113.7") == []  # X-Forwarded-For is not trusted
    assert sorted(d.device_id for d in server.discovered()) == ["a1", "b1"]
    assert [ip for ip, _, _ in server.unlinked_posts] == ["127.0.0.2", "127.0.0.2", "127.0.0.3"]

    # The 2021 incident: a proxy in front, its X-Forwarded-For trusted.
    server.trust_forwarded_for = True
    home_b.request("POST", "/api/v1/octo/unlinked/", json=device_info("b2"), headers=spoof)
    assert [d.device_id for d in server.discovered("203.0.113.7")] == ["b2"]

    assert home_a.request("POST", "/api/v1/octo/unlinked/", data="{not json",
                          headers={"Content-Type": "application/json"}).status_code == 400


def test_discovery_message_goes_to_the_device_once(server, pki):
    client = Client(server, pki)
    secret = "ab" * 32
    code = server.issue_code(user="dave")
    message = server.queue_discovery_message("d1", code, secret)
    assert message == {"device_id": "d1", "type": "verify_code", "data": {"code": code, "secret": secret}}
    server.queue_discovery_message("d1", "000000", ip="198.51.100.1")  # for another address

    other = client.request("POST", "/api/v1/octo/unlinked/", json=device_info("d2")).json()
    assert other == {"messages": []}
    polled = client.request("POST", "/api/v1/octo/unlinked/", json=device_info("d1")).json()
    assert polled == {"messages": [message]}
    assert client.request("POST", "/api/v1/octo/unlinked/", json=device_info("d1")).json() == {"messages": []}
    assert server.discovery_delivered == [("127.0.0.1", message)]

    # The device then verifies the code it was handed.
    printer = verify(client, polled["messages"][0]["data"]["code"]).json()["printer"]
    assert server.owner_of(printer["auth_token"]) == "dave"

    # Secretless, as before 2021-11: no "secret" in data.
    assert server.queue_discovery_message("d3", "123456")["data"] == {"code": "123456"}


def test_plain_http_when_no_pki():
    srv = ReferenceServer([TOKEN]).start()
    try:
        assert srv.endpoint_prefix.startswith("http://127.0.0.1:")
        client = Client(srv, None)
        token = verify(client, srv.issue_code()).json()["printer"]["auth_token"]
        assert client.request("GET", "/api/v1/octo/printer/", token).status_code == 200
        assert client.request("GET", "/nothing/here/").status_code == 404
    finally:
        srv.stop()


async def _websocket_session(server, pki, token):
    context = ssl.create_default_context(cafile=pki["ca"])
    events = []
    async with aiohttp.ClientSession() as session:
        try:
            await session.ws_connect(server.url, ssl=context,
                                     headers={"Authorization": "bearer nope"})
        except aiohttp.WSServerHandshakeError as e:
            events.append(("refused", e.status))
        headers = {"Authorization": "bearer " + token}
        first = await session.ws_connect(server.url, ssl=context, headers=headers)
        events.append(("first", json.loads((await first.receive()).data)))
        await first.send_str(json.dumps({"status": {"_ts": 1}, "current_print_ts": -1}))
        second = await session.ws_connect(server.url, ssl=context, headers=headers)
        closed = await first.receive()
        events.append(("replaced", closed.type, first.close_code))
        events.append(("second", json.loads((await second.receive()).data)))
        await second.close()
    return events


def test_websocket_shares_the_port_with_rest(server, pki):
    client = Client(server, pki)
    token = verify(client, server.issue_code()).json()["printer"]["auth_token"]
    assert server.url == "wss://localhost:{}/ws/dev/".format(server.port)
    assert server.endpoint_prefix == "https://localhost:{}".format(server.port)
    events = run_apart(_websocket_session(server, pki, token))
    remote_status = {"remote_status": {"viewing": False, "should_watch": False}, "type": "printer.message"}
    assert events == [("refused", 403), ("first", remote_status),
                      ("replaced", aiohttp.WSMsgType.CLOSE, 4321), ("second", remote_status)]
    assert server.refused_count == 1 and server.connect_count == 2
    assert [s.json["status"] for s in server.statuses(token)] == [{"_ts": 1}]
    # A plain GET on the websocket path is not an upgrade.
    response = client.request("GET", "/ws/dev/", headers={"Authorization": "bearer " + token})
    assert response.status_code == 426


def test_parity6_rest_answers_are_the_real_servers_bytes(server, pki):
    """Reference section 11 (what the real server sent) and the DRF renderer
    behind it: compact JSON; an unknown token gets exactly INVALID_BODY on
    every device call; the other refusals are DRF's own words."""
    client = Client(server, pki)
    calls = [("GET", "/api/v1/octo/printer/", {}),
             ("PATCH", "/api/v1/octo/printer/", {"json": {"name": "x"}}),
             ("POST", "/api/v1/octo/pic/", {"files": {"pic": ("snap.jpg", JPEG, "image/jpeg")}}),
             ("POST", "/api/v1/octo/printer_events/", {"data": {"event_text": "t"}})]
    for method, path, kwargs in calls:
        response = client.request(method, path, "f" * 20, **kwargs)
        assert (response.status_code, response.content) == (401, INVALID_BODY), path
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["WWW-Authenticate"] == "Token"
    refusals = {
        None: b'{"detail":"Authentication credentials were not provided."}',
        "bearer " + TOKEN: b'{"detail":"Authentication credentials were not provided."}',
        "Token": b'{"detail":"Invalid token header. No credentials provided."}',
        "Token a b": b'{"detail":"Invalid token header. Token string should not contain spaces."}',
        "token nope": INVALID_BODY,    # the keyword is case-insensitive
    }
    for header, body in refusals.items():
        headers = {"Authorization": header} if header else {}
        response = client.request("GET", "/api/v1/octo/printer/", headers=headers)
        assert (response.status_code, response.content) == (401, body), header

    ok = client.request("POST", "/api/v1/octo/pic/", TOKEN,
                        files={"pic": ("snap.jpg", JPEG, "image/jpeg")})
    assert (ok.status_code, ok.content) == (200, b'{"result":"ok"}')
    ok = client.request("POST", "/api/v1/octo/printer_events/", TOKEN, data={"event_text": "t"})
    assert (ok.status_code, ok.content) == (200, b'{"result":"ok"}')
    missing = client.request("POST", "/api/v1/octo/pic/", TOKEN, data={"viewing_boost": "true"})
    assert (missing.status_code, missing.content) == (400, b"")   # Response(status=400)
    printer_id = server.printer(TOKEN)["id"]
    response = client.request("GET", "/api/v1/octo/printer/", TOKEN)
    assert response.content == (b'{"user":{"is_pro":false},"printer":{"is_pro":false,"id":%d,'
                                b'"name":"My Awesome Cloud Printer","retract_on_pause":6.5}}' % printer_id)
    response = verify(client, "000000" if "000000" not in server._codes else "999999")
    assert (response.status_code, response.content) == (
        404, b'{"detail":"Requested resource does not exist"}')
    response = client.request("PATCH", "/api/v1/octo/printer/", TOKEN, json={"name": "Ünïcode"})
    assert '"name":"Ünïcode"'.encode("utf-8") in response.content   # UTF-8, not \u escapes


async def _deleted_printer_session(server, pki, token):
    context = ssl.create_default_context(cafile=pki["ca"])
    headers = {"Authorization": "bearer " + token}
    events = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.url, ssl=context, headers=headers)
        await ws.receive()                       # remote_status
        await asyncio.get_running_loop().run_in_executor(None, server.delete_printer, token)
        # Not a status: the server does not reload the printer, the socket stays.
        await ws.send_str(json.dumps({"passthru": {"ref": "r1", "ret": None}}))
        try:
            message = await ws.receive(timeout=1.5)
            events.append(("after passthru", message.type))
        except asyncio.TimeoutError:
            events.append(("after passthru", "open"))
        await ws.send_str(json.dumps({"status": {"_ts": 2}, "current_print_ts": -1}))
        message = await ws.receive(timeout=10)
        events.append(("after status", message.type, ws.close_code))
        try:
            await session.ws_connect(server.url, ssl=context, headers=headers)
            events.append(("reconnect", "accepted"))
        except aiohttp.WSServerHandshakeError as e:
            events.append(("reconnect", e.status, e.message))
    return events


def test_parity6_deleted_printer_loses_its_websocket_at_its_next_status(server, pki):
    """Reference section 11: a deleted printer's websocket is closed when its
    next status arrives, and the reconnect is refused (Daphne: 403 Access denied)."""
    client = Client(server, pki)
    token = verify(client, server.issue_code()).json()["printer"]["auth_token"]
    events = run_apart(_deleted_printer_session(server, pki, token))
    assert events == [("after passthru", "open"),
                      ("after status", aiohttp.WSMsgType.CLOSE, 1000),
                      ("reconnect", 403, "Invalid response status")], events
    assert server.printer(token) is None
    response = client.request("GET", "/api/v1/octo/printer/", token)
    assert (response.status_code, response.content) == (401, INVALID_BODY)
