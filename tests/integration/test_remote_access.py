# SPDX-License-Identifier: AGPL-3.0-or-later
"""OctoPrint remote access (http.tunnelv2) in the native tunnel: the
reference server sends BSON requests the way obico-server does, a small
HTTP server on loopback stands in for OctoPrint and records what reached it.
(test_remote_access_octoprint.py does the same against a real OctoPrint.)
"""

import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from octoprint_tsd import _tsd
from obico_refserver import ReferenceServer
from test_tunnel import TOKEN, Events, make_tunnel, thread_names
from tsd_testing import wait_for
import tunnel_frames


class FakeOctoPrint(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []           # (method, path, headers dict, body) of every request
    lock = threading.Lock()
    release = threading.Event()  # /hang waits for it

    def log_message(self, *args):
        pass

    def _answer(self, status, body, headers=(), length=True):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.lock:
            self.seen.append((self.command, self.path, dict(self.headers.items()), body))
        path = self.path.split("?")[0]
        if path == "/echo":
            answer = json.dumps({"method": self.command, "path": self.path,
                                 "headers": dict(self.headers.items()), "body": body.decode("latin-1")})
            self._answer(200, answer.encode(), [("Content-Type", "application/json"),
                                                ("Set-Cookie", "session_P5000=s1; Path=/; HttpOnly"),
                                                ("Set-Cookie", "csrf_token_P5000=c1; Path=/"),
                                                ("X-Multi", "a"), ("X-Multi", "b")])
        elif path == "/big":
            size = int(self.path.split("n=")[1])
            self._answer(200, bytes(range(256)) * (size // 256) + b"x" * (size % 256),
                         [("Content-Type", "application/octet-stream")])
        elif path == "/redirect":
            self._answer(302, b"", [("Location", "/login?next=%2F")])
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":
            time.sleep(float(self.path.split("s=")[1]))
            self._answer(200, b"slow done")
        elif path == "/hang":
            self.release.wait(60)
            self._answer(200, b"late")
        else:
            self._answer(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


@pytest.fixture
def octoprint():
    FakeOctoPrint.seen = []
    FakeOctoPrint.release.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOctoPrint)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    FakeOctoPrint.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server():
    srv = ReferenceServer([TOKEN]).start()
    yield srv
    srv.stop()


@pytest.fixture
def linked(server, octoprint):
    """A started tunnel with remote access to the fake OctoPrint."""
    tunnel = make_tunnel(server.url, octoprint_port=octoprint.server_address[1], remote_access=True)
    events = Events(tunnel)
    tunnel.start()
    events.wait("connected")
    yield tunnel, events
    tunnel.stop()


def ask(server, ref, method, path, headers=None, body=None, wait=30, **extra):
    """Sends a request as the server does; extra: more fields (timeout)."""
    server.send(TOKEN, tunnel_frames.http_request(ref, method, path, headers, body, **extra))
    return tunnel_frames.wait_reply(server, TOKEN, ref, wait)



def test_request_is_replayed_and_answered(server, octoprint, linked):
    reply = ask(server, "v2.1.post.1./echo", "post", "/echo?x=1",
                {"Content-Type": "application/json", "Cookie": "session_P5000=s0"}, b'{"a": 1}')
    assert reply.status == 200
    echo = json.loads(reply.content)
    assert echo["method"] == "POST" and echo["path"] == "/echo?x=1"
    assert echo["body"] == '{"a": 1}'
    assert echo["headers"]["Cookie"] == "session_P5000=s0"
    # Raw Set-Cookie fields as the cookies list, never merged into headers.
    assert reply.cookies == ["session_P5000=s1; Path=/; HttpOnly", "csrf_token_P5000=c1; Path=/"]
    assert reply.header("Set-Cookie") is None
    assert reply.header("X-Multi") == "a, b"
    assert reply.header("Content-Type") == "application/json"
    assert reply.header("Content-Length") is None and reply.header("Connection") is None


def test_compressed_from_1000_bytes(server, octoprint, linked):
    small = ask(server, "v2.small", "get", "/big?n=999")
    assert not small.compressed and len(small.content) == 999
    big = ask(server, "v2.big", "get", "/big?n=1000")
    assert big.compressed and len(big.content) == 1000
    assert zlib.decompress(big.raw_content) == big.content
    large = ask(server, "v2.large", "get", "/big?n=3000000")
    assert large.compressed and large.content == bytes(range(256)) * (3000000 // 256) + b"x" * (3000000 % 256)


def test_redirect_is_not_followed(server, octoprint, linked):
    reply = ask(server, "v2.redirect", "get", "/redirect")
    assert reply.status == 302 and reply.header("Location") == "/login?next=%2F"
    assert [p for _, p, _, _ in FakeOctoPrint.seen] == ["/redirect"]


def test_chunked_answer_and_head(server, octoprint, linked):
    assert ask(server, "v2.chunked", "get", "/chunked").content == b"hello chunked world"
    head = ask(server, "v2.head", "head", "/big?n=5000")
    assert head.status == 200 and head.content == b""


def test_forwarding_headers_are_replaced(server, octoprint, linked):
    """Whatever the browser claims about where it is, OctoPrint sees only the
    tunnel's outside address (docs/security.md, remote access)."""
    reply = ask(server, "v2.fwd", "get", "/echo", {
        "X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1",
        "X-Forwarded-Host": "evil", "X-Scheme": "https", "X-Script-Name": "/x",
        "Host": "evil.example", "Accept-Encoding": "gzip", "Connection": "upgrade",
        "Transfer-Encoding": "chunked", "Content-Length": "99", "Accept": "text/html"})
    headers = {k.lower(): v for k, v in json.loads(reply.content)["headers"].items()}
    assert headers["x-forwarded-for"] == "198.51.100.1"  # the default
    for name in ("x-real-ip", "forwarded", "x-forwarded-host", "x-scheme", "x-script-name",
                 "accept-encoding", "transfer-encoding"):
        assert name not in headers, name
    assert headers["host"] == "127.0.0.1:{}".format(octoprint.server_address[1])
    assert headers["connection"] == "close" and headers["accept"] == "text/html"
    assert "content-length" not in headers


def test_remote_access_off_answers_403_and_reaches_nothing(server, octoprint, linked):
    tunnel, _ = linked
    tunnel.set_remote_access(False)
    reply = ask(server, "v2.off", "get", "/echo")
    assert reply.status == 403 and b"turned off" in reply.content
    assert FakeOctoPrint.seen == []
    tunnel.set_remote_access(True)
    assert ask(server, "v2.on", "get", "/echo").status == 200


def test_without_octoprint_port_everything_is_refused(server):
    tunnel = make_tunnel(server.url, remote_access=True)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        assert ask(server, "v2.noport", "get", "/").status == 403
    finally:
        tunnel.stop()


def test_errors_are_clear_statuses(server, octoprint, linked):
    # The local OctoPrint does not answer in time: 504 at the request's deadline.
    start = time.monotonic()
    reply = ask(server, "v2.hang", "get", "/hang", wait=20, timeout=2)
    assert reply.status == 504 and b"did not answer" in reply.content
    assert 1.5 < time.monotonic() - start < 10
    FakeOctoPrint.release.set()
    # A malformed request with a ref gets 400; a method the tunnel does not replay too.
    assert ask(server, "v2.trace", "trace", "/echo").status == 400
    assert ask(server, "v2.path", "get", "echo").status == 400
    reply = ask(server, "v2.inject", "get", "/echo", {"X-A": "1\r\nX-Forwarded-For: 127.0.0.1"})
    assert reply.status == 400


def test_octoprint_down_is_502(server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    tunnel = make_tunnel(server.url, octoprint_port=closed_port, remote_access=True)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        reply = ask(server, "v2.down", "get", "/")
        assert reply.status == 502 and b"connection refused" in reply.content
    finally:
        tunnel.stop()


def test_bad_input_keeps_the_link_and_the_command_path(server, octoprint, linked):
    """Malformed BSON, a body over the limit, a flood of parallel slow
    requests: each gets a clear answer or is counted, and a command from the
    server still arrives at once."""
    tunnel, events = linked
    server.send(TOKEN, b"\x10\x00\x00\x00garbage-garbage")
    server.send(TOKEN, b"\x05\x00\x00")
    # 40 MB: over the frame limit. Dropped whole and counted; its ref, read
    # from the part that was stored, gets a 413.
    server.send(TOKEN, tunnel_frames.http_request("v2.huge", "post", "/echo", {}, b"\0" * (40 * 1024 * 1024)))
    assert wait_for(lambda: tunnel.stats()["oversized"] == 1, 30)
    huge = tunnel_frames.wait_reply(server, TOKEN, "v2.huge", 30)
    assert huge.status == 413 and b"32 MiB" in huge.content
    # Over the body limit but within the frame limit (the body limit plus
    # room for the other fields): 413 with its ref.
    reply = ask(server, "v2.over", "post", "/echo", {}, b"\0" * (32 * 1024 * 1024 + 1))
    assert reply.status == 413 and b"larger" in reply.content
    for i in range(300):
        server.send(TOKEN, tunnel_frames.http_request("v2.flood.%d" % i, "get", "/slow?s=0.5"))
    sent_at = time.monotonic()
    server.send(TOKEN, {"remote_status": {"viewing": True}})
    assert wait_for(lambda: any('"viewing": true' in m for m in events.of("message")), 10)
    command_latency = time.monotonic() - sent_at
    assert command_latency < 2.0, command_latency
    statuses = {}
    def flood_replies():
        return [r for ref, r in tunnel_frames.replies(server, TOKEN).items() if ref.startswith("v2.flood.")]

    assert wait_for(lambda: len(flood_replies()) == 300, 120)
    for reply in flood_replies():
        statuses[reply.status] = statuses.get(reply.status, 0) + 1
    # Served by the fixed pool, or refused at once as busy: never silence.
    assert set(statuses) <= {200, 503} and statuses.get(200, 0) >= 64, statuses
    stats = tunnel.stats()
    assert stats["binary_ignored"] == 2 and stats["connects"] == 1 and stats["connected"]
    assert stats["remote_requests"] == statuses.get(200, 0)
    assert stats["remote_refused"] == statuses.get(503, 0) + 2  # and the two 413
    assert len([l for l in events.of("log") if "ignored a binary frame" in l]) <= 2
    # A fixed pool, never a thread per request.
    assert thread_names().count("tsd-httptun") == 4


def test_stop_ends_the_workers_in_flight(server, octoprint):
    tunnel = make_tunnel(server.url, octoprint_port=octoprint.server_address[1], remote_access=True)
    events = Events(tunnel)
    tunnel.start()
    events.wait("connected")
    for i in range(8):
        server.send(TOKEN, tunnel_frames.http_request("v2.inflight.%d" % i, "get", "/hang"))
    assert wait_for(lambda: len(FakeOctoPrint.seen) >= 4, 10)
    start = time.monotonic()
    tunnel.stop()
    assert time.monotonic() - start < 5
    assert "tsd-httptun" not in thread_names()


def test_remote_address_is_chosen_and_checked(server, octoprint):
    tunnel = make_tunnel(server.url, octoprint_port=octoprint.server_address[1], remote_access=True,
                         remote_address="203.0.113.7")
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        reply = ask(server, "v2.addr", "get", "/echo", {"X-Forwarded-For": "10.0.0.1"})
        headers = {k.lower(): v for k, v in json.loads(reply.content)["headers"].items()}
        assert headers["x-forwarded-for"] == "203.0.113.7"
    finally:
        tunnel.stop()
    # Only a numeric address goes into the header line.
    for bad in ("203.0.113.7\r\nX-Admin: 1", "example.com", "", "1.2.3.4, 5.6.7.8"):
        with pytest.raises(ValueError, match="numeric addresses only"):
            make_tunnel(server.url, octoprint_port=octoprint.server_address[1], remote_address=bad)


# ---- ws.tunnel ---------------------------------------------------------------


class WsOctoPrint:
    """A websocket endpoint on loopback standing in for OctoPrint's SockJS:
    text is echoed as "echo:<text>", binary reversed, "bye" closes, "big"
    answers with 2 MiB."""

    def __init__(self):
        import asyncio

        from aiohttp import web

        self.handshakes = []  # request headers of every upgrade
        self.open = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        app = web.Application()
        app.router.add_get("/sockjs/websocket", self._handler)
        self._runner = web.AppRunner(app)

        def run():
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            self._ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _handler(self, request):
        from aiohttp import WSMsgType, web

        self.handshakes.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.open += 1
        try:
            await ws.send_str("o")
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    if message.data == "bye":
                        await ws.close(code=1000)
                        break
                    if message.data == "big":
                        await ws.send_str("x" * (2 * 1024 * 1024))
                        continue
                    await ws.send_str("echo:" + message.data)
                elif message.type == WSMsgType.BINARY:
                    await ws.send_bytes(message.data[::-1])
        finally:
            self.open -= 1
        return ws

    def stop(self):
        import asyncio

        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def ws_linked(server):
    octoprint = WsOctoPrint()
    tunnel = make_tunnel(server.url, octoprint_port=octoprint.port, remote_access=True)
    events = Events(tunnel)
    tunnel.start()
    events.wait("connected")
    yield tunnel, octoprint
    tunnel.stop()
    octoprint.stop()


def ws_frames(server, ref=None):
    frames = []
    for received in server.messages(TOKEN):
        if isinstance(received.text, (bytes, bytearray)):
            kind, frame = tunnel_frames.decode(bytes(received.text))
            if kind == "ws" and (ref is None or frame["ref"] == ref):
                frames.append(frame)
    return frames


def wait_ws(server, ref, predicate, timeout=15):
    assert wait_for(lambda: predicate(ws_frames(server, ref)), timeout), ws_frames(server, ref)
    return ws_frames(server, ref)


def test_ws_bridge_keeps_text_and_binary(server, ws_linked):
    tunnel, octoprint = ws_linked
    server.send(TOKEN, tunnel_frames.ws_request("1.1", "connect", "/sockjs/websocket"))
    wait_ws(server, "1.1", lambda f: [x["data"] for x in f] == ["o"])
    server.send(TOKEN, tunnel_frames.ws_request("1.1", "tunnel_message", data='["hello"]'))
    server.send(TOKEN, tunnel_frames.ws_request("1.1", "tunnel_message", data=b"\x00\x01\x02"))
    frames = wait_ws(server, "1.1", lambda f: len(f) == 3)
    assert frames[1] == {"ref": "1.1", "type": "octoprint_message", "data": 'echo:["hello"]'}
    assert frames[2]["data"] == b"\x02\x01\x00" and isinstance(frames[2]["data"], bytes)
    # The handshake carries the outside address, not the browser's.
    assert octoprint.handshakes[0]["X-Forwarded-For"] == "198.51.100.1"
    assert "Origin" not in octoprint.handshakes[0]
    # OctoPrint closes: the server hears octoprint_close.
    server.send(TOKEN, tunnel_frames.ws_request("1.1", "tunnel_message", data="bye"))
    frames = wait_ws(server, "1.1", lambda f: f[-1]["type"] == "octoprint_close")
    assert frames[-1]["data"] is None
    assert wait_for(lambda: tunnel.stats()["remote_ws_open"] == 0, 10)


def test_ws_close_one_and_all(server, ws_linked):
    tunnel, octoprint = ws_linked
    for ref in ("2.1", "2.2", "2.3"):
        server.send(TOKEN, tunnel_frames.ws_request(ref, "connect", "/sockjs/websocket"))
        wait_ws(server, ref, lambda f: len(f) == 1)
    assert octoprint.open == 3 and tunnel.stats()["remote_ws_open"] == 3
    server.send(TOKEN, tunnel_frames.ws_request("2.1", "tunnel_close"))
    assert wait_for(lambda: octoprint.open == 2, 10)
    server.send(TOKEN, tunnel_frames.ws_request("ALL", "tunnel_close"))
    assert wait_for(lambda: octoprint.open == 0 and tunnel.stats()["remote_ws_open"] == 0, 10)
    # Closed at the server's request: nothing is reported back.
    assert all(f["type"] == "octoprint_message" for f in ws_frames(server))


def test_ws_dropped_link_closes_every_socket(server, ws_linked):
    tunnel, octoprint = ws_linked
    for ref in ("3.1", "3.2"):
        server.send(TOKEN, tunnel_frames.ws_request(ref, "connect", "/sockjs/websocket"))
        wait_ws(server, ref, lambda f: len(f) == 1)
    server.close(TOKEN)
    assert wait_for(lambda: octoprint.open == 0 and tunnel.stats()["remote_ws_open"] == 0, 15)


def test_ws_bounds(server, ws_linked):
    """Sockets per device, bytes per message: past a bound the socket is
    closed and the server told, and the link stays up."""
    tunnel, octoprint = ws_linked
    for i in range(20):
        server.send(TOKEN, tunnel_frames.ws_request("4.%d" % i, "connect", "/sockjs/websocket"))
    assert wait_for(lambda: len([f for f in ws_frames(server) if f["ref"].startswith("4.")]) >= 20, 15)
    closed = [f["ref"] for f in ws_frames(server) if f["type"] == "octoprint_close"]
    assert len(closed) == 4 and octoprint.open == 16
    # A 2 MiB message from OctoPrint: over the 1 MiB bound.
    server.send(TOKEN, tunnel_frames.ws_request("4.0", "tunnel_message", data="big"))
    wait_ws(server, "4.0", lambda f: f[-1]["type"] == "octoprint_close")
    server.send(TOKEN, tunnel_frames.ws_request("ALL", "tunnel_close"))
    assert wait_for(lambda: octoprint.open == 0, 10)
    # Remote access off: connects are refused.
    tunnel.set_remote_access(False)
    server.send(TOKEN, tunnel_frames.ws_request("5.1", "connect", "/sockjs/websocket"))
    frames = wait_ws(server, "5.1", lambda f: len(f) == 1)
    assert frames[0]["type"] == "octoprint_close" and octoprint.open == 0
    assert tunnel.stats()["connected"] and tunnel.stats()["connects"] == 1


def test_octoprint_on_ipv6_loopback(server):
    import socket

    class V6Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    FakeOctoPrint.seen = []
    httpd = V6Server(("::1", 0), FakeOctoPrint)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    tunnel = make_tunnel(server.url, octoprint_port=httpd.server_address[1], octoprint_host="::1",
                         remote_access=True)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        reply = ask(server, "v2.v6", "get", "/echo")
        assert reply.status == 200
        assert json.loads(reply.content)["headers"]["Host"] == "[::1]:{}".format(httpd.server_address[1])
    finally:
        tunnel.stop()
        httpd.shutdown()
        httpd.server_close()
