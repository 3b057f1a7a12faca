# SPDX-License-Identifier: AGPL-3.0-or-later
"""Replay of the 2021-08-19 incident (obico-protocol.md 3.2): the server sees
every client at one address, as behind a load balancer that stopped
forwarding client IPs, and 73 users link 73 printers at the same time through
auto-discovery and codes. Every printer must end linked to its own user.

72 printers are simulated with the plugin's own discovery and link code (the
INSTALLED octoprint_tsd.discovery and .link, each in its own poll thread,
each with its own LAN address); the 73rd is a real OctoPrint from .venv with
the plugin, linked by its admin through the plugin's discovery page.
"""

import ast
import logging
import os
import re
import secrets
import sys
import threading

import pytest
import requests

import octoprint_tsd
from octoprint_tsd import discovery as disc
from octoprint_tsd.link import verify_code

from obico_refserver import ReferenceServer, make_pki
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, VIEWER, wait_for

N_PRINTERS = 73
LB_ADDRESS = "198.51.100.7"     # what the server sees for everyone
REAL_USER = "user-00"           # owns the real OctoPrint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pki = make_pki(str(tmp_path_factory.mktemp("pki-incident")))
    server = ReferenceServer([], pki=pki).start()
    server.fixed_client_ip = LB_ADDRESS
    basedir = str(tmp_path_factory.mktemp("octoprint-incident"))
    instance = OctoPrintInstance(basedir, python=sys.executable)
    instance.prepare(users=[ADMIN + (True,), VIEWER + (False,)],
                     extra_plugin_settings={"tsd": {"ca_file": pki["ca"],
                                                    "server_url": server.endpoint_prefix}})
    instance.start()
    try:
        yield instance, server, pki, instance.create_api_key(*ADMIN)
    finally:
        instance.stop()
        server.stop()


def status(instance, api_key):
    return requests.get(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key},
                        timeout=10).json()


class App:
    """One user's browser session on the server's app (X-Test-User)."""

    def __init__(self, server, user):
        self.server, self.user = server, user
        self.http = requests.Session()
        self.http.headers["X-Test-User"] = user
        self.ca = server.pki["ca"]   # per request: REQUESTS_CA_BUNDLE would override a session's

    def code(self):
        response = self.http.get(self.server.endpoint_prefix + "/api/v1/onetimeverificationcodes/", timeout=30,
                                 verify=self.ca)
        response.raise_for_status()
        return response.json()["code"]

    def discovered(self):
        return self.http.get(self.server.endpoint_prefix + "/api/v1/printer_discovery/", timeout=30,
                             verify=self.ca).json()

    def link_discovered(self, device_id, device_secret):
        body = {"code": self.code(), "device_id": device_id, "device_secret": device_secret}
        response = self.http.post(self.server.endpoint_prefix + "/api/v1/printer_discovery/", json=body,
                                  timeout=30, verify=self.ca)
        response.raise_for_status()
        return body["code"]


class SimPrinter:
    """A printer running the plugin's discovery and link code, on its own LAN."""

    def __init__(self, index, server, ca):
        self.index = index
        self.lan = "192.168.{}.{}".format(index, 20)   # a /24 per household
        self.token = None
        self.server, self.ca = server, ca
        self.lock = threading.Lock()
        self.discovery = disc.Discovery(self._config, self._link, lambda: self.token is not None,
                                        logging.getLogger("sim-printer.{}".format(index)),
                                        session=requests.Session())

    def _config(self):
        return {"server_url": self.server.endpoint_prefix, "ca_file": self.ca, "host_or_ip": self.lan,
                "port": 80, "plugin_version": octoprint_tsd.__name__}

    def _link(self, code):
        result = verify_code(self.server.endpoint_prefix, code, ca_file=self.ca)
        with self.lock:
            self.token = result["token"]
        return result

    def admin_allows(self):
        """The owner, on this printer's LAN, clicks "Allow" on its page."""
        return self.discovery.hand_out_secret(self.discovery.device_id, self.lan[:-2] + "50")


