# SPDX-License-Identifier: AGPL-3.0-or-later
"""A real OctoPrint in a throw-away base folder, for the demo and the tests.

It writes a config that needs no internet (no online check, no tracking, no
first-run wizard), enables OctoPrint's virtual printer, creates users with
OctoPrint's own CLI, starts ``octoprint serve`` on loopback and waits until the
server answers. Only the standard library and ``requests`` are used.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import requests
import yaml

LOOPBACK = "127.0.0.1"


def free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_in_use(port, host=LOOPBACK):
    """Whether something listens on host:port (a socket in TIME_WAIT does
    not count: OctoPrint binds with SO_REUSEADDR too)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def _merge(base, update):
    """Deep-merges update into base (dicts merged, everything else replaced)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def offline_config(extra_plugin_settings=None):
    """config.yaml for an OctoPrint that never reaches out to the internet."""
    plugins = {
        "virtual_printer": {"enabled": True},
        "tracking": {"enabled": False},
        "errortracking": {"enabled": False},
        "announcements": {"enabled_channels": []},
        "discovery": {"publicHost": LOOPBACK},
        "health_check": {"disabled": ["python_eol"]},
        "_disabled": ["discovery", "announcements"],
    }
    for name, values in (extra_plugin_settings or {}).items():
        plugins.setdefault(name, {}).update(values)
    return {
        "server": {
            "firstRun": False,
            "startOnceInSafeMode": False,
            "onlineCheck": {"enabled": False},
            "pluginBlacklist": {"enabled": False},
            # The plugin's own link wizard (version 1) is marked seen, so that
            # it does not cover the UI in tests; tests of the wizard remove it.
            "seenWizards": {"corewizard": 4, "tracking": None, "backup": None, "tsd": 1},
        },
        "devel": {"virtualPrinter": {"enabled": True}},
        "plugins": plugins,
        "webcam": _webcam_section((extra_plugin_settings or {}).get("classicwebcam")),
    }


def _webcam_section(classic):
    """A camera only when a test or the demo configures one. The URLs go in
    the legacy webcam section: on first start the classic webcam plugin
    moves them into its own settings (and would overwrite its own settings
    with that section's empty defaults)."""
    if not classic:
        return {"webcamEnabled": False}
    section = {"webcamEnabled": True}
    for key in ("stream", "snapshot"):
        if key in classic:
            section[key] = classic[key]
    return section


class OctoPrintInstance:
    """One ``octoprint serve`` process on loopback."""

    def __init__(self, basedir, port=None, python=None, host=LOOPBACK, env=None):
        self.basedir = os.path.abspath(basedir)
        self.port = port or free_port()
        self.host = host
        # Absolute (the process runs in basedir) but not resolved: a venv's
        # python must stay the venv's symlink.
        self.python = os.path.abspath(python) if python else sys.executable
        self.env = dict(os.environ if env is None else env)
        self.process = None
        self.log_path = os.path.join(self.basedir, "octoprint-stdout.log")
        self._log_file = None

    @property
    def url(self):
        return "http://{}:{}".format(self.host, self.port)

    @property
    def octoprint_log(self):
        return os.path.join(self.basedir, "logs", "octoprint.log")

    def _octoprint(self, *args, **kwargs):
        cmd = [self.python, "-m", "octoprint", "--basedir", self.basedir] + list(args)
        return subprocess.run(
            cmd,
            env=self.env,
            cwd=self.basedir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=kwargs.get("timeout", 120),
            check=False,
        )

    @property
    def incomplete_startup_marker(self):
        """OctoPrint's own marker: present at start, it starts in safe mode
        (third-party plugins off). Left behind by a start that did not finish."""
        return os.path.join(self.basedir, ".incomplete_startup")

    def prepare(self, users=(), extra_plugin_settings=None):
        """Writes config.yaml and creates users: (name, password, is_admin).

        A base folder used before (the demo's) keeps its other settings, but
        what this call asks for wins (the webcam URLs of this run, the
        plugin's settings), and an earlier start that did not finish does not
        put this one in safe mode. Returns True when such a start was found."""
        os.makedirs(self.basedir, exist_ok=True)
        config_path = os.path.join(self.basedir, "config.yaml")
        config = offline_config(extra_plugin_settings)
        if os.path.exists(config_path):
            with open(config_path) as f:
                existing = yaml.safe_load(f) or {}
            config = _merge(existing, config)
        unfinished = os.path.exists(self.incomplete_startup_marker)
        if unfinished:
            os.unlink(self.incomplete_startup_marker)
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        for name, password, is_admin in users:
            args = ["user", "add", name, "--password", password]
            if is_admin:
                args.append("--admin")
            done = self._octoprint(*args)
            output = done.stdout.decode("utf-8", "replace")
            if done.returncode != 0 or (
                "User created" not in output and "already exist" not in output
            ):
                raise RuntimeError("could not create user {}: {}".format(name, output))
        return unfinished

    def start(self, timeout=120):
        self._log_file = open(self.log_path, "ab")
        cmd = [
            self.python, "-m", "octoprint", "serve",
            "--basedir", self.basedir,
            "--host", self.host,
            "--port", str(self.port),
        ]
        if os.geteuid() == 0:
            # CI and the demo may run as root; OctoPrint refuses that unless told.
            cmd.append("--iknowwhatimdoing")
        self.process = subprocess.Popen(
            cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            # Not the checkout: the plugin must load from site-packages.
            cwd=self.basedir,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "OctoPrint exited with status {} before it was ready; see {}".format(
                        self.process.returncode, self.log_path
                    )
                )
            try:
                response = requests.get(self.url + "/online.txt", timeout=2)
                if response.status_code in (200, 204, 403, 404):
                    response = requests.get(self.url + "/", timeout=5)
                    if response.status_code == 200:
                        return
            except requests.RequestException as exc:
                last_error = exc
            time.sleep(0.5)
        raise TimeoutError(
            "OctoPrint did not answer at {} within {} s ({})".format(self.url, timeout, last_error)
        )

    def stop(self, timeout=30):
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def login(self, user, password):
        """A requests.Session logged in with a cookie, CSRF header set."""
        session = requests.Session()
        # The first page sets the CSRF cookie that every POST must echo.
        session.get(self.url + "/", timeout=30).raise_for_status()
        for cookie in session.cookies:
            if cookie.name.startswith("csrf_token"):
                session.headers["X-CSRF-Token"] = cookie.value
        response = session.post(
            self.url + "/api/login",
            json={"user": user, "pass": password, "remember": False},
            timeout=30,
        )
        response.raise_for_status()
        return session

    def create_api_key(self, user, password, app="tsd-tests"):
        """An application key for user, made through the appkeys plugin's API."""
        session = self.login(user, password)
        response = session.post(
            self.url + "/api/plugin/appkeys",
            json={"command": "generate", "app": app},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["api_key"]
