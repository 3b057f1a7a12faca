# SPDX-License-Identifier: AGPL-3.0-or-later
"""Small helpers shared by the pytest suites."""

import contextlib
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ADMIN = ("admin", "admin-password-for-tests")
VIEWER = ("viewer", "viewer-password-for-tests")
# A secret planted in config.yaml before OctoPrint starts: the plugin must
# scrub it and never expose it through the settings API or the log.
PLANTED_SECRET = "planted-secret-6f1c2d9e4b"


def output_dir(*parts):
    """Where tests leave files for people to look at (screenshots, logs)."""
    base = os.environ.get("TSD_TEST_OUTPUT") or os.path.join(REPO, "build", "test-output")
    path = os.path.join(base, *parts)
    os.makedirs(path, exist_ok=True)
    return path


def c_test_binary(name, env_var):
    """A program meson builds under tests/c: $env_var, or build/test/tests/c/NAME
    in this checkout. Fails the calling test when it is not there."""
    import pytest

    path = os.environ.get(env_var) or os.path.join(REPO, "build", "test", "tests", "c", name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            "{} not found at {} (set {}, or build it: meson setup build/test -Dtests=true "
            "&& meson compile -C build/test)".format(name, path, env_var)
        )
    return path


def wait_for(predicate, timeout=30.0, interval=0.25):
    """Polls predicate until it is truthy or timeout passes; returns its value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def browser_login(page, url, user, password):
    """Logs into OctoPrint's web UI with a Playwright page."""
    page.goto(url + "/", wait_until="domcontentloaded")
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login-button")
    # The main UI replaces the login page once OctoPrint has loaded everything.
    page.wait_for_selector("#navbar_show_settings", state="visible", timeout=60000)


def rss_mb(pid):
    """The resident memory of process pid, in MiB (from /proc)."""
    with open("/proc/{}/status".format(pid)) as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0


@contextlib.contextmanager
def octoprint_and_refserver(tmp_path_factory, name, users=None, grouped_users=()):
    """The reference server (its own CA) and a real OctoPrint whose plugin
    points at it; both are stopped afterwards. Yields (instance, server, an
    admin API key). users: (name, password, is_admin), by default the admin
    and a non-admin viewer; grouped_users: (name, password, OctoPrint group)."""
    from obico_refserver import ReferenceServer, make_pki
    from octoprint_instance import OctoPrintInstance

    pki = make_pki(str(tmp_path_factory.mktemp("pki-" + name)))
    server = ReferenceServer([], pki=pki).start()
    try:
        instance = OctoPrintInstance(str(tmp_path_factory.mktemp("octoprint-" + name)), python=sys.executable)
        instance.prepare(users=users if users is not None else [ADMIN + (True,), VIEWER + (False,)],
                         extra_plugin_settings={"tsd": {"ca_file": pki["ca"],
                                                        "server_url": server.endpoint_prefix}})
        for user, password, group in grouped_users:
            done = instance._octoprint("user", "add", user, "--password", password, "--group", group)
            if done.returncode != 0:
                raise RuntimeError("could not create user {}: {}".format(user, done.stdout))
        instance.start()
        try:
            yield instance, server, instance.create_api_key(*ADMIN)
        finally:
            instance.stop()
    finally:
        server.stop()
