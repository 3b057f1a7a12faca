# SPDX-License-Identifier: AGPL-3.0-or-later
"""One detector per host (issue 14, part 3): several clients -- each the
plugin's own native supervisor (``_tsd.Detector`` with ``shared_dir``), in
processes of their own as OctoPrint instances would be -- share one
tsd-helper-shared and so one tsd-helper.

Shown here, with real processes and real models (tests/helper_models.py):
the first client starts the shared helper and the others use the same one;
a client killed with SIGKILL leaves it running and the others scoring; a
shared helper killed is started again by the next client that needs it
(one, not two); a client that floods frames does not starve another, and
its surplus frames are answered "late"; a model other than the one served
is refused; the shared helper exits when idle; and a folder, socket or
process that is not this user's alone is refused before anything is sent.

Full OctoPrint instances would add nothing here but minutes: the plugin
reaches tsd-helper-shared only through ``_tsd.Detector``, which these
clients drive, and reads its settings through farm.detector_options(),
tested at the end.
"""

import os
import queue
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import helper_models as hm
from tsd_testing import children_of, rss_mb, shared_helper_pids
from octoprint_tsd import bridge, farm

pytestmark = pytest.mark.skipif(not bridge.native_available(), reason="native module missing")

HERE = os.path.dirname(os.path.abspath(__file__))
# An AddressSanitizer build (asan-py) cannot run under an address-space limit.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
TIMEOUT = 60.0
HELLO = 3
RESP_LATE = 4
RESP_FAILED = 5

CLIENT = r"""
import os, sys, time
sys.path.insert(0, {tests!r})
from octoprint_tsd import bridge
import helper_models as hm

config, shared_dir, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
detector = bridge.new_detector(bridge.helper_path(), config, shared_dir=shared_dir,
                               backoff_min_ms=100, backoff_max_ms=400, deadline_ms=5000,
                               memory_limit_mb=-1 if "libasan" in os.environ.get("LD_PRELOAD", "")
                               else 0)
jpeg = hm.make_jpeg(320, 240, seed=3)
while True:
    started = time.monotonic()
    try:
        detector.detect(jpeg)
        print("ok", detector.health()["pid"], flush=True)
    except bridge.HelperError as exc:
        print("error", exc.code, str(exc).replace(chr(10), " "), flush=True)
    time.sleep(max(0.0, interval - (time.monotonic() - started)))
"""


def shared_detector(config, folder, **options):
    """The plugin's detector in shared mode, the socket's folder given."""
    if UNDER_ASAN:
        options.setdefault("memory_limit_mb", -1)
    return bridge.new_detector(bridge.helper_path(), config, shared_dir=folder, **options)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    base = tmp_path_factory.mktemp("shared-tiny")
    cfg, weights = hm.write_tiny_model(str(base))
    return hm.write_config(str(base / "helper.yaml"), cfg, weights, hm.TINY_SIDE)


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory):
    """About 0.1 s a frame here: enough for a flood to queue up."""
    base = tmp_path_factory.mktemp("shared-slow")
    cfg, weights = hm.write_yolov2_model(str(base), 224)
    return hm.write_config(str(base / "helper.yaml"), cfg, weights, 224)


@pytest.fixture
def shared_dir():
    """A fresh folder for the socket (short: sun_path is 108 bytes); every
    shared helper started in it is ended afterwards."""
    base = tempfile.mkdtemp(prefix="tsd-sh-")
    folder = os.path.join(base, "s")
    yield folder
    for pid in shared_helper_pids(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["rm", "-rf", base], check=False)


