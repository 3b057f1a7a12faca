# SPDX-License-Identifier: AGPL-3.0-or-later
"""A reference server for tests: the server side of the Obico device protocol.

It speaks the `/ws/dev/` websocket the way obico-server does (see
shared/reference/obico-protocol.md, section 2.3): the token comes in an
`authorization: bearer <token>` header, split on "," into parts of exactly two
words; an unknown token is refused before the upgrade (403); a second
connection with the same token closes the older one with code 4321; on
connect the server sends `remote_status`; every server message carries
`"type": "printer.message"`.

It runs on loopback, on an ephemeral port, over TLS with a CA made for the
test session, in a thread of its own, and it can misbehave on request: refuse
every token, close with 4321, go silent, send malformed or oversized frames,
unknown keys, bursts.
"""

import asyncio
import http
import json
import os
import ssl
import subprocess
import threading
import time

from websockets.asyncio.server import serve

LOOPBACK = "127.0.0.1"


def make_pki(directory, hostname="localhost"):
    """A CA and a server certificate for `hostname` (DNS SAN only), made with
    the openssl CLI. Returns paths: ca, cert, key, and an unrelated other_ca."""
    os.makedirs(directory, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    for name in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
            "-out", name + ".pem", "-days", "30", "-subj", "/CN=TSD test " + name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:{}\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n".format(hostname))
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=" + hostname)
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "30", "-extfile", "ext.cnf")
    return {
        "ca": os.path.join(directory, "ca.pem"),
        "cert": os.path.join(directory, "server.pem"),
        "key": os.path.join(directory, "server.key"),
        "other_ca": os.path.join(directory, "other-ca.pem"),
    }


def parse_bearer(header):
    """The token from an authorization header, as obico-server reads it."""
    if not header:
        return None
    for part in header.split(","):
        words = part.split()
        if len(words) == 2 and words[0] == "bearer":
            return words[1]
    return None


class Received:
    def __init__(self, token, text):
        self.token = token
        self.text = text
        self.time = time.monotonic()
        try:
            self.json = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            self.json = None


class ReferenceServer:
    def __init__(self, tokens, pki=None, host=LOOPBACK, port=0):
        self.tokens = set(tokens)
        self.pki = pki
        self.host = host
        self.port = port
        self.refuse_all = False
        self.refuse_status = http.HTTPStatus.FORBIDDEN
        self.silent = False
        self.connections = {}          # token -> list of live connections
        self.connect_count = 0
        self.refused_count = 0
        self.received = []
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._server = None
        self._ready = threading.Event()
        self._stop = None

    # ---- lifecycle (called from the test thread) ----

    def start(self):
        self._thread = threading.Thread(target=self._run, name="refserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("reference server did not start")
        return self

    def stop(self):
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)
        self._ready.clear()

    def restart(self):
        """Stops and starts again on the same port (a server deploy)."""
        self.stop()
        self.start()

    @property
    def url(self):
        scheme = "wss" if self.pki else "ws"
        host = "localhost" if self.pki else self.host
        return "{}://{}:{}/ws/dev/".format(scheme, host, self.port)

    def url_for_host(self, host):
        scheme = "wss" if self.pki else "ws"
        return "{}://{}:{}/ws/dev/".format(scheme, host, self.port)

    # ---- scripting (called from the test thread) ----

    def messages(self, token=None):
        with self._lock:
            return [r for r in self.received if token is None or r.token == token]

    def statuses(self, token=None):
        return [r for r in self.messages(token)
                if r.json is not None and "status" in r.json]

    def live(self, token):
        with self._lock:
            return len(self.connections.get(token, []))

    def send(self, token, message, as_text=None):
        """Sends to every live connection of token: a dict becomes JSON with the
        routing key obico-server adds; str/bytes go out as they are."""
        if isinstance(message, dict):
            message = dict(message)
            message.setdefault("type", "printer.message")
            message = json.dumps(message)
        return self._call(self._send(token, message))

    def go_silent(self, token):
        """Stops reading the token's connections: no messages, no pongs, as a
        server that hangs or a network that drops packets."""
        return self._call(self._silence(token))

    def close(self, token, code=1000, reason=""):
        return self._call(self._close(token, code, reason))

    def _call(self, coroutine, timeout=30):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # ---- the asyncio side ----

    def _run(self):
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self):
        self._stop = asyncio.Event()
        context = None
        if self.pki:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.pki["cert"], self.pki["key"])
        async with serve(self._handler, self.host, self.port, ssl=context,
                         process_request=self._process_request,
                         max_size=None, ping_interval=20, ping_timeout=30,
                         compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._server = server
            self._ready.set()
            await self._stop.wait()
            for connections in list(self.connections.values()):
                for connection in list(connections):
                    await connection.close(1001, "server going away")
        self.connections = {}

    def _process_request(self, connection, request):
        if request.path != "/ws/dev/":
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        token = parse_bearer(request.headers.get("Authorization"))
        if self.refuse_all or token not in self.tokens:
            self.refused_count += 1
            return connection.respond(self.refuse_status, "unknown token\n")
        return None

    async def _handler(self, connection):
        token = parse_bearer(connection.request.headers.get("Authorization"))
        with self._lock:
            older = list(self.connections.get(token, []))
            self.connections.setdefault(token, []).append(connection)
            self.connect_count += 1
        for old in older:
            await old.close(4321, "another device connected with the same token")
        await connection.send(json.dumps({"remote_status": {"viewing": False, "should_watch": False},
                                          "type": "printer.message"}))
        try:
            async for message in connection:
                if self.silent:
                    continue
                with self._lock:
                    self.received.append(Received(token, message))
        except Exception:
            pass
        finally:
            with self._lock:
                live = self.connections.get(token, [])
                if connection in live:
                    live.remove(connection)

    async def _send(self, token, message):
        with self._lock:
            targets = list(self.connections.get(token, []))
        for connection in targets:
            await connection.send(message)
        return len(targets)

    async def _silence(self, token):
        with self._lock:
            targets = list(self.connections.get(token, []))
        for connection in targets:
            connection.transport.pause_reading()
        return len(targets)

    async def _close(self, token, code, reason):
        with self._lock:
            targets = list(self.connections.get(token, []))
        for connection in targets:
            await connection.close(code, reason)
        return len(targets)
