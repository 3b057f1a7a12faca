# SPDX-License-Identifier: AGPL-3.0-or-later
"""sec10: the inference helper runs in a sandbox.

The helper decodes JPEGs that the camera (anyone on its network) controls.
After its model is loaded it must not be able to read files (the token),
open sockets, run programs or start processes; it keeps only its pipes, has
no core dumps and cannot gain privileges. And it still scores frames.

The attempts come from tsd-helper-sandbox-probe, a test-only build of the
helper with a probe (helper/test_probe.h) that TSD_HELPER_PROBE triggers
after the model is loaded; the shipped helper has no probe. The probe comes
from $TSD_HELPER_PROBE_BIN, else build/test/helper/ of this checkout
(meson setup build/test -Dtests=true && meson compile -C build/test).

A sanitizer build of the helper runs without the seccomp filter (the ASan
and UBSan runtimes read /proc and start a symbolizer when they report): the
tests that need the filter skip there, saying so.
"""

import os
import signal
import subprocess
import time

import pytest

import helper_models as hm
from octoprint_tsd import _tsd, bridge

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_PROBE = os.path.join(REPO, "build", "test", "helper", "tsd-helper-sandbox-probe")
TOKEN = "sec10-secret-token-0123456789"
SANDBOX_ON = "sandbox seccomp"
SANDBOX_OFF_SANITIZER = "sandbox off (sanitizer build)"


def probe_bin():
    path = os.environ.get("TSD_HELPER_PROBE_BIN") or DEFAULT_PROBE
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            "tsd-helper-sandbox-probe not found at {} (set TSD_HELPER_PROBE_BIN, or build it: "
            "meson setup build/test -Dtests=true && meson compile -C build/test)".format(path))
    return path


def installed_bin():
    return os.environ.get("TSD_HELPER") or bridge.helper_path()


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    base = tmp_path_factory.mktemp("sandbox-model")
    cfg, weights = hm.write_tiny_model(str(base), deterministic=True)
    # Several threads: OpenCV's worker pool must work under the filter.
    return hm.write_config(str(base / "helper.yaml"), cfg, weights, hm.TINY_SIDE, threads=4)


@pytest.fixture
def helper_env(monkeypatch):
    """The helpers' environment: no preloaded sanitizer runtime (the asan-py
    suite preloads one into this process), and a probe when asked for."""
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("TSD_HELPER_PROBE", raising=False)

    def set_probe(probe):
        monkeypatch.setenv("TSD_HELPER_PROBE", probe)

    return set_probe


def ready_line(helper):
    """The helper's "ready" line, once it answers a ping."""
    helper.send(hm.request(hm.REQ_PING, 7))
    kind, request_id, _ = helper.receive(timeout=60)
    assert (kind, request_id) == (hm.RESP_PONG, 7)
    for line in helper.stderr_text().splitlines():
        if ": ready (" in line:
            return line
    raise AssertionError("no ready line: " + helper.stderr_text())


def skip_unless_filtered(line):
    if SANDBOX_OFF_SANITIZER in line:
        pytest.skip("sanitizer build of the helper: its seccomp filter is off by design")
    assert SANDBOX_ON in line, line


def proc_status(pid):
    with open("/proc/{}/status".format(pid)) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def core_limit(pid):
    with open("/proc/{}/limits".format(pid)) as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    raise AssertionError("no core limit")


def score_frames(helper, count=4):
    for i in range(count):
        kind, request_id, payload = helper.detect(hm.make_jpeg(640, 480, seed=i), request_id=i + 1)
        assert (kind, request_id) == (hm.RESP_DETECTIONS, i + 1), payload
        assert b'"detections":[' in payload


