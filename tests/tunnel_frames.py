# SPDX-License-Identifier: AGPL-3.0-or-later
"""The remote-access frames as the real server builds and reads them: BSON
with py-bson (the codec obico-server uses), obico-protocol.md §2.4 (d)/(e)
and §2.5. Used by the tests and the reference server's browser side."""

import time
import zlib

import bson


def http_request(ref, method, path, headers=None, body=None, **extra):
    """An http.tunnelv2 request frame (bytes)."""
    message = {"ref": ref, "method": method.lower(), "headers": dict(headers or {}), "path": path,
               "data": body}
    message.update(extra)
    return bson.dumps({"http.tunnelv2": message, "type": "printer.message", "as_binary": True})


def ws_request(ref, kind, path=None, data=None):
    """A ws.tunnel frame: kind is connect, tunnel_message or tunnel_close."""
    return bson.dumps({"ws.tunnel": {"ref": ref, "type": kind, "path": path, "data": data},
                       "type": "printer.message", "as_binary": True})


class HttpReply:
    """A decoded http.tunnelv2 reply; content is inflated when compressed."""

    def __init__(self, message):
        response = message["response"]
        self.ref = message["ref"]
        self.status = response["status"]
        self.compressed = response["compressed"]
        self.raw_content = response["content"]
        self.content = zlib.decompress(self.raw_content) if self.compressed else self.raw_content
        self.cookies = list(response["cookies"])
        self.headers = dict(response["headers"])

    def header(self, name):
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def __repr__(self):
        return "HttpReply({} {} {!r})".format(self.ref, self.status, self.content[:80])


def decode(data):
    """A binary frame from the device: ("http", HttpReply) or ("ws", dict)."""
    document = bson.loads(data)
    if "http.tunnelv2" in document:
        return "http", HttpReply(document["http.tunnelv2"])
    if "ws.tunnel" in document:
        return "ws", document["ws.tunnel"]
    raise ValueError("not a tunnel frame: {!r}".format(sorted(document)))


def replies(server, token):
    """Every http.tunnelv2 reply the server received from token, by ref."""
    found = {}
    for received in server.messages(token):
        if isinstance(received.text, (bytes, bytearray)):
            kind, reply = decode(bytes(received.text))
            if kind == "http":
                found[reply.ref] = reply
    return found


def wait_reply(server, token, ref, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = replies(server, token).get(ref)
        if reply is not None:
            return reply
        time.sleep(0.05)
    raise AssertionError("no reply to {} within {} s".format(ref, timeout))
