# SPDX-License-Identifier: AGPL-3.0-or-later
"""A reference server for tests: the server side of the Obico device protocol.

It speaks the `/ws/dev/` websocket the way obico-server does (see
shared/reference/obico-protocol.md, section 2.3): the token comes in an
`authorization: bearer <token>` header, split on "," into parts of exactly two
words; an unknown token is refused before the upgrade (403); a second
connection with the same token closes the older one with code 4321; on
connect the server sends `remote_status`; every server message carries
`"type": "printer.message"`.

On the same port it serves the part of the REST API a device uses (sections
2.2 and 3): `/api/v1/octo/verify/` (6-digit codes that the test issues with
`issue_code()`), `/api/v1/octo/printer/`, `/api/v1/octo/unlinked/`
(auto-discovery, keyed by the address the server sees), `/api/v1/octo/pic/`
and `/api/v1/octo/printer_events/`. What arrives is recorded for assertions.
Answers are rendered byte for byte as obico-server's (Django REST framework)
where the reference documents them (section 11): compact JSON, and a refused
token gets HTTP 401 `{"error":"Invalid or Inactive Token","is_authenticated":"False"}`.
A deleted printer (`delete_printer()`) loses its websocket at its next status.

It runs on loopback, on an ephemeral port, over TLS with a CA made for the
test session (plain when pki is None), in a thread of its own, and it can
misbehave on request: refuse every token, close with 4321, go silent, send
malformed or oversized frames, unknown keys, bursts, throttle /verify/.
"""

import asyncio
import datetime
import http
import itertools
import json
import os
import re
import secrets
import ssl
import subprocess
import threading
import time
import traceback

from aiohttp import WSMsgType, web

LOOPBACK = "127.0.0.1"
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# obico-server's PrinterAuthentication raises AuthenticationFailed with this
# dict; DRF turns its values into strings and answers the dict itself.
INVALID_TOKEN = {"error": "Invalid or Inactive Token", "is_authenticated": "False"}
# DRF's TokenAuthentication (djangorestframework 3.15) for the other refusals.
NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}
NO_CREDENTIALS = {"detail": "Invalid token header. No credentials provided."}
TOKEN_WITH_SPACES = {"detail": "Invalid token header. Token string should not contain spaces."}
# The columns of obico-server's PrinterSerializer, with a new printer's defaults.
PRINTER_DEFAULTS = {
    "action_on_failure": "PAUSE",
    "watching_enabled": True,
    "not_watching_reason": None,
    "tools_off_on_pause": True,
    "bed_off_on_pause": False,
    "retract_on_pause": 6.5,
    "lift_z_on_pause": 2.5,
    "detective_sensitivity": 1.0,
    "min_timelapse_secs_on_finish": 600,
    "min_timelapse_secs_on_cancel": 300,
    "archived_at": None,
    "agent_name": None,
    "agent_version": None,
    "pic": None,
    "status": None,
    "settings": {},
    "current_print": None,
    "normalized_p": None,
}
DEFAULT_PRINTER_NAME = "My Awesome Cloud Printer"
DISCOVERY_MESSAGE_TTL = 60.0     # seconds a queued discovery message waits
DISCOVERY_MESSAGES_PER_POLL = 3


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


def parse_token_header(header):
    """The token from a REST `Authorization: Token <t>` header, as DRF's
    TokenAuthentication reads it (the keyword is case-insensitive)."""
    if not header:
        return None
    words = header.split()
    if len(words) == 2 and words[0].lower() == "token":
        return words[1]
    return None


def drf_json(data, status=200, headers=None):
    """An answer as Django REST framework renders it: compact JSON (no spaces
    after "," and ":"), non-ASCII as UTF-8, U+2028/U+2029 escaped, and an
    empty body for no data (``Response(status=400)``)."""
    if data is None:
        body = b""
    else:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        body = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def is_status_message(data):
    """Whether obico-server routes a device message to its status handling:
    everything that carries none of its four other routing keys."""
    return isinstance(data, dict) and not any(
        key in data for key in ("janus", "http.tunnelv2", "ws.tunnel", "passthru"))


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Received:
    def __init__(self, token, text):
        self.token = token
        self.text = text
        self.time = time.monotonic()
        try:
            self.json = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            self.json = None


class HttpRequest:
    """One REST request: what came in and what was answered."""

    def __init__(self, method, path, query, remote, headers, token):
        self.method = method
        self.path = path
        self.query = query        # dict
        self.remote = remote      # the peer address the server saw
        self.headers = headers    # dict
        self.token = token        # from `Authorization: Token`, or None
        self.status = None
        self.time = time.monotonic()

    def __repr__(self):
        return "<HttpRequest {} {} -> {}>".format(self.method, self.path, self.status)