@pytest.mark.parametrize("which", ["installed", "probe"])
def test_sec10_sandboxed_helper_still_scores_frames_and_exits_cleanly(
        which, model_config, helper_env, tmp_path):
    path = installed_bin() if which == "installed" else probe_bin()
    helper = hm.Helper(path, model_config, str(tmp_path / "stderr.log"))
    try:
        line = ready_line(helper)
        skip_unless_filtered(line)
        status = proc_status(helper.proc.pid)
        assert status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2"  # a filter
        assert core_limit(helper.proc.pid) == ["0", "0"]
        score_frames(helper)
        helper.close_stdin()
        assert helper.wait() == 0, helper.stderr_text()
    finally:
        helper.stop()


def test_sec10_shipped_helper_has_no_probe():
    with open(installed_bin(), "rb") as f:
        assert b"TSD_HELPER_PROBE" not in f.read()


# The attempts a compromised decoder would make, each after the model is
# loaded: the kernel kills the helper at once (SIGSYS), before the call
# returns; the token never shows up anywhere.
@pytest.mark.parametrize("attempt", ["open-token", "socket", "exec", "fork"])
def test_sec10_forbidden_calls_kill_the_helper(attempt, model_config, helper_env, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    _tsd.token_save(str(folder), "https://app.example.com", TOKEN)
    probe = {
        "open-token": "open:" + str(folder / "tsd-token"),
        "socket": "socket",
        "exec": "exec:/bin/true",
        "fork": "fork",
    }[attempt]

    # The same build without an attempt is sandboxed (else the test means nothing).
    plain = hm.Helper(probe_bin(), model_config, str(tmp_path / "plain.log"))
    try:
        skip_unless_filtered(ready_line(plain))
    finally:
        plain.stop()

    helper_env(probe)
    helper = hm.Helper(probe_bin(), model_config, str(tmp_path / "stderr.log"))
    try:
        returncode = helper.wait(timeout=60)
        text = helper.stderr_text()
        assert "probe: trying" in text
        assert "not stopped by the sandbox" not in text, text
        assert returncode == -signal.SIGSYS, text
        assert TOKEN not in text
    finally:
        helper.stop()


# The supervisor names the sandbox as the reason the helper died.
def test_sec10_supervisor_reports_a_sandbox_kill(model_config, helper_env, tmp_path):
    plain = hm.Helper(probe_bin(), model_config, str(tmp_path / "plain.log"))
    try:
        skip_unless_filtered(ready_line(plain))
    finally:
        plain.stop()
    helper_env("socket")
    detector = _tsd.Detector(probe_bin(), model_config, start_timeout_ms=30000)
    try:
        with pytest.raises(_tsd.HelperError) as raised:
            detector.ping()
        assert raised.value.code == "crashed"
        assert "sandbox" in str(raised.value) and "SIGSYS" in str(raised.value), str(raised.value)
        assert detector.health()["last_signal"] == signal.SIGSYS
    finally:
        detector.stop()


# Whatever descriptors the helper inherits, it keeps only its pipes: stdin,
# the protocol's stdout and stderr (descriptor 1 is pointed at stderr).
def test_sec10_helper_keeps_only_its_pipes(model_config, helper_env, tmp_path):
    stray = tmp_path / "stray.txt"
    stray.write_text("not for the helper")
    fd = os.open(str(stray), os.O_RDONLY)
    stderr = open(str(tmp_path / "stderr.log"), "wb")
    proc = subprocess.Popen([installed_bin(), "--config", model_config], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=stderr, pass_fds=(fd,))
    os.close(fd)
    try:
        proc.stdin.write(hm.request(hm.REQ_PING, 1))
        proc.stdin.flush()
        header = proc.stdout.read(hm.HEADER.size)
        assert len(header) == hm.HEADER.size
        deadline = time.monotonic() + 5
        while True:
            fd_dir = "/proc/{}/fd".format(proc.pid)
            targets = {name: os.readlink(os.path.join(fd_dir, name)) for name in os.listdir(fd_dir)}
            if len(targets) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not any(str(stray) in t for t in targets.values()), targets
        assert len(targets) == 4 and {"0", "1", "2"} <= set(targets), targets
    finally:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
        stderr.close()
