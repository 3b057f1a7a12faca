# SPDX-License-Identifier: AGPL-3.0-or-later
"""The remote-control rig of the integration tests: a real OctoPrint with
its virtual printer and this plugin, linked to the reference server over TLS
on loopback (test_remote.py, test_parity_server.py).

The G-code the virtual printer received is read from OctoPrint's serial.log.
"""

import contextlib
import os
import re
import sys

import requests

from octoprint_tsd import bridge
from obico_refserver import ReferenceServer, make_pki
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, keep_octoprint_logs, print_gcode, ready_virtual_printer, wait_for

TOKEN = "a1b2c3d4e5f6a7b8c9d0"


def gcode_file(lines=400):
    """A print that lasts a while on the virtual printer, heaters on."""
    return print_gcode(lines, sleep_ms=150, tool_temp=210, bed_temp=60)


class Linked:
    def __init__(self, instance, server, api_key):
        self.instance = instance
        self.server = server
        self.api_key = api_key

    @property
    def headers(self):
        return {"X-Api-Key": self.api_key}

    def api(self, method, path, **kwargs):
        return requests.request(method, self.instance.url + path, headers=self.headers,
                                timeout=30, **kwargs)

    def status(self):
        return self.api("GET", "/api/plugin/tsd").json()

    def printer_state(self):
        return self.api("GET", "/api/printer").json().get("state", {}).get("text")

    def serial_log(self):
        path = os.path.join(self.instance.basedir, "logs", "serial.log")
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def sent_since(self, mark):
        """G-code lines sent after mark, without line numbers and checksums."""
        lines = []
        for line in self.serial_log()[mark:].splitlines():
            if "Send: " in line:
                code = line.split("Send: ", 1)[1].strip()
                code = re.sub(r"^N\d+\s+", "", code)
                lines.append(re.sub(r"\*\d+$", "", code))
        return lines

    def send(self, message):
        return self.server.send(TOKEN, message)


@contextlib.contextmanager
def linked_octoprint(tmp_path_factory, name, time_scale, plugin_settings=None, octoprint_settings=None,
                     front=None, env=None, before_start=None):
    """A real OctoPrint linked to the reference server with TOKEN, its
    virtual printer connected and remote-test.gcode uploaded; the server's
    cadence scaled by time_scale (TSD_TIME_SCALE); plugin_settings: more
    plugins' settings (the plugin's own merged with its CA file);
    octoprint_settings: top-level sections of config.yaml (accessControl...).
    front: called with the server, returns the port the plugin dials instead
    (a fault proxy in front of it); env: OctoPrint's environment;
    before_start: called with the base folder before OctoPrint starts.
    Yields a Linked."""
    pki = make_pki(str(tmp_path_factory.mktemp("pki-" + name)))
    server = ReferenceServer([TOKEN], pki=pki).start()
    port = front(server) if front else server.port
    basedir = str(tmp_path_factory.mktemp("octoprint-" + name))
    data = os.path.join(basedir, "data", "tsd")
    os.makedirs(data)
    record = bridge.save_token(data, "https://localhost:{}".format(port), TOKEN, "Test printer")
    assert record is None, record  # no error
    env = dict(os.environ if env is None else env)
    env["TSD_TIME_SCALE"] = str(time_scale)
    instance = OctoPrintInstance(basedir, python=sys.executable, env=env)
    plugin_settings = dict(plugin_settings or {})
    plugin_settings["tsd"] = dict(plugin_settings.get("tsd") or {}, ca_file=pki["ca"])
    instance.prepare(users=[ADMIN + (True,)], extra_plugin_settings=plugin_settings)
    # serial.log: the G-code the printer received, for the assertions below.
    import yaml
    config_path = os.path.join(basedir, "config.yaml")
    with open(config_path) as f:
        config = yaml.safe_load(f)
    config.setdefault("serial", {})["log"] = True
    for section, values in (octoprint_settings or {}).items():
        config.setdefault(section, {}).update(values)
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f)
    if before_start is not None:
        before_start(basedir)
    instance.start()
    try:
        linked = Linked(instance, server, instance.create_api_key(*ADMIN))
        ready_virtual_printer(linked, "remote-test.gcode", gcode_file())
        yield linked
    finally:
        instance.stop()
        server.stop()
        keep_octoprint_logs(basedir, name)


def ack_of(linked, ref):
    """The printer's answer to the server's call ref, or None."""
    for message in linked.server.messages(TOKEN):
        body = (message.json or {}).get("passthru")
        if body and body.get("ref") == ref:
            return body
    return None


def start_print(linked):
    response = linked.api("POST", "/api/files/local/remote-test.gcode",
                          json={"command": "select", "print": True})
    assert response.status_code == 204
    assert wait_for(lambda: linked.printer_state() == "Printing", 60)
    # Past the heat-up and the first Z move: the hotend must be hot for the
    # retraction, and the current Z known for the lift.
    assert wait_for(lambda: (linked.api("GET", "/api/job").json()["progress"]["filepos"] or 0) > 400, 120)
