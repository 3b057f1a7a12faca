# SPDX-License-Identifier: AGPL-3.0-or-later
"""The browser side of OctoPrint remote access, as obico-server has it
(obico-protocol.md §2.8), for the reference server: an HTTP listener on
loopback whose every request becomes an http.tunnelv2 frame to one printer,
and whose /sockjs/ and /websocket upgrades become ws.tunnel sockets. A real
browser pointed at it drives the printer's OctoPrint through the device
websocket only.

As the server does: Host, Origin, Referer, Accept-Encoding and every
X-Forwarded-* field are stripped (the server's own cookies and basic-auth do
not exist here); the other headers, OctoPrint's cookies included, travel;
the reply's raw Set-Cookie fields get Max-Age=7776000 (Secure only over
TLS, which this listener does not speak) and a copy of every *_P<port>
cookie named with this listener's port; 483 after 55 s without a reply;
octoprint_close closes the browser's socket with code 3000. It runs on the
reference server's event loop.
"""

import asyncio
import itertools
import re
import time

from aiohttp import WSMsgType, web

import tunnel_frames

REPLY_TIMEOUT_S = 55
STRIPPED = {"host", "origin", "referer", "accept-encoding", "connection", "upgrade",
            "content-length", "transfer-encoding", "keep-alive"}
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive",
              "content-encoding"}
COOKIE_PORT = re.compile(r"^([^=;]*_P)(\d+)=")


class TunnelFrontend:
    def __init__(self, server, token, host="127.0.0.1"):
        self.server = server
        self.token = token
        self.host = host
        self.port = None
        self.requests = []            # (method, path, status) of every browser request
        self._pending = {}            # ref -> Future of an HttpReply
        self._sockets = {}            # ref -> the browser's WebSocketResponse
        self._ids = itertools.count(1)
        self._runner = None

    @property
    def url(self):
        return "http://{}:{}".format(self.host, self.port)

    def start(self):
        self.server.binary_listener = self._from_device
        self.server._call(self._start())
        return self

    def stop(self):
        self.server.binary_listener = None
        if self._runner is not None:
            self.server._call(self._runner.cleanup())
            self._runner = None

    async def _start(self):
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # ---- from the device (on the server's loop) --------------------------------

    def _from_device(self, token, data):
        if token != self.token:
            return
        try:
            kind, message = tunnel_frames.decode(bytes(data))
        except Exception:
            return
        if kind == "http":
            future = self._pending.pop(message.ref, None)
            if future is not None and not future.done():
                future.set_result(message)
        else:
            ws = self._sockets.get(message["ref"])
            if ws is not None:
                asyncio.ensure_future(self._to_browser(message["ref"], ws, message))

    async def _to_browser(self, ref, ws, message):
        try:
            if message["type"] == "octoprint_close":
                self._sockets.pop(ref, None)
                await ws.close(code=3000)
            elif isinstance(message["data"], str):
                await ws.send_str(message["data"])
            elif message["data"] is not None:
                await ws.send_bytes(bytes(message["data"]))
        except Exception:
            pass  # the browser went away meanwhile

    # ---- from the browser ---------------------------------------------------------

    def _forwarded_headers(self, request):
        return {name: value for name, value in request.headers.items()
                if name.lower() not in STRIPPED and not name.lower().startswith("x-forwarded-")}

    async def _handle(self, request):
        path = request.path_qs
        wants_socket = request.headers.get("Upgrade", "").lower() == "websocket"
        if wants_socket and (path.startswith("/sockjs/") or path.startswith("/websocket")):
            return await self._socket(request, path)
        body = await request.read()
        method = request.method.lower()
        ref = "v2.{}.{}.{}.{}".format(next(self._ids), method, time.time(), request.path)
        future = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        await self.server._send(self.token, tunnel_frames.http_request(
            ref, method, path, self._forwarded_headers(request), body or None))
        try:
            reply = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._pending.pop(ref, None)
            self.requests.append((request.method, path, 483))
            return web.Response(status=483, text="the printer did not answer in time")
        self.requests.append((request.method, path, reply.status))
        response = web.Response(status=reply.status, body=reply.content)
        for name, value in reply.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers[name] = value
        for cookie in reply.cookies:
            for variant in self._cookie_variants(cookie):
                response.headers.add("Set-Cookie", variant)
        return response

    def _cookie_variants(self, cookie):
        cookie = cookie + "; Max-Age=7776000" if "max-age" not in cookie.lower() else cookie
        variants = [cookie]
        match = COOKIE_PORT.match(cookie)
        if match and match.group(2) != str(self.port):
            variants.append(COOKIE_PORT.sub(r"\g<1>{}=".format(self.port), cookie, count=1))
        return variants

    async def _socket(self, request, path):
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        ref = "{:.6f}".format(time.time())
        while ref in self._sockets:
            ref += "0"
        self._sockets[ref] = ws
        self.requests.append(("WS", path, 101))
        await self.server._send(self.token, tunnel_frames.ws_request(ref, "connect", path))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    data = message.data
                elif message.type == WSMsgType.BINARY:
                    data = bytes(message.data)
                else:
                    break
                await self.server._send(self.token, tunnel_frames.ws_request(
                    ref, "tunnel_message", data=data))
        finally:
            if self._sockets.pop(ref, None) is not None:
                await self.server._send(self.token, tunnel_frames.ws_request(ref, "tunnel_close"))
        return ws