def settled_servers(folder):
    """shared_helper_pids(folder) once a second one started in the same instant has
    seen the first one listening and left."""
    deadline = time.monotonic() + 10
    while len(shared_helper_pids(folder)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return shared_helper_pids(folder)


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Client:
    """One instance's native detector in a process of its own."""

    def __init__(self, tmp_path, config, folder, interval=0.1):
        script = tmp_path / "client.py"
        script.write_text(CLIENT.format(tests=os.path.dirname(HERE)))
        self.proc = subprocess.Popen([sys.executable, str(script), config, folder,
                                      str(interval)], stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.split(None, 2))

    def results(self, oks, timeout=TIMEOUT):
        """Lines until oks "ok" lines came: [(kind, detail)]."""
        got, count = [], 0
        deadline = time.monotonic() + timeout
        while count < oks:
            left = deadline - time.monotonic()
            assert left > 0, "only {} answers in {} s: {}".format(count, timeout, got[-5:])
            fields = self.lines.get(timeout=left)
            got.append(fields)
            count += fields[0] == "ok"
        return got

    def results_until_served_by_another(self, server, timeout=TIMEOUT):
        """Lines until an answer came from a shared helper other than server."""
        got = []
        deadline = time.monotonic() + timeout
        while not got or got[-1][0] != "ok" or int(got[-1][1]) == server:
            left = deadline - time.monotonic()
            try:
                got.append(self.lines.get(timeout=left))
            except queue.Empty:
                pytest.fail("no other shared helper in {} s: {}".format(timeout, got[-5:]))
        return got

    def drain(self):
        while not self.lines.empty():
            self.lines.get_nowait()

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def clients():
    started = []
    yield started
    for client in started:
        if client.proc.poll() is None:
            client.kill()


def last_pid(results):
    return int([r for r in results if r[0] == "ok"][-1][1])


def test_instances_share_one_helper_and_outlive_each_other(tiny_config, shared_dir, clients,
                                                           tmp_path):
    for _ in range(3):
        clients.append(Client(tmp_path, tiny_config, shared_dir))
    first = [client.results(3) for client in clients]
    server = last_pid(first[0])
    # One shared helper for the three, running one tsd-helper.
    assert {last_pid(r) for r in first} == {server}
    assert settled_servers(shared_dir) == [server]
    helpers = children_of(server)
    assert len(helpers) == 1
    assert os.readlink("/proc/{}/exe".format(helpers[0])).endswith("/tsd-helper")
    mode = os.stat(os.path.join(shared_dir, "helper.sock")).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(shared_dir).st_mode) == 0o700

    # An instance dies: the shared helper and its tsd-helper go on, the
    # others keep scoring with them.
    clients[0].kill()
    for client in clients[1:]:
        client.drain()
        results = client.results(5)
        assert all(r[0] == "ok" for r in results), results
        assert last_pid(results) == server
    assert alive(server) and children_of(server) == helpers

    # Its tsd-helper crashes: the shared helper reports it to the instance
    # whose frame it was, as a helper of its own would, and restarts it.
    for client in clients[1:]:
        client.drain()
    os.kill(helpers[0], signal.SIGKILL)
    seen = [client.results(5) for client in clients[1:]]
    codes = {r[1] for results in seen for r in results if r[0] == "error"}
    assert "crashed" in codes and codes <= {"crashed", "backoff"}, seen
    assert {last_pid(results) for results in seen} == {server}
    restarted_helpers = children_of(server)
    assert len(restarted_helpers) == 1 and restarted_helpers != helpers
    helpers = restarted_helpers

    # The shared helper dies: the next frame fails as a crash, and the
    # instances start exactly one new shared helper between them.
    os.kill(server, signal.SIGKILL)
    after = [client.results_until_served_by_another(server) for client in clients[1:]]
    for results in after:
        assert any(r[0] == "error" and r[1] == "crashed" for r in results), results
    restarted = {last_pid(r) for r in after}
    assert len(restarted) == 1 and server not in restarted
    assert settled_servers(shared_dir) == list(restarted)
    # The tsd-helper of the killed one went with its pipes.
    deadline = time.monotonic() + 10
    while alive(helpers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(helpers[0])


def hello(config, deadline_ms=5000, start_ms=30000):
    payload = struct.pack("<II", deadline_ms, start_ms) + config.encode()
    return hm.request(HELLO, 1, payload)


def read_answer(sock):
    header = b""
    while len(header) < 16:
        chunk = sock.recv(16 - len(header))
        if not chunk:
            return None
        header += chunk
    _, _, kind, _, request_id, length = hm.HEADER.unpack(header)
    payload = b""
    while len(payload) < length:
        chunk = sock.recv(length - len(payload))
        if not chunk:
            return None
        payload += chunk
    return kind, request_id, payload


def test_a_flood_does_not_starve_another_instance(slow_config, shared_dir):
    steady = shared_detector(slow_config, shared_dir, deadline_ms=5000)
    jpeg = hm.make_jpeg(320, 240, seed=4)
    try:
        alone = []
        for _ in range(4):
            started = time.monotonic()
            steady.detect(jpeg)
            alone.append(time.monotonic() - started)
        one_frame = sorted(alone)[1]  # the first start is slower

        flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        flood.connect(os.path.join(shared_dir, "helper.sock"))
        flood.sendall(hello(slow_config))
        assert read_answer(flood)[0] == hm.RESP_PONG
        answers = {"sent": 0}

        def read_all():
            while True:
                got = read_answer(flood)
                if got is None:
                    return
                answers[got[0]] = answers.get(got[0], 0) + 1

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        sent = 0
        for request_id in range(2, 62):
            flood.sendall(hm.request(hm.REQ_JPEG, request_id, jpeg))
            sent += 1
        # Meanwhile the steady instance scores frames one by one: each waits
        # at most for the flooder's one frame in progress.
        during = []
        for _ in range(6):
            started = time.monotonic()
            steady.detect(jpeg)  # raises on late/any failure
            during.append(time.monotonic() - started)
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while sum(v for k, v in answers.items() if k != "sent") < sent and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        flood.close()
        reader.join(5)
        assert sum(v for k, v in answers.items() if k != "sent") == sent, answers
        # The flooder's surplus was dropped unscored, not queued without end.
        assert answers.get(RESP_LATE, 0) >= sent // 2, answers
        assert answers.get(hm.RESP_DETECTIONS, 0) >= 1, answers
        # A fair turn: one frame of the flooder's and its own, with room for
        # a busy machine -- far from the 60 frames a queue in arrival order
        # would have put first.
        assert max(during) < 4 * one_frame + 0.5, (during, one_frame)
    finally:
        steady.stop()


def test_each_instance_has_its_own_deadline(slow_config, shared_dir):
    """An instance with a long deadline keeps the helper busy; one whose
    deadline is a little over one frame gets "late" for a frame that would
    have to wait for the other's, instead of an answer after its deadline."""
    patient = shared_detector(slow_config, shared_dir,
                              deadline_ms=10000)
    jpeg = hm.make_jpeg(320, 240, seed=6)
    times = []
    for _ in range(4):
        started = time.monotonic()
        patient.detect(jpeg)
        times.append(time.monotonic() - started)
    one_frame = sorted(times)[1]
    hurried = shared_detector(slow_config, shared_dir,
                              deadline_ms=int(one_frame * 1200), backoff_min_ms=100,
                              backoff_max_ms=200)
    stop = threading.Event()
    patient_errors = []

    def keep_busy():
        while not stop.is_set():
            try:
                patient.detect(jpeg)
            except bridge.HelperError as exc:
                patient_errors.append(exc.code)

    busy = threading.Thread(target=keep_busy)
    busy.start()
    codes = []
    try:
        for _ in range(10):
            try:
                hurried.detect(jpeg)
                codes.append("ok")
            except bridge.HelperError as exc:
                codes.append(exc.code)
            time.sleep(0.05)
    finally:
        stop.set()
        busy.join(30)
        patient.stop()
        hurried.stop()
    assert "late" in codes, codes
    assert patient_errors == []  # its deadline is long: never late


def test_a_hung_helper_is_killed_by_the_shared_helper(tiny_config, shared_dir, tmp_path):
    """The shared helper supervises its tsd-helper as an instance does: one
    that stops answering is killed at the deadline, and the shared helper
    itself goes on."""
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    server_path = os.path.join(os.path.dirname(bridge.helper_path()), "tsd-helper-shared")
    detector = bridge.new_detector(str(hang), tiny_config, shared_dir=shared_dir,
                                   shared_server=server_path, start_timeout_ms=1000,
                                   deadline_ms=1000, backoff_min_ms=100, backoff_max_ms=200,
                                   memory_limit_mb=-1 if UNDER_ASAN else 0)
    try:
        with pytest.raises(bridge.HelperError) as info:
            detector.detect(hm.make_jpeg(64, 64))
        assert info.value.code == "timeout"
        (server,) = shared_helper_pids(shared_dir)
        log = os.path.join(shared_dir, "helper.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(log) as f:
                if "no answer from the helper within 1000 ms; killed" in f.read():
                    break
            time.sleep(0.1)
        with open(log) as f:
            assert "no answer from the helper within 1000 ms; killed" in f.read()
        assert alive(server) and children_of(server) == []  # killed and reaped
    finally:
        detector.stop()


def test_a_removed_socket_is_made_again(tiny_config, shared_dir):
    """A cleaner removes the socket file while an instance is connected: the
    shared helper (which holds the lock, so no other can take over) listens
    on a new one within seconds, and a new instance reaches it."""
    first = shared_detector(tiny_config, shared_dir)
    second = shared_detector(tiny_config, shared_dir)
    try:
        first.detect(hm.make_jpeg(64, 64))
        server = first.health()["pid"]
        os.unlink(os.path.join(shared_dir, "helper.sock"))
        second.detect(hm.make_jpeg(64, 64))  # waits until the socket is back
        assert second.health()["pid"] == server
        first.detect(hm.make_jpeg(64, 64))   # the old connection never broke
        assert settled_servers(shared_dir) == [server]
        with open(os.path.join(shared_dir, "helper.log")) as f:
            assert "was removed or replaced; listening on a new one" in f.read()
    finally:
        first.stop()
        second.stop()


def test_a_shared_helper_that_does_not_start_is_not_waited_for_at_every_frame(tiny_config,
                                                                              shared_dir):
    detector = shared_detector(tiny_config, shared_dir, shared_server="/bin/false",
                               start_timeout_ms=500, backoff_min_ms=5000, backoff_max_ms=10000)
    try:
        with pytest.raises(bridge.HelperError) as info:
            detector.detect(hm.make_jpeg(64, 64))
        assert info.value.code == "timeout" and "did not listen" in str(info.value)
        started = time.monotonic()
        with pytest.raises(bridge.HelperError) as info:
            detector.detect(hm.make_jpeg(64, 64))
        assert info.value.code == "backoff" and time.monotonic() - started < 0.2
    finally:
        detector.stop()


def test_another_model_is_refused(tiny_config, slow_config, shared_dir):
    first = shared_detector(tiny_config, shared_dir)
    other = shared_detector(slow_config, shared_dir)
    try:
        first.detect(hm.make_jpeg(64, 64))
        with pytest.raises(bridge.HelperError) as info:
            other.detect(hm.make_jpeg(64, 64))
        assert info.value.code == "config"
        assert "serves the model of" in str(info.value)
        first.detect(hm.make_jpeg(64, 64))  # the first one is not disturbed
    finally:
        first.stop()
        other.stop()


def test_a_hello_with_a_nul_in_its_path_is_refused(tiny_config, shared_dir):
    """The served configuration's path, a NUL and more: refused as
    malformed (before, the path up to the NUL was checked and the hello
    accepted); a well-formed hello on a new connection still works."""
    first = shared_detector(tiny_config, shared_dir)
    try:
        first.detect(hm.make_jpeg(64, 64))  # the shared helper is up
        for path, want in ((tiny_config + "\0/elsewhere.yaml", RESP_FAILED), (tiny_config, hm.RESP_PONG)):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(TIMEOUT)
            sock.connect(os.path.join(shared_dir, "helper.sock"))
            try:
                sock.sendall(hello(path))
                kind, _, payload = read_answer(sock)
                assert kind == want, (kind, payload)
                if want == RESP_FAILED:
                    assert b"a malformed hello" in payload, payload
                    assert read_answer(sock) is None  # and closed on
            finally:
                sock.close()
        first.detect(hm.make_jpeg(64, 64))  # the instance is not disturbed
    finally:
        first.stop()


def test_idle_shared_helper_exits(tiny_config, shared_dir):
    detector = shared_detector(tiny_config, shared_dir,
                               shared_idle_exit_s=1)
    detector.detect(hm.make_jpeg(64, 64))
    server = detector.health()["pid"]
    assert alive(server)
    # The memory the status shows is the shared helper's and its tsd-helper's.
    (helper,) = children_of(server)
    assert detector.health()["rss_bytes"] >= (rss_mb(server) + rss_mb(helper)) * 1048576 * 0.9
    time.sleep(1.5)
    assert alive(server)  # a client is connected: not idle
    detector.stop()       # disconnects only
    deadline = time.monotonic() + 10
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server)
    assert not os.path.exists(os.path.join(shared_dir, "helper.sock"))


def refused(config, folder):
    detector = shared_detector(config, folder,
                               start_timeout_ms=3000)
    try:
        with pytest.raises(bridge.HelperError) as info:
            detector.detect(hm.make_jpeg(64, 64))
        return info.value
    finally:
        detector.stop()


def listener(path, mode=0o600, owner=None):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, owner)
    sock.listen(4)
    sock.settimeout(5)
    return sock


