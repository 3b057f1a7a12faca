# SPDX-License-Identifier: AGPL-3.0-or-later
"""The native tunnel against the reference server over real TLS on loopback.

Each test starts from a script of what the server does and states what the
tunnel must do in return.
"""

import json
import os
import threading
import time

import pytest

from octoprint_tsd import _tsd
from obico_refserver import ReferenceServer, make_pki

TOKEN = "0123456789abcdef0123"
EV = {
    "log": _tsd.TUNNEL_EVENT_LOG,
    "connected": _tsd.TUNNEL_EVENT_CONNECTED,
    "disconnected": _tsd.TUNNEL_EVENT_DISCONNECTED,
    "message": _tsd.TUNNEL_EVENT_MESSAGE,
    "unauthorized": _tsd.TUNNEL_EVENT_UNAUTHORIZED,
    "replaced": _tsd.TUNNEL_EVENT_REPLACED,
    "stopped": _tsd.TUNNEL_EVENT_STOPPED,
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def server(pki):
    srv = ReferenceServer([TOKEN], pki=pki).start()
    yield srv
    srv.stop()


class Events:
    """Collects a tunnel's events on a thread, as the plugin's pump does."""

    def __init__(self, tunnel):
        self.tunnel = tunnel
        self.items = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                event = self.tunnel.next_event(timeout=0.5)
            except _tsd.QueueClosedError:
                return
            if event is not None:
                with self.lock:
                    self.items.append((event[0], event[1].decode("utf-8", "replace"), time.monotonic()))

    def of(self, kind):
        with self.lock:
            return [text for t, text, _ in self.items if t == EV[kind]]

    def wait(self, kind, count=1, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.of(kind)) >= count:
                return self.of(kind)
            time.sleep(0.02)
        raise AssertionError("no {} event within {} s; got {}".format(
            kind, timeout, [(t, x) for t, x, _ in self.items][-10:]))


def make_tunnel(url, pki=None, ca=None, **kwargs):
    kwargs.setdefault("backoff_first_ms", 100)
    kwargs.setdefault("backoff_cap_ms", 400)
    return _tsd.Tunnel(url, kwargs.pop("token", TOKEN), ca_file=ca or (pki and pki["ca"]), **kwargs)


def wait_until(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def thread_names():
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/{}/comm".format(task)) as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


# Script: a good server. Expect: TLS handshake verified against the test CA,
# the bearer token in the handshake, remote_status delivered, statuses sent.
def test_connects_authenticates_and_exchanges(server, pki):
    tunnel = make_tunnel(server.url, pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        remote_status = json.loads(events.wait("message")[0])
        assert remote_status["remote_status"] == {"viewing": False, "should_watch": False}
        assert server.live(TOKEN) == 1
        assert tunnel.send_status(json.dumps({"status": {"_ts": 1}, "current_print_ts": -1}))
        assert tunnel.send(json.dumps({"passthru": {"ref": "r1", "ret": "ok"}}))
        assert wait_until(lambda: len(server.messages(TOKEN)) == 2)
        kinds = [sorted(m.json) for m in server.messages(TOKEN)]
        assert ["passthru"] in kinds and ["current_print_ts", "status"] in kinds
        stats = tunnel.stats()
        assert stats["connected"] and stats["connects"] == 1
        assert stats["status_sent"] == 1 and stats["messages_sent"] == 1
    finally:
        tunnel.stop()


# Script: the plugin produces statuses faster than they can be written.
# Expect: the newest one always wins, older unsent ones are replaced, never a
# backlog; the last status the server sees is the last one sent.
def test_status_lane_keeps_only_the_latest(server, pki):
    tunnel = make_tunnel(server.url, pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        for i in range(2000):
            tunnel.send_status(json.dumps({"status": {"_ts": i}}))
        assert wait_until(lambda: any(s.json["status"]["_ts"] == 1999 for s in server.statuses(TOKEN)))
        stats = tunnel.stats()
        assert stats["status_sent"] + stats["status_replaced"] == 2000
        seen = [s.json["status"]["_ts"] for s in server.statuses(TOKEN)]
        assert seen == sorted(seen)  # never an older status after a newer one
        assert seen[-1] == 1999
    finally:
        tunnel.stop()


# Script: the message lane is bounded. Expect: overflow is refused and counted.
def test_message_lane_is_bounded(server, pki):
    tunnel = make_tunnel(server.url, pki)  # not started: nothing drains the lane
    accepted = sum(1 for i in range(1000) if tunnel.send(json.dumps({"passthru": {"ref": str(i)}})))
    assert accepted == 256
    assert tunnel.stats()["messages_dropped"] == 1000 - 256
    with pytest.raises(ValueError):
        tunnel.send("x" * (3 * 1024 * 1024))
    tunnel.stop()


# Script: the server does not know the token (403 before the upgrade).
# Expect: "unauthorized" within 5 s, no retries, the thread ends.
def test_refused_token_stops_and_reports_unauthorized(server, pki):
    tunnel = make_tunnel(server.url, pki, token="not-a-known-token")
    events = Events(tunnel)
    start = time.monotonic()
    tunnel.start()
    try:
        events.wait("unauthorized", timeout=5)
        assert time.monotonic() - start < 5
        events.wait("stopped", timeout=5)
        refused = server.refused_count
        time.sleep(1.0)
        assert server.refused_count == refused  # it does not keep knocking
        assert tunnel.stats()["stopped"] is True
        assert TOKEN not in " ".join(events.of("log"))
    finally:
        tunnel.stop()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_with_either_status(pki, status):
    srv = ReferenceServer([TOKEN], pki=pki)
    srv.refuse_all = True
    srv.refuse_status = status
    srv.start()
    tunnel = make_tunnel(srv.url, pki)
    events = Events(tunnel)
    try:
        tunnel.start()
        events.wait("unauthorized", timeout=5)
    finally:
        tunnel.stop()
        srv.stop()


# Script: a second device connects with the same token; the server closes the
# older connection with 4321. Expect: "replaced", and the tunnel stays down.
def test_close_4321_stops_and_reports_replaced(server, pki):
    tunnel = make_tunnel(server.url, pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        server.close(TOKEN, 4321, "another device")
        events.wait("replaced", timeout=5)
        events.wait("stopped", timeout=5)
        time.sleep(0.8)
        assert server.connect_count == 1  # no reconnect after 4321
    finally:
        tunnel.stop()


# Script: the server goes away and comes back on the same port.
# Expect: disconnected, reconnect with backoff, statuses flow again.
def test_survives_a_server_restart(server, pki):
    tunnel = make_tunnel(server.url, pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        server.restart()
        events.wait("disconnected")
        events.wait("connected", count=2, timeout=20)
        tunnel.send_status(json.dumps({"status": {"_ts": 42}}))
        assert wait_until(lambda: any(s.json["status"]["_ts"] == 42 for s in server.statuses(TOKEN)))
        assert tunnel.stats()["connects"] == 2
    finally:
        tunnel.stop()


# Script: the server presents a certificate from a CA we do not trust.
# Expect: no connection, retries, a reason that names the certificate.
def test_wrong_ca_is_refused(server, pki):
    tunnel = make_tunnel(server.url, pki, ca=pki["other_ca"])
    events = Events(tunnel)
    tunnel.start()
    try:
        reasons = events.wait("disconnected", timeout=10)
        assert server.connect_count == 0
        assert not events.of("connected")
        assert tunnel.stats()["connects"] == 0
        assert any("TLS handshake with localhost failed" in r for r in reasons), reasons
    finally:
        tunnel.stop()


# Script: the certificate is valid for "localhost" but we dial 127.0.0.1.
# Expect: the host name check refuses it.
def test_wrong_host_name_is_refused(server, pki):
    tunnel = make_tunnel(server.url_for_host("127.0.0.1"), pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        reasons = events.wait("disconnected", timeout=10)
        assert server.connect_count == 0
        assert tunnel.stats()["connects"] == 0
        assert any("TLS handshake with 127.0.0.1 failed" in r for r in reasons), reasons
    finally:
        tunnel.stop()


# Script: bad input from the server. Expect: each is counted and ignored; the
# connection stays up (one connect) and a good message still gets through.
def test_bad_input_leaves_the_connection_working(server, pki):
    tunnel = make_tunnel(server.url, pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        events.wait("message")
        server.send(TOKEN, "{not json")
        server.send(TOKEN, "[1, 2, 3]")
        server.send(TOKEN, '{"a": 1, "a": 2}')
        server.send(TOKEN, b"\x05\x00\x00\x00\x00")  # binary: an empty BSON document, no tunnel request
        server.send(TOKEN, "{" + '"x": "' + "y" * (16 * 1024 * 1024) + '"}')
        for i in range(10000):
            server.send(TOKEN, {"unknown_key_%d" % (i % 7): i})
        server.send(TOKEN, {"remote_status": {"viewing": True}})
        assert wait_until(lambda: any('"viewing": true' in m for m in events.of("message")), 30)
        stats = tunnel.stats()
        assert stats["malformed"] == 3
        assert stats["binary_ignored"] == 1
        assert stats["oversized"] == 1
        assert stats["connects"] == 1 and stats["connected"]
        assert stats["received"] + stats["events_dropped"] >= 10002
        # The flood is logged a handful of times, not once per message.
        assert len([l for l in events.of("log") if "ignored" in l]) < 10
    finally:
        tunnel.stop()


def test_cleartext_policy():
    with pytest.raises(_tsd.TunnelError, match="unencrypted"):
        _tsd.Tunnel("ws://obico.example.com/ws/dev/", TOKEN)
    with pytest.raises(_tsd.TunnelError, match="unencrypted"):
        _tsd.Tunnel("ws://192.168.1.10:3334/ws/dev/", TOKEN)
    # Allowed: loopback, or a LAN server the user explicitly allowed.
    _tsd.Tunnel("ws://127.0.0.1:3334/ws/dev/", TOKEN).stop()
    _tsd.Tunnel("ws://[::1]:3334/ws/dev/", TOKEN).stop()
    _tsd.Tunnel("ws://192.168.1.10:3334/ws/dev/", TOKEN, allow_cleartext_lan=True).stop()
    with pytest.raises(_tsd.TunnelError):
        _tsd.Tunnel("https://app.obico.io/ws/dev/", TOKEN)


# Before the one rule (native/core/hostrule.c), allow_cleartext_lan let ws://
# go to any server at all, public ones included.
@pytest.mark.parametrize("url", [
    "ws://8.8.8.8/ws/dev/", "ws://obico.example.com/ws/dev/", "ws://169.254.1.1:3334/ws/dev/",
    "ws://[fe80::1]:3334/ws/dev/", "ws://localhost:3334/ws/dev/", "ws://127.1:3334/ws/dev/",
])
def test_cleartext_lan_allows_only_private_addresses(url):
    with pytest.raises(_tsd.TunnelError, match="unencrypted"):
        _tsd.Tunnel(url, TOKEN, allow_cleartext_lan=True)


def test_cleartext_url_scheme_and_mapped_loopback():
    _tsd.Tunnel("WS://127.0.0.1:3334/ws/dev/", TOKEN).stop()
    _tsd.Tunnel("ws://[::ffff:127.0.0.1]:3334/ws/dev/", TOKEN).stop()
    _tsd.Tunnel("ws://[FD00::1]:3334/ws/dev/", TOKEN, allow_cleartext_lan=True).stop()
    with pytest.raises(_tsd.TunnelError):
        _tsd.Tunnel("ws://user@127.0.0.1:3334/ws/dev/", TOKEN)


def test_bad_configuration_is_a_clear_error(tmp_path):
    with pytest.raises(_tsd.TunnelError, match="CA file"):
        _tsd.Tunnel("wss://localhost:1/ws/dev/", TOKEN, ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="token"):
        _tsd.Tunnel("wss://localhost:1/ws/dev/", "bad token\r\nx-injected: 1")
    with pytest.raises(ValueError):
        _tsd.Tunnel("wss://localhost:1/ws/dev/", "")


# Script: plain ws:// on loopback; start/stop many times. Expect: stop() is
# idempotent, and afterwards no thread or file descriptor is left.
def test_stop_leaves_no_thread_or_fd(pki):
    srv = ReferenceServer([TOKEN]).start()
    try:
        baseline_fds = open_fds()
        for _ in range(5):
            tunnel = make_tunnel(srv.url)
            events = Events(tunnel)
            tunnel.start()
            events.wait("connected")
            tunnel.stop()
            tunnel.stop()
            events.thread.join(5)
            assert "tsd-tunnel" not in thread_names()
            del tunnel, events
        assert open_fds() <= baseline_fds
        with pytest.raises(_tsd.TunnelError):
            t = make_tunnel(srv.url)
            t.start()
            try:
                t.start()
            finally:
                t.stop()
    finally:
        srv.stop()


# Script: the server stops answering (no data, no pongs). Expect: the tunnel
# pings, gives up after the hang-up time, and connects again.
def test_silent_server_is_detected_and_reconnected(server, pki):
    tunnel = make_tunnel(server.url, pki, ping_after_s=1, hangup_after_s=3)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        start = time.monotonic()
        assert server.go_silent(TOKEN) == 1
        events.wait("disconnected", timeout=15)
        assert time.monotonic() - start < 12
        events.wait("connected", count=2, timeout=15)
        assert tunnel.stats()["connects"] == 2
    finally:
        tunnel.stop()


# Script: a burst of 1,000 commands as fast as the server can send them.
# Expect: every one arrives, in order, as an event.
def test_burst_of_1000_commands(server, pki):
    tunnel = make_tunnel(server.url, pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        events.wait("connected")
        events.wait("message")
        for i in range(1000):
            server.send(TOKEN, {"commands": [{"cmd": "resume", "initiator": "burst-%d" % i}]})
        messages = events.wait("message", count=1001, timeout=30)
        burst = [json.loads(m)["commands"][0]["initiator"] for m in messages[1:]]
        assert burst == ["burst-%d" % i for i in range(1000)]
        assert tunnel.stats()["events_dropped"] == 0
    finally:
        tunnel.stop()


class RecordingTlsListener:
    """A TLS listener on loopback that records every request it is sent and
    answers each with `reply` (bytes, formatted with this listener's port)."""

    def __init__(self, pki, reply):
        import socket
        import ssl

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki["cert"], pki["key"])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket
        import ssl

        while self.running:
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            raw.settimeout(3)
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                with self.lock:
                    self.requests.append(data)
                if self.reply:
                    conn.sendall(self.reply)
                conn.close()
            except (OSError, ssl.SSLError):
                raw.close()

    def stop(self):
        self.running = False
        self.sock.close()
        self.thread.join(5)


# Script: the server answers the websocket upgrade with 302 to another
# listener (which has a certificate the tunnel would trust). Expect: the
# redirect is refused with a clear reason, the tunnel keeps dialling only the
# configured server, and the token never reaches the other listener.
def test_sec08_upgrade_redirect_is_refused_and_token_stays(pki):
    elsewhere = RecordingTlsListener(
        pki, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    location = "wss://localhost:{}/ws/dev/".format(elsewhere.port).encode()
    redirector = RecordingTlsListener(
        pki, b"HTTP/1.1 302 Found\r\nLocation: " + location +
        b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    tunnel = make_tunnel("wss://localhost:{}/ws/dev/".format(redirector.port), pki)
    events = Events(tunnel)
    tunnel.start()
    try:
        # Either the redirect is refused (a "disconnected" reason) or it is
        # followed (the other listener is dialled): wait for one of the two.
        assert wait_until(lambda: events.of("disconnected") or elsewhere.connections, timeout=15)
        time.sleep(0.5)  # time to follow the redirect, if it were followed
        # The configured server did get the token: that is whom it is for.
        assert any(TOKEN.encode() in r for r in redirector.requests)
        with elsewhere.lock:
            leaked = [r for r in elsewhere.requests if TOKEN.encode() in r]
            assert not leaked, "the token followed the redirect"
            assert elsewhere.connections == 0
        reasons = events.of("disconnected")
        assert any("redirect" in r and "302" in r for r in reasons), reasons
        assert not events.of("connected")
        assert not events.of("unauthorized")
        assert TOKEN not in " ".join(events.of("log") + reasons)
    finally:
        tunnel.stop()
        redirector.stop()
        elsewhere.stop()
