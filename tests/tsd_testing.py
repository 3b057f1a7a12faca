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


def processes():
    """(pid, parent pid, argv as bytes) of every process /proc still shows."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        yield int(entry), parent, argv


def children_of(pid):
    """The pids of process pid's children (those /proc still shows)."""
    found = []
    try:
        tasks = os.listdir("/proc/{}/task".format(pid))
    except OSError:
        return found
    for tid in tasks:
        try:
            with open("/proc/{}/task/{}/children".format(pid, tid)) as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return found


def shared_helper_pids(folder):
    """Pids of the tsd-helper-shared processes serving folder."""
    return [pid for pid, _, argv in processes()
            if argv[0].endswith(b"tsd-helper-shared") and folder.encode() in argv]


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


def print_gcode(lines, sleep_ms, tool_temp=None, bed_temp=None, layer_every=None):
    """A print that lasts a while on the virtual printer: moves that extrude,
    each followed by a G4 sleep; with temperatures, heat up first and turn
    the hotend off at the end. layer_every: a new layer (Z up 0.2 mm, as a
    slicer writes it) before every that many moves; None: one layer."""
    out = []
    if tool_temp is not None:
        out += ["M104 S%d" % tool_temp, "M140 S%d" % bed_temp, "M109 S%d" % tool_temp, "M190 S%d" % bed_temp]
    out += ["G28", "G90", "M82", "G1 Z0.3 F600", "G92 E0"]
    for i in range(lines):
        if layer_every and i and i % layer_every == 0:
            out += [";LAYER_CHANGE", "G1 Z{:.1f} F600".format(0.3 + 0.2 * (i // layer_every))]
        out.append("G1 X{} Y{} E{:.3f} F1200".format(10 + i % 50, 10 + (i * 7) % 50, i * 0.05))
        out.append("G4 P{}".format(sleep_ms))
    if tool_temp is not None:
        out.append("M104 S0")
    return "\n".join(out) + "\n"


def ready_virtual_printer(rig, gcode_name, gcode):
    """Connects OctoPrint to its virtual printer and uploads one print file;
    rig has api(method, path, **kwargs) and printer_state()."""
    response = rig.api("POST", "/api/connection",
                       json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200})
    assert response.status_code == 204, response.text
    assert wait_for(lambda: rig.printer_state() == "Operational", 60)
    files = {"file": (gcode_name, gcode)}
    assert rig.api("POST", "/api/files/local", files=files).status_code == 201


def idle_printer_plugin(uploads, free_margin_mb, agent_version):
    """A mocked plugin whose OctoPrint has an idle, operational printer and
    an upload folder: what the cloud print path reads (the shim's unit tests
    and bench_cloudprint)."""
    from unittest import mock

    plugin = mock.Mock(name="plugin")
    printer = plugin._printer
    printer.is_operational.return_value = True
    printer.is_ready.return_value = True
    printer.is_printing.return_value = False
    printer.is_paused.return_value = False
    printer.get_current_data.return_value = {"state": {"text": "Operational", "flags": {"operational": True}}}
    printer.get_current_temperatures.return_value = {}
    plugin.current_printer_profile.return_value = {}
    plugin._settings.get_float.return_value = None
    plugin._settings.get.return_value = None  # remote_calls: every call the allow-list knows
    plugin._settings.get_int.side_effect = lambda path: {
        "cloud_print_max_mb": 500, "cloud_print_free_margin_mb": free_margin_mb}[path[0]]
    plugin._settings.global_get_basefolder.return_value = uploads
    plugin.agent_version.return_value = agent_version
    return plugin


def keep_octoprint_logs(basedir, name):
    """Copies OctoPrint's logs beside the other test output, for a post-mortem."""
    import shutil

    logs = os.path.join(basedir, "logs")
    if os.path.isdir(logs):
        shutil.copytree(logs, output_dir("octoprint-%s-logs" % name if name else "octoprint-logs"),
                        dirs_exist_ok=True)