def real_octoprint_secret(instance, device_id):
    """The real OctoPrint's admin opens the discovery page and clicks Allow."""
    admin = instance.login(*ADMIN)
    page = admin.get(instance.url + "/plugin/tsd/discovery", params={"device_id": device_id}, timeout=30)
    assert page.status_code == 200, page.text
    csrf = re.search(r'var CSRF_TOKEN = "([^"]+)";', page.text).group(1)
    answer = admin.post(instance.url + "/plugin/tsd/discovery/allow", json={"device_id": device_id},
                        headers={"X-CSRF-Token": csrf}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["device_secret"]


def test_forwarded_for_changes_nothing(setup):
    """X-Forwarded-For never turns a refused request into an allowed one."""
    instance, server, _, api_key = setup
    device_id = wait_for(lambda: (status(instance, api_key).get("discovery") or {}).get("device_id"), 60)
    assert device_id, "the real OctoPrint should announce itself while unlinked"
    url = instance.url + "/plugin/tsd/discovery"
    viewer = instance.login(*VIEWER)
    for client, why in ((viewer, "Only an OctoPrint administrator"), (requests, "Sign in")):
        plain = client.get(url, params={"device_id": device_id}, timeout=30)
        forged = client.get(url, params={"device_id": device_id}, timeout=30,
                            headers={"X-Forwarded-For": "192.168.1.10", "X-Real-IP": "192.168.1.10"})
        assert plain.status_code == forged.status_code == 403
        assert why in plain.text and plain.text == forged.text
        assert "CSRF_TOKEN" not in forged.text and not re.search(r"[0-9a-f]{64}", forged.text)
    for headers in ({}, {"X-Forwarded-For": "192.168.1.10"}):
        refused = viewer.post(instance.url + "/plugin/tsd/discovery/allow", json={"device_id": device_id},
                              headers=headers, timeout=30)
        assert refused.status_code in (400, 403) and "device_secret" not in refused.text
    # The peer is what OctoPrint's WSGI layer says: behind a trusted (here
    # loopback) proxy that is the forwarded client. A public one is refused.
    admin = instance.login(*ADMIN)
    public = admin.get(url, params={"device_id": device_id}, headers={"X-Forwarded-For": "8.8.8.8"},
                       timeout=30)
    assert public.status_code == 403 and "local network" in public.text
    assert admin.get(url, params={"device_id": device_id}, timeout=30).status_code == 200
    # The plugin never reads X-Forwarded-For (or X-Real-IP) itself: no code
    # string in the installed package names them (docstrings aside).
    package = os.path.dirname(octoprint_tsd.__file__)
    for name in os.listdir(package):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(package, name), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                lowered = node.value.lower()
                assert "forwarded" not in lowered and "real-ip" not in lowered and "real_ip" not in lowered, \
                    (name, node.value[:80])


def test_incident_replay(setup):
    instance, server, pki, api_key = setup
    printers = [SimPrinter(i, server, pki["ca"]) for i in range(1, N_PRINTERS)]
    users = ["user-{:02d}".format(i) for i in range(N_PRINTERS)]   # users[i] owns printers[i-1]; users[0] the real one
    for printer in printers:
        assert printer.discovery.start_window("test")
    real_device = wait_for(lambda: (status(instance, api_key).get("discovery") or {}).get("device_id"), 60)
    assert real_device
    # The incident's condition: everyone at one address sees every printer.
    assert wait_for(lambda: len(App(server, "user-01").discovered()) >= N_PRINTERS, 60)

    # Phase 1: some users try to link printers that are not theirs, with the
    # device_id from the shared list and a guessed (or no) secret.
    victims = {7: None, 14: secrets.token_hex(32), 21: "", 28: secrets.token_hex(32)}
    attackers = {}
    for n, (victim, guess) in enumerate(victims.items()):
        attacker = App(server, "mallory-{}".format(n))
        attackers[attacker.user] = victim
        attacker.link_discovered(printers[victim - 1].discovery.device_id, guess or None)
    mallory = App(server, "mallory-real")
    mallory.link_discovered(real_device, secrets.token_hex(32))
    # Each victim refuses and closes its window: nothing is linked.
    assert wait_for(lambda: all(not printers[v - 1].discovery.window_active() for v in victims), 30)
    assert wait_for(lambda: not status(instance, api_key)["discovery"]["active"], 30)
    assert "refused" in (status(instance, api_key)["discovery"]["last"] or "")
    for attacker in list(attackers) + ["mallory-real"]:
        assert server.printers_of(attacker) == []
    assert all(printers[v - 1].token is None for v in victims)
    assert status(instance, api_key)["link"]["linked"] is False

    # Phase 2: all 73 link at the same time. Victims press "Discover" again
    # (a new secret); every third user links with a typed code instead.
    for v in victims:
        assert printers[v - 1].discovery.start_window("Discover again")
    reopened = requests.post(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key},
                             json={"command": "discover"}, timeout=30)
    assert reopened.status_code == 200 and reopened.json()["active"] is True
    errors = []

    def run_user(i):
        try:
            app = App(server, users[i])
            if i == 0:
                app.link_discovered(real_device, real_octoprint_secret(instance, real_device))
                return
            printer = printers[i - 1]
            if i % 3 == 0:
                printer._link(app.code())          # the owner types the code on the printer
            else:
                app.link_discovered(printer.discovery.device_id, printer.admin_allows())
        except Exception as exc:  # reported below
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=run_user, args=(i,)) for i in range(N_PRINTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert wait_for(lambda: all(p.token for p in printers), 90), \
        [p.index for p in printers if not p.token]
    assert wait_for(lambda: status(instance, api_key)["link"]["linked"], 60)

    # Ownership: every printer is its own user's, and each user has exactly one.
    for printer in printers:
        assert server.owner_of(printer.token) == users[printer.index]
    for user in users:
        assert len(server.printers_of(user)) == 1, user
    (real,) = server.printers_of(REAL_USER)
    assert wait_for(lambda: server.live(real["auth_token"]) == 1, 60)
    assert len({p.token for p in printers} | {real["auth_token"]}) == N_PRINTERS
    for attacker in list(attackers) + ["mallory-real"]:
        assert server.printers_of(attacker) == []
    # No user can reach another's printer: a printer's token is known only to
    # its owner's account (the server's printers_of), and no printer sits in two.
    owners = {}
    for user in users + list(attackers):
        for row in server.printers_of(user):
            assert row["auth_token"] not in owners
            owners[row["auth_token"]] = user
    assert len(owners) == N_PRINTERS
    for printer in printers:
        printer.discovery.stop()
    with open(instance.octoprint_log, encoding="utf-8") as handle:
        log = handle.read()
    assert real["auth_token"] not in log


def test_one_time_passcode_links_only_its_claimer(setup):
    """OTP (obico-protocol.md 3.4) at the same shared address: the admin
    starts it, the server's passcode is shown, the user who types it into the
    app gets the printer; nobody else does."""
    _, server, pki, _ = setup
    printer = SimPrinter(200, server, pki["ca"])
    other = SimPrinter(201, server, pki["ca"])
    try:
        assert printer.discovery.start_otp() and other.discovery.start_otp()
        passcode = wait_for(lambda: printer.discovery.status()["otp"]["passcode"], 30)
        other_passcode = wait_for(lambda: other.discovery.status()["otp"]["passcode"], 30)
        assert re.fullmatch(r"[a-z0-9]{5}", passcode) and passcode != other_passcode
        assert server.claim_otp("otp-owner", passcode)
        assert wait_for(lambda: printer.token is not None, 30)
        assert server.owner_of(printer.token) == "otp-owner"
        assert wait_for(lambda: not printer.discovery.otp_active(), 10)
        assert other.token is None and other.discovery.otp_active()
        assert server.printers_of("otp-owner") == [server.printer(printer.token)]
    finally:
        printer.discovery.stop()
        other.discovery.stop()