class Pic:
    """One POST /api/v1/octo/pic/."""

    def __init__(self, token, jpeg, fields):
        self.token = token
        self.time = time.monotonic()
        self.jpeg = jpeg          # the bytes of the `pic` file
        self.fields = fields      # the other form fields, as str
        self.viewing_boost = fields.get("viewing_boost", "").lower() == "true"


# What the server fills in for a print-job event type posted with a current
# print and without event_class/event_title (obico-protocol.md section 11;
# only FAILURE_ALERTED's is documented).
SERVER_FILLED_EVENTS = {"FAILURE_ALERTED": ("ERROR", "Possible Failure Detected")}


class PrinterEvent:
    """One POST /api/v1/octo/printer_events/: the fields as posted, and
    event_class/event_title as the server stores them."""

    def __init__(self, token, fields, snapshot, printing=False):
        self.token = token
        self.time = time.monotonic()
        self.fields = fields      # all form fields, as str
        self.snapshot = snapshot  # bytes of the `snapshot` file, or None
        self.event_title = fields.get("event_title")
        self.event_text = fields.get("event_text")
        self.event_class = fields.get("event_class")
        filled = SERVER_FILLED_EVENTS.get(fields.get("event_type"))
        if filled and printing and not self.event_class and not self.event_title:
            self.event_class, self.event_title = filled
        self.event_type = fields.get("event_type")
        self.info_url = fields.get("info_url")
        self.notify = fields.get("notify") == "true"


class Discovered:
    """A device that polled /api/v1/octo/unlinked/, seen from one address."""

    def __init__(self, ip, device_id, info):
        self.ip = ip
        self.device_id = device_id
        self.info = info
        self.first_seen = self.last_seen = time.monotonic()
        self.polls = 1

    def __repr__(self):
        return "<Discovered {} from {} ({} polls)>".format(self.device_id, self.ip, self.polls)


