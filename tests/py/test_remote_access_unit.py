# SPDX-License-Identifier: AGPL-3.0-or-later
"""remote_access.py: the outside address and the local-trust check, with
OctoPrint's own trusted-proxy and LAN logic (octoprint.util.net)."""

from octoprint_tsd import remote_access


class Settings:
    """The parts of OctoPrint's settings() the check reads."""

    def __init__(self, autologin=True, networks=("127.0.0.0/8", "::1/128"), trust_localhost=True,
                 proxies=()):
        self.values = {
            ("accessControl", "autologinLocal"): autologin,
            ("accessControl", "localNetworks"): list(networks),
            ("server", "reverseProxy", "trustLocalhostProxies"): trust_localhost,
            ("server", "reverseProxy", "trustedProxies"): list(proxies),
        }

    def get(self, path):
        return self.values.get(tuple(path))

    def getBoolean(self, path):
        return bool(self.values.get(tuple(path)))


def test_default_autologin_is_no_problem():
    settings = Settings()
    outside = remote_access.outside_address(settings)
    assert outside in remote_access.OUTSIDE_CANDIDATES
    assert remote_access.local_trust_problem(settings, "127.0.0.1", outside) is None


def test_autologin_off_is_never_a_problem():
    settings = Settings(autologin=False, networks=["0.0.0.0/0"], trust_localhost=False)
    assert remote_access.local_trust_problem(settings, "127.0.0.1", "198.51.100.1") is None


def test_loopback_not_trusted_as_proxy_refuses():
    """OctoPrint would ignore X-Forwarded-For and see 127.0.0.1: autologin."""
    problem = remote_access.local_trust_problem(Settings(trust_localhost=False), "127.0.0.1",
                                                "198.51.100.1")
    assert problem and "127.0.0.1" in problem and "trustLocalhostProxies" in problem


def test_outside_address_avoids_local_networks():
    settings = Settings(networks=["127.0.0.0/8", "198.51.100.0/24"])
    outside = remote_access.outside_address(settings)
    assert outside != "198.51.100.1"
    assert remote_access.local_trust_problem(settings, "127.0.0.1", outside) is None


def test_every_candidate_local_refuses():
    settings = Settings(networks=["0.0.0.0/0"])
    outside = remote_access.outside_address(settings)
    assert remote_access.local_trust_problem(settings, "127.0.0.1", outside)


def test_a_specific_listen_address_is_the_source():
    """OctoPrint bound to a LAN address: the connection comes from it, and
    that is no trusted proxy, so with that LAN in localNetworks autologin
    would apply: refused."""
    assert remote_access.octoprint_address("10.1.2.3", 5000) == ("10.1.2.3", 5000)
    assert remote_access.octoprint_address("0.0.0.0", 80) == ("127.0.0.1", 80)
    assert remote_access.octoprint_address("::", 80) == ("127.0.0.1", 80)
    assert remote_access.octoprint_address(None, 80) == ("127.0.0.1", 80)
    assert remote_access.octoprint_address("octopi.local", 80) == ("127.0.0.1", 80)
    settings = Settings(networks=["10.0.0.0/8"])
    assert remote_access.local_trust_problem(settings, "10.1.2.3", "198.51.100.1")


def test_logins_are_logged_without_secrets():
    lines = []

    class Logger:
        def info(self, fmt, *args):
            lines.append(fmt % args)

        warning = info

    remote_access.log_login(Logger(), '{"status": 200, "user": "admin"}')
    remote_access.log_login(Logger(), '{"status": 403, "user": ""}')
    remote_access.log_login(Logger(), 'not json')
    assert lines == ["[remote access] 'admin' logged in to OctoPrint through the server's remote access",
                     "[remote access] a login to OctoPrint through the server's remote access failed (HTTP 403)"]
