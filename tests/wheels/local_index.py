# SPDX-License-Identifier: AGPL-3.0-or-later
"""A package index on loopback that stands in for PyPI in tests/wheels: the
simple API (PEP 503 HTML, which pip reads, and PEP 691 JSON, which
OctoPrint's ``pypi_release`` check reads) over the files of some folders."""

import hashlib
import html
import http.server
import json
import os
import re
import threading
import urllib.parse

LOOPBACK = "127.0.0.1"


def project_of(filename):
    """The normalized project name of a wheel or sdist file name."""
    name = filename.split("-", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


class LocalIndex:
    def __init__(self, folders):
        self.folders = list(folders)
        self._server = None
        self._thread = None

    def files(self):
        found = {}
        for folder in self.folders:
            for name in sorted(os.listdir(folder)):
                if name.endswith((".whl", ".tar.gz")):
                    found.setdefault(name, os.path.join(folder, name))
        return found

    @property
    def url(self):
        return "http://{}:{}".format(LOOPBACK, self._server.server_address[1])

    @property
    def simple_url(self):
        return self.url + "/simple/"

    def file_url(self, name):
        return self.url + "/files/" + urllib.parse.quote(name)

    def start(self):
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                files = index.files()
                if path.startswith("/files/"):
                    disk = files.get(path[len("/files/"):])
                    if disk is None:
                        return self._send(404, b"not found", "text/plain")
                    with open(disk, "rb") as f:
                        return self._send(200, f.read(), "application/octet-stream")
                if not path.startswith("/simple/"):
                    return self._send(404, b"not found", "text/plain")
                project = re.sub(r"[-_.]+", "-", path[len("/simple/"):].strip("/")).lower()
                mine = [(name, disk) for name, disk in sorted(files.items()) if project_of(name) == project]
                if not mine:
                    return self._send(404, b"not found", "text/plain")
                accept = self.headers.get("Accept", "")
                if "application/vnd.pypi.simple.v1+json" in accept and "text/html" not in accept:
                    body = {"meta": {"api-version": "1.0"}, "name": project, "files": [
                        {"filename": name, "url": index.file_url(name),
                         "hashes": {"sha256": _sha256(disk)}} for name, disk in mine]}
                    return self._send(200, json.dumps(body).encode(), "application/vnd.pypi.simple.v1+json")
                links = "".join('<a href="{}#sha256={}">{}</a>\n'.format(
                    html.escape(index.file_url(name)), _sha256(disk), html.escape(name)) for name, disk in mine)
                self._send(200, ("<!DOCTYPE html><html><body>\n" + links + "</body></html>\n").encode(),
                           "text/html")

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


_hashes = {}


def _sha256(path):
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _hashes:
        with open(path, "rb") as f:
            _hashes[key] = hashlib.sha256(f.read()).hexdigest()
    return _hashes[key]