class _Connection:
    """One device websocket."""

    def __init__(self, token, ws, request):
        self.token = token
        self.ws = ws
        self.request = request
        self.silenced = False
        loop = asyncio.get_running_loop()
        self.close_requested = loop.create_future()  # result: (code, reason, timeout)
        self.closed = loop.create_future()           # done when the handler is done


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
        self.binary_listener = None    # f(token, bytes) on the server's loop: the tunnel's browser side
        # REST
        self.throttle_verify = False   # /verify/ answers 429
        self.trust_forwarded_for = False  # /unlinked/ keys on X-Forwarded-For
        self.fixed_client_ip = None    # every client seen at this address (a broken load balancer)
        self.discovery_links = []      # (user, body, status) of POST /printer_discovery/
        self._otps = {}                # one-time passcode -> {device_id, expires, code}
        self.http_requests = []        # HttpRequest, every REST request
        self.pics = []                 # Pic
        self.printer_events = []       # PrinterEvent
        self.g_code_files = []         # dict: a GCodeFile row, in the order created
        self.g_code_file_patches = []  # (token, id, fields) of PATCH /g_code_files/<id>/
        self.storage = {}              # key -> StoredFile: the file store behind signed URLs
        self.storage_requests = []     # (key, peer) of every GET of a stored file
        self.printer_patches = []      # (token, body) of PATCH /printer/
        self.unlinked_posts = []       # (ip, body, time) of POST /unlinked/
        self.discovery_delivered = []  # (ip, message) handed to a poller
        self._deleted = set()          # tokens of printers deleted with delete_printer()
        self._codes = {}               # code -> dict
        self._printers = {}            # printer id -> dict (a PrinterSerializer row + "user")
        self._discovery = {}           # ip -> {device_id: Discovered}
        self._discovery_queue = []     # dicts: ip, device_id, expires, message
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._runner = None
        self._ready = threading.Event()
        self._stop = None
        self._error = None
        for token in sorted(self.tokens):
            self._new_printer(None, DEFAULT_PRINTER_NAME, token)

    # ---- lifecycle (called from the test thread) ----

    def start(self):
        self._error = None
        self._thread = threading.Thread(target=self._run, name="refserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError("reference server did not start: {!r}".format(self._error))
        return self

    def stop(self):
        if self._loop and self._stop:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop is already closed
                pass
        if self._thread:
            self._thread.join(15)
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

    @property
    def endpoint_prefix(self):
        """The server's base URL, as the plugin's `endpoint_prefix`."""
        scheme = "https" if self.pki else "http"
        host = "localhost" if self.pki else self.host
        return "{}://{}:{}".format(scheme, host, self.port)

    # ---- scripting the websocket (called from the test thread) ----

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
        routing key obico-server adds; str/bytes go out as they are. Returns
        the number of connections it was sent to."""
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

    # ---- scripting the REST API (called from the test thread) ----

    def issue_code(self, user="alice", printer_name=DEFAULT_PRINTER_NAME, ttl=600, printer_id=None):
        """A one-time verification code, as the app makes for a logged-in user
        (section 3.1): 6 digits, valid for `ttl` seconds, good once. With
        `printer_id` it is a re-link code: verifying it rotates that printer's
        token instead of making a new printer."""
        with self._lock:
            while True:
                code = "{:06d}".format(secrets.randbelow(10 ** 6))
                if code not in self._codes:
                    break
            self._codes[code] = {
                "id": next(self._ids), "code": code, "user": user,
                "printer_name": printer_name, "printer_id": printer_id,
                "expires": time.monotonic() + ttl, "used": False,
            }
        return code

    def owner_of(self, token):
        """The user who owns the printer with this token, or None."""
        with self._lock:
            printer = self._printer_by_token(token)
            return printer["user"] if printer else None

    def printers_of(self, user):
        """Copies of the printers (PrinterSerializer rows plus "user") of a user."""
        with self._lock:
            return [dict(p) for p in self._printers.values() if p["user"] == user]

    def printer(self, token):
        """A copy of the printer with this token, or None."""
        with self._lock:
            printer = self._printer_by_token(token)
            return dict(printer) if printer else None

    def discovered(self, ip=None):
        """The devices that polled /unlinked/ from address `ip` (all addresses
        when None), as the app's discovery list would group them."""
        with self._lock:
            return [d for addr, devices in self._discovery.items()
                    if ip is None or addr == ip for d in devices.values()]

    def queue_discovery_message(self, device_id, code, secret=None, ip=None,
                                type="verify_code", ttl=DISCOVERY_MESSAGE_TTL):
        """What the server queues when a user clicks "Link" on a discovered
        device (section 3.3): `{device_id, type: "verify_code", data: {code,
        secret}}`, handed to the next poll with that device_id (from `ip` only,
        when given). With secret None the data carries no secret, as the
        original secretless flow. Returns the message."""
        data = {"code": code}
        if secret is not None:
            data["secret"] = secret
        message = {"device_id": device_id, "type": type, "data": data}
        with self._lock:
            self._discovery_queue.append({"ip": ip, "device_id": device_id,
                                          "expires": time.monotonic() + ttl,
                                          "message": message})
        return message

    def browser_link(self, user, device_id, device_secret=None, code=None, ip=None):
        """What the app does when `user` clicks "Link" on a discovered device
        after the printer's page handed the browser its secret (section 3.3,
        hardened): a code for the user, queued with {code, secret} for the
        device (from `ip` only, when given). The server never checks the
        secret: the printer must. Returns the code."""
        code = code or self.issue_code(user=user)
        self.queue_discovery_message(device_id, code, secret=device_secret, ip=ip)
        return code

    def claim_otp(self, user, passcode, ttl=60.0):
        """The app's POST /api/v1/one_time_passcodes/ (section 3.4): maps the
        passcode a device shows to a new code of `user`. False if unknown."""
        with self._lock:
            entry = self._otps.get(passcode)
            if entry is None or time.monotonic() >= entry["expires"]:
                return False
        code = self.issue_code(user=user)
        with self._lock:
            entry["code"] = code
            entry["code_expires"] = time.monotonic() + ttl
        return True

    def delete_printer(self, token):
        """The owner deletes the printer in the app (section 11): its token
        fails on REST calls (401) and new connections (403) at once; a live
        websocket is closed (code 1000) when its next status arrives."""
        with self._lock:
            self.tokens.discard(token)
            self._deleted.add(token)
            for printer_id, printer in list(self._printers.items()):
                if printer["auth_token"] == token:
                    del self._printers[printer_id]

    def requests_to(self, path):
        """The REST requests made to `path`."""
        with self._lock:
            return [r for r in self.http_requests if r.path == path]

    # ---- the asyncio side ----

    def _run(self):
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: B902 - reported through start()
            self._error = e
            self._ready.set()
        finally:
            self._loop.close()

    def _app(self):
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[self._log_request])
        app.router.add_get("/ws/dev/", self._ws_handler)
        app.router.add_route("POST", "/api/v1/octo/verify/", self._verify)
        app.router.add_route("GET", "/api/v1/octo/verify/", self._verify)
        app.router.add_route("GET", "/api/v1/octo/printer/", self._get_printer)
        app.router.add_route("GET", "/api/v1/octo/ping/", self._get_printer)
        app.router.add_route("PATCH", "/api/v1/octo/printer/", self._patch_printer)
        app.router.add_route("POST", "/api/v1/octo/unlinked/", self._unlinked)
        # The app side (session auth, here the X-Test-User header).
        app.router.add_route("GET", "/api/v1/onetimeverificationcodes/", self._app_code)
        app.router.add_route("GET", "/api/v1/printer_discovery/", self._app_discovery_list)
        app.router.add_route("POST", "/api/v1/printer_discovery/", self._app_discovery_link)
        app.router.add_route("POST", "/api/v1/one_time_passcodes/", self._app_otp)
        app.router.add_route("GET", "/app/link-popup", self._app_link_popup)
        app.router.add_route("POST", "/api/v1/octo/pic/", self._pic)
        app.router.add_route("POST", "/api/v1/octo/printer_events/", self._printer_event)
        app.router.add_route("POST", "/api/v1/octo/g_code_files/", self._g_code_file)
        app.router.add_route("PATCH", "/api/v1/octo/g_code_files/{id}/", self._patch_g_code_file)
        # The file store the server's signed URLs point to (cloud storage, or
        # a self-hosted server's media folder).
        app.router.add_get("/_storage/{key}/{name}", self._storage_get)
        return app

    async def _main(self):
        self._stop = asyncio.Event()
        context = None
        if self.pki:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.pki["cert"], self.pki["key"])
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=2)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, ssl_context=context)
            await site.start()
            self.port = runner.addresses[0][1]
            self._runner = runner
            self._ready.set()
            await self._stop.wait()
            with self._lock:
                connections = [c for live in self.connections.values() for c in live]
            await asyncio.gather(*(self._close_connection(c, 1001, "server going away", 5)
                                   for c in connections), return_exceptions=True)
        finally:
            await runner.cleanup()
            self._runner = None
            self.connections = {}

    # -- the device websocket --

    async def _ws_handler(self, request):
        token = parse_bearer(request.headers.get("Authorization"))
        if self.refuse_all or token not in self.tokens:
            self.refused_count += 1
            # Daphne rejects a consumer that closes before accept() as
            # autobahn does: a status line "403 Access denied", no body.
            status = int(self.refuse_status)
            reason = "Access denied" if status == 403 else http.HTTPStatus(status).phrase
            response = web.Response(status=status, reason=reason)
            response.force_close()
            return response
        ws = web.WebSocketResponse(autoping=True, heartbeat=20, compress=False,
                                   max_msg_size=0, protocols=())
        if not ws.can_prepare(request).ok:
            response = web.Response(status=426, text="websocket upgrade required\n",
                                    headers={"Upgrade": "websocket"})
            response.force_close()
            return response
        await ws.prepare(request)
        connection = _Connection(token, ws, request)
        with self._lock:
            older = list(self.connections.get(token, []))
            self.connections.setdefault(token, []).append(connection)
            self.connect_count += 1
        try:
            for old in older:
                await self._close_connection(old, 4321, "another device connected with the same token")
            await ws.send_str(json.dumps({"remote_status": {"viewing": False, "should_watch": False},
                                          "type": "printer.message"}))
            await self._read(connection)
            if connection.close_requested.done():
                await self._do_close(connection, *connection.close_requested.result())
        except Exception:
            pass
        finally:
            with self._lock:
                live = self.connections.get(token, [])
                if connection in live:
                    live.remove(connection)
            if not connection.closed.done():
                connection.closed.set_result(None)
        return ws

    async def _read(self, connection):
        """Records what the device sends until it closes, or until the server
        is asked to close the connection (closing is done by this task, not
        from another one while a receive() is pending: aiohttp would then drop
        the transport without waiting for the peer's close frame)."""
        ws, close_requested = connection.ws, connection.close_requested
        while not close_requested.done():
            receiving = asyncio.ensure_future(ws.receive())
            await asyncio.wait({receiving, close_requested}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
                try:
                    await receiving
                except asyncio.CancelledError:
                    pass
                return
            message = receiving.result()
            if connection.silenced:
                await self._stay_silent(connection)
                return
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                received = Received(connection.token, message.data)
                if not self.silent:
                    with self._lock:
                        self.received.append(received)
                if message.type == WSMsgType.BINARY and self.binary_listener:
                    self.binary_listener(connection.token, message.data)
                if connection.token in self._deleted and is_status_message(received.json):
                    # The server reloads the printer for every status; a
                    # deleted one raises and the consumer closes (Daphne: 1000).
                    close_requested.set_result((1000, "", 12))
                    return
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return

    async def _stay_silent(self, connection):
        """A silenced connection reads nothing more (so the transport stays
        paused) until the server closes it or the peer is gone."""
        while not connection.close_requested.done():
            transport = connection.request.transport
            if transport is None or transport.is_closing():
                return
            try:
                await asyncio.wait_for(asyncio.shield(connection.close_requested), 0.5)
            except asyncio.TimeoutError:
                pass

    async def _do_close(self, connection, code, reason, timeout):
        try:
            # A silenced connection cannot hear the peer's close frame.
            wait = 0.2 if connection.silenced else timeout
            await asyncio.wait_for(connection.ws.close(code=code, message=reason.encode("utf-8")), wait)
        except Exception:
            pass
        finally:
            if connection.silenced:
                transport = connection.request.transport
                if transport is not None:
                    transport.abort()

    async def _close_connection(self, connection, code, reason, timeout=12):
        """Asks the connection's handler to close it; returns once it is closed."""
        if not connection.close_requested.done():
            connection.close_requested.set_result((code, reason, timeout))
        await asyncio.shield(connection.closed)

    def _targets(self, token):
        with self._lock:
            return list(self.connections.get(token, []))

    async def _send(self, token, message):
        sent = 0
        for connection in self._targets(token):
            try:
                if isinstance(message, (bytes, bytearray, memoryview)):
                    await connection.ws.send_bytes(bytes(message))
                else:
                    await connection.ws.send_str(message)
                sent += 1
            except Exception:
                pass  # it closed meanwhile
        return sent

    async def _silence(self, token):
        targets = self._targets(token)
        for connection in targets:
            connection.silenced = True
            transport = connection.request.transport
            if transport is not None:
                transport.pause_reading()
        return len(targets)

    async def _close(self, token, code, reason):
        targets = self._targets(token)
        for connection in targets:
            await self._close_connection(connection, code, reason)
        return len(targets)

    # -- the REST API --

    @web.middleware
    async def _log_request(self, request, handler):
        if request.path == "/ws/dev/":
            return await handler(request)
        record = HttpRequest(request.method, request.path, dict(request.query), request.remote,
                             dict(request.headers),
                             parse_token_header(request.headers.get("Authorization")))
        with self._lock:
            self.http_requests.append(record)
        try:
            response = await handler(request)
        except web.HTTPException as e:
            record.status = e.status
            raise
        except Exception:
            traceback.print_exc()  # a bug in this server: show it in the test's output
            record.status = 500
            return drf_json({"detail": "server error"}, status=500)
        record.status = response.status
        return response

    def _printer_by_token(self, token):
        if not token:
            return None
        for printer in self._printers.values():
            if printer["auth_token"] == token:
                return printer
        return None

    def _new_printer(self, user, name, token):
        printer = dict(PRINTER_DEFAULTS)
        printer.update({"id": next(self._ids), "name": name, "auth_token": token,
                        "created_at": _now_iso(), "user": user})
        printer["settings"] = {}
        self._printers[printer["id"]] = printer
        return printer

    def _authenticated_printer(self, request):
        """The printer of the request's `Authorization: Token`, or None (401).
        A token the test added to `tokens` at run time gets a printer."""
        token = parse_token_header(request.headers.get("Authorization"))
        if not token or token not in self.tokens:
            return None, None
        with self._lock:
            printer = self._printer_by_token(token)
            if printer is None:
                printer = self._new_printer(None, DEFAULT_PRINTER_NAME, token)
        return token, printer

    def _unauthorized(self, request):
        """The 401 that obico-server's PrinterAuthentication (DRF's
        TokenAuthentication) gives this request's Authorization header."""
        words = request.headers.get("Authorization", "").split()
        if not words or words[0].lower() != "token":
            body = NOT_AUTHENTICATED       # no header, or another scheme
        elif len(words) == 1:
            body = NO_CREDENTIALS
        elif len(words) > 2:
            body = TOKEN_WITH_SPACES
        else:
            body = INVALID_TOKEN           # unknown, rotated or deleted
        return drf_json(body, status=401, headers={"WWW-Authenticate": "Token"})

    @staticmethod
    def _public_printer(printer):
        return {k: v for k, v in printer.items() if k != "user"}

    async def _verify(self, request):
        if self.throttle_verify:
            return drf_json(
                {"detail": "Request was throttled. Expected available in 3600 seconds."},
                status=429, headers={"Retry-After": "3600"})
        code = request.query.get("code", "")
        if not re.fullmatch(r"[0-9]{6}", code):
            return drf_json({"detail": "Invalid code."}, status=400)
        with self._lock:
            entry = self._codes.get(code)
            if entry is None or entry["used"] or time.monotonic() >= entry["expires"]:
                # Http404("Requested resource does not exist"), as DRF words it.
                return drf_json({"detail": "Requested resource does not exist"}, status=404)
            entry["used"] = True
            token = secrets.token_hex(10)
            printer = self._printers.get(entry["printer_id"]) if entry["printer_id"] else None
            if printer is not None:       # re-link: rotate the token
                self.tokens.discard(printer["auth_token"])
                printer["auth_token"] = token
            else:
                printer = self._new_printer(entry["user"], entry["printer_name"], token)
            self.tokens.add(token)
            now = _now_iso()
            body = {"id": entry["id"], "code": code, "expired_at": now, "verified_at": now,
                    "printer": self._public_printer(printer)}
        return drf_json(body)

    def _printer_body(self, printer):
        return {"user": {"is_pro": False},
                "printer": {"is_pro": False, "id": printer["id"], "name": printer["name"],
                            "retract_on_pause": printer["retract_on_pause"]}}

    async def _get_printer(self, request):
        token, printer = self._authenticated_printer(request)
        if printer is None:
            return self._unauthorized(request)
        with self._lock:
            return drf_json(self._printer_body(printer))

    async def _patch_printer(self, request):
        token, printer = self._authenticated_printer(request)
        if printer is None:
            return self._unauthorized(request)
        try:
            body = await request.json()
        except ValueError:
            return drf_json({"detail": "JSON parse error"}, status=400)
        if not isinstance(body, dict):
            return drf_json({"detail": "JSON object expected"}, status=400)
        with self._lock:
            self.printer_patches.append((token, body))
            # The server runs .update(**request.data): any column, unknown ones 500.
            if any(key not in printer or key in ("id", "user") for key in body):
                return drf_json({"detail": "server error"}, status=500)
            if "auth_token" in body and body["auth_token"] != token:
                self.tokens.discard(token)
                self.tokens.add(body["auth_token"])
            printer.update(body)
            return drf_json(self._printer_body(printer))

    def _client_ip(self, request):
        if self.fixed_client_ip:
            return self.fixed_client_ip
        if self.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For", "")
            first = forwarded.split(",")[0].strip()
            if first:
                return first
        return request.remote

    async def _unlinked(self, request):
        try:
            body = await request.json()
        except ValueError:
            return drf_json({"detail": "JSON parse error"}, status=400)
        if not isinstance(body, dict):
            return drf_json({"detail": "JSON object expected"}, status=400)
        ip = self._client_ip(request)
        device_id = body.get("device_id")
        now = time.monotonic()
        messages = []
        with self._lock:
            self.unlinked_posts.append((ip, body, now))
            devices = self._discovery.setdefault(ip, {})
            seen = devices.get(device_id)
            if seen is None:
                devices[device_id] = Discovered(ip, device_id, dict(body))
            else:
                seen.info = dict(body)
                seen.last_seen = now
                seen.polls += 1
            self._discovery_queue = [q for q in self._discovery_queue if q["expires"] > now]
            for queued in list(self._discovery_queue):
                if len(messages) >= DISCOVERY_MESSAGES_PER_POLL:
                    break
                if queued["device_id"] == device_id and queued["ip"] in (None, ip):
                    self._discovery_queue.remove(queued)
                    messages.append(queued["message"])
                    self.discovery_delivered.append((ip, queued["message"]))
            answer = {"messages": messages}
            if "one_time_passcode" in body:   # an OTP-capable agent (section 3.4)
                answer.update(self._otp_answer(device_id, body.get("one_time_passcode")))
        return drf_json(answer)

    def _otp_answer(self, device_id, passcode):
        """Called with the lock held."""
        now = time.monotonic()
        entry = self._otps.get(passcode) if isinstance(passcode, str) else None
        if entry is None or entry["device_id"] != device_id or now >= entry["expires"]:
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
            while True:
                passcode = "".join(secrets.choice(alphabet) for _ in range(5))
                if passcode not in self._otps:
                    break
            entry = {"device_id": device_id, "expires": now + 7200, "code": None}
            self._otps[passcode] = entry
        code = ""
        if entry.get("code") and now < entry.get("code_expires", 0):
            code = entry["code"]
        return {"one_time_passcode": passcode,
                "one_time_passlink": "https://app.example/otp/?one_time_passcode=" + passcode,
                "verification_code": code}

    async def _app_link_popup(self, request):
        """A page on the server's origin that opens the printer's discovery
        page (?target=URL) in a popup and records every message it receives
        (window.received: [{origin, data}]), as the app does."""
        html = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>app</title></head><body>
<button id="open">Link a discovered printer</button>
<script>
window.received = [];
window.addEventListener("message", function (e) { window.received.push({origin: e.origin, data: e.data}); });
document.getElementById("open").addEventListener("click", function () {
  window.open(new URLSearchParams(location.search).get("target"), "tsdlink", "width=640,height=480");
});
</script></body></html>"""
        return web.Response(text=html, content_type="text/html")

    @staticmethod
    def _app_user(request):
        return request.headers.get("X-Test-User") or None

    async def _app_code(self, request):
        user = self._app_user(request)
        if not user:
            return drf_json({"detail": "not logged in"}, status=401)
        return drf_json({"code": self.issue_code(user=user)})

    async def _app_discovery_list(self, request):
        user = self._app_user(request)
        if not user:
            return drf_json({"detail": "not logged in"}, status=401)
        ip = self._client_ip(request)
        return drf_json([{"device_id": d.device_id, **d.info} for d in self.discovered(ip)])

    async def _app_discovery_link(self, request):
        user = self._app_user(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not user or not isinstance(body, dict):
            with self._lock:
                self.discovery_links.append((user, body, 401 if not user else 400))
            return drf_json({"detail": "bad request"}, status=401 if not user else 400)
        code = body.get("code")
        with self._lock:
            entry = self._codes.get(code)
            ok = entry is not None and entry["user"] == user and not entry["used"]
            self.discovery_links.append((user, body, 200 if ok else 403))
        if not ok:
            return drf_json({"detail": "not your code"}, status=403)
        # Like obico-server: queued for the device seen from the same address.
        self.queue_discovery_message(body.get("device_id"), code, secret=body.get("device_secret"),
                                     ip=self._client_ip(request))
        return drf_json({"queued": True})

    async def _app_otp(self, request):
        user = self._app_user(request)
        try:
            body = await request.json()
        except ValueError:
            body = {}
        if not user:
            return drf_json({"detail": "not logged in"}, status=401)
        if not self.claim_otp(user, str((body or {}).get("one_time_passcode", ""))):
            return drf_json({"detail": "unknown passcode"}, status=404)
        return drf_json({"claimed": True})

    @staticmethod
    def _form_fields(form):
        fields, files = {}, {}
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = value.file.read()
            else:
                fields[name] = value
        return fields, files

    async def _pic(self, request):
        token, printer = self._authenticated_printer(request)
        if printer is None:
            return self._unauthorized(request)
        fields, files = self._form_fields(await request.post())
        pic = files.get("pic")
        if pic is None:
            return drf_json(None, status=400)   # Response(status=HTTP_400_BAD_REQUEST)
        if not (pic.startswith(b"\xff\xd8\xff") or pic.startswith(b"\x89PNG\r\n\x1a\n")):
            return drf_json(None, status=400)   # as the reference documents it
        with self._lock:
            self.pics.append(Pic(token, pic, fields))
        return drf_json({"result": "ok"})

    async def _printer_event(self, request):
        token, printer = self._authenticated_printer(request)
        if printer is None:
            return self._unauthorized(request)
        fields, files = self._form_fields(await request.post())
        if fields.get("event_text") is None:
            # The server calls event_text.replace(...): a 500 without it.
            return drf_json({"detail": "server error"}, status=500)
        statuses = self.statuses(token)
        printing = bool(statuses) and (statuses[-1].json.get("current_print_ts") or -1) > 0
        with self._lock:
            self.printer_events.append(PrinterEvent(token, fields, files.get("snapshot"), printing))
        return drf_json({"result": "ok"})

    # ---- print from the app: the file library and its store ----

    def add_cloud_file(self, path, filename, *, declare_md5=False, md5=None, close_after=None,
                       chunked=False, host=None, rate=None):
        """A G-code file in the owner's library, as the app's upload leaves it
        (resident_printer null, no agent_signature), with the signed URL the
        server would hand out for it. declare_md5: the store sends
        Content-MD5 as cloud stores do (md5: that value instead, base64 of
        16 bytes); close_after: the store closes the connection after that
        many bytes; host: the URL's host (default: the server's own); rate:
        bytes per second (a slow store).
        Returns (row, url)."""
        import base64
        import hashlib

        digest = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(block)
        key = secrets.token_hex(8)
        safe = re.sub(r"[^\w\.]", "_", filename)
        with self._lock:
            now = _now_iso()
            row = {"id": next(self._ids), "created_at": now, "updated_at": now,
                   "filename": filename, "safe_filename": safe, "url": "", "num_bytes": os.path.getsize(path),
                   "agent_signature": None, "resident_printer": None}
            self.g_code_files.append(row)
            self.storage[key] = {
                "path": path, "redirect": None, "close_after": close_after, "chunked": chunked,
                "rate": rate,
                "md5": (md5 or base64.b64encode(digest.digest()).decode()) if (declare_md5 or md5) else None,
            }
        return row, self.storage_url(key, safe, host)

    def add_redirect(self, location, host=None):
        """A store URL that answers 302 to location (a signed URL that moved)."""
        key = secrets.token_hex(8)
        with self._lock:
            self.storage[key] = {"path": None, "redirect": location}
        return self.storage_url(key, "moved.gcode", host)

    def storage_url(self, key, name, host=None):
        scheme = "https" if self.pki else "http"
        host = host or ("localhost" if self.pki else self.host)
        return "{}://{}:{}/_storage/{}/{}".format(scheme, host, self.port, key, name)

    def g_code_file(self, file_id):
        with self._lock:
            return next((dict(row) for row in self.g_code_files if row["id"] == file_id), None)

    async def _storage_get(self, request):
        key = request.match_info["key"]
        with self._lock:
            stored = self.storage.get(key)
            self.storage_requests.append((key, request.remote))
        if stored is None:
            return web.Response(status=404)
        if stored["redirect"]:
            raise web.HTTPFound(stored["redirect"])
        size = os.path.getsize(stored["path"])
        if not (stored["chunked"] or stored["rate"] or stored["close_after"] is not None):
            # A whole file as a store sends it (sendfile where it can).
            headers = {"Content-Type": "application/octet-stream"}
            if stored["md5"]:
                headers["Content-MD5"] = stored["md5"]
            return web.FileResponse(stored["path"], headers=headers)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if stored["chunked"]:
            response.enable_chunked_encoding()
        else:
            response.content_length = size
        if stored["md5"]:
            response.headers["Content-MD5"] = stored["md5"]
        await response.prepare(request)
        limit = size if stored["close_after"] is None else min(size, stored["close_after"])
        sent = 0
        with open(stored["path"], "rb") as f:
            while sent < limit:
                block = f.read(min(256 * 1024, limit - sent))
                if not block:
                    break
                await response.write(block)
                sent += len(block)
                if stored["rate"]:
                    await asyncio.sleep(len(block) / stored["rate"])
        if sent < size:
            # The store goes away mid-way: the connection closes under the client.
            request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _patch_g_code_file(self, request):
        """The real server's partial update (GCodeFileView.partial_update):
        the fields the agent sends (agent_signature, safe_filename) are
        stored; the answer is the record. A file of another user: 404."""
        token, printer = self._authenticated_printer(request)
        if printer is None:
            return self._unauthorized(request)
        fields, _ = self._form_fields(await request.post())
        try:
            file_id = int(request.match_info["id"])
        except ValueError:
            return drf_json({"detail": "Not found."}, status=404)
        with self._lock:
            self.g_code_file_patches.append((token, file_id, dict(fields)))
            row = next((row for row in self.g_code_files if row["id"] == file_id), None)
            if row is None:
                return drf_json({"detail": "Not found."}, status=404)
            for name in ("agent_signature", "safe_filename"):
                if name in fields:
                    row[name] = fields[name]
            row["updated_at"] = _now_iso()
            return drf_json(dict(row))

    async def _g_code_file(self, request):
        """The G-code file record a print links to: an upsert on (printer,
        agent_signature, safe_filename), 201 when created, 200 when it
        existed, with the record (obico-protocol.md 2.2; only its id is
        documented: the other fields are the form's)."""
        token, printer = self._authenticated_printer(request)
        if printer is None:
            return self._unauthorized(request)
        fields, _ = self._form_fields(await request.post())
        missing = {name: ["This field is required."]
                   for name in ("filename", "safe_filename", "num_bytes") if not fields.get(name)}
        if not missing and not fields["num_bytes"].isdigit():
            missing = {"num_bytes": ["A valid integer is required."]}
        if missing:
            return drf_json(missing, status=400)
        with self._lock:
            # As the real server: a matching file either resides on this
            # printer or in the cloud (resident_printer null, the app's library).
            for row in self.g_code_files:
                if row["resident_printer"] in (printer["id"], None) and (
                        row["agent_signature"], row["safe_filename"]) == (
                        fields.get("agent_signature"), fields["safe_filename"]):
                    return drf_json(row)
            now = _now_iso()
            row = {"id": next(self._ids), "created_at": now, "updated_at": now,
                   "filename": fields["filename"], "safe_filename": fields["safe_filename"],
                   "url": fields.get("url"), "num_bytes": int(fields["num_bytes"]),
                   "agent_signature": fields.get("agent_signature"), "resident_printer": printer["id"]}
            self.g_code_files.append(row)
        return drf_json(row, status=201)