def bytes_received(sock):
    conn, _ = sock.accept()
    conn.settimeout(2)
    try:
        return conn.recv(100)
    finally:
        conn.close()


def test_a_folder_open_to_others_is_refused(tiny_config, shared_dir):
    os.makedirs(shared_dir, mode=0o755)
    os.chmod(shared_dir, 0o755)
    error = refused(tiny_config, shared_dir)
    assert error.code == "insecure" and "mode 0700" in str(error)
    assert os.listdir(shared_dir) == [] and shared_helper_pids(shared_dir) == []


def test_a_socket_with_another_mode_is_refused(tiny_config, shared_dir):
    os.makedirs(shared_dir, mode=0o700)
    sock = listener(os.path.join(shared_dir, "helper.sock"), mode=0o666)
    try:
        error = refused(tiny_config, shared_dir)
        assert error.code == "insecure" and "0666" in str(error)
        assert bytes_received(sock) == b""  # not even the hello
    finally:
        sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_a_socket_of_another_user_is_refused(tiny_config, shared_dir):
    os.makedirs(shared_dir, mode=0o700)
    sock = listener(os.path.join(shared_dir, "helper.sock"), owner=65534)
    try:
        error = refused(tiny_config, shared_dir)
        assert error.code == "insecure" and "uid 65534" in str(error)
        assert bytes_received(sock) == b""
    finally:
        sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_a_process_of_another_user_behind_the_socket_is_refused(tiny_config, shared_dir):
    # The socket file is right (this uid's, 0600) but the process listening
    # on it runs as another user: SO_PEERCRED tells.
    os.makedirs(shared_dir, mode=0o700)
    path = os.path.join(shared_dir, "helper.sock")
    code = ("import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o600)\n"
            "os.setgid(65534); os.setuid(65534); s.listen(4); print('ready', flush=True)\n"
            "c, _ = s.accept(); c.settimeout(3)\n"
            "print(repr(c.recv(100)), flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        error = refused(tiny_config, shared_dir)
        assert error.code == "insecure" and "runs as uid 65534" in str(error)
        assert proc.stdout.readline().strip() == "b''"
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_the_shared_helper_refuses_a_client_of_another_user(tiny_config):
    # tsd-helper-shared running as uid 65534; this test (uid 0, which may
    # reach any folder) connects and is closed on, unanswered.
    base = tempfile.mkdtemp(prefix="tsd-sh-")
    os.chmod(base, 0o755)
    folder = os.path.join(base, "s")
    os.mkdir(folder, 0o700)
    os.chown(folder, 65534, 65534)
    config = os.path.join(base, "helper.yaml")
    with open(config, "w") as f:
        f.write("model_type: onnx\n")
    os.chmod(config, 0o644)
    # Copies of the installed programs that uid 65534 can reach: the
    # checkout (and the venv in it) may sit in a folder only root may enter.
    installed = os.path.dirname(bridge.helper_path())
    server, helper = (shutil.copy(os.path.join(installed, name), base)
                      for name in ("tsd-helper-shared", "tsd-helper"))
    proc = subprocess.Popen([server, "--dir", folder, "--helper", helper,
                             "--config", config, "--idle-exit-s", "30"],
                            user=65534, group=65534, stderr=subprocess.PIPE, text=True)
    try:
        path = os.path.join(folder, "helper.sock")
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        try:
            sock.sendall(hello(config))
        except OSError:
            pass  # already closed
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        sock.close()
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert "refused a connection from uid 0" in err, err
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        subprocess.run(["rm", "-rf", base], check=False)


def test_settings_choose_the_shared_helper():
    own = "/tmp/octoprint-tsd-{}".format(os.geteuid())
    assert farm.detector_options(False, {}) == {}
    assert farm.detector_options(False, {"TSD_SHARED_HELPER": "0"}) == {}
    assert farm.detector_options(False, {"TSD_SHARED_HELPER": "1", "XDG_RUNTIME_DIR": "/run/user/7"}) \
        == {"shared_dir": "/run/user/7/octoprint-tsd"}
    assert farm.detector_options(False, {"TSD_SHARED_HELPER": "1"}) == {"shared_dir": own}
    assert farm.detector_options(False, {"TSD_SHARED_HELPER": "/srv/farm/tsd/"}) == \
        {"shared_dir": "/srv/farm/tsd"}
    # The shared_helper setting (a farm file's detection.shared_helper) where
    # the variable is unset or empty; the variable decides where it is set.
    assert farm.detector_options(True, {}) == {"shared_dir": own}
    assert farm.detector_options(True, {"TSD_SHARED_HELPER": " ", "XDG_RUNTIME_DIR": "/run/user/7"}) \
        == {"shared_dir": "/run/user/7/octoprint-tsd"}
    assert farm.detector_options(True, {"TSD_SHARED_HELPER": "0"}) == {}
    assert farm.detector_options(True, {"TSD_SHARED_HELPER": "/srv/farm/tsd"}) == {"shared_dir": "/srv/farm/tsd"}
    # Unusable: this instance runs its own helper, and says why.
    logged = []

    class Logger:
        def error(self, fmt, *args):
            logged.append(fmt % args)

    assert farm.detector_options(True, {"TSD_SHARED_HELPER": "relative/dir"}, Logger()) == {}
    assert "absolute" in logged[0]
