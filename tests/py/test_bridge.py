# SPDX-License-Identifier: AGPL-3.0-or-later
"""The native module through the bridge: the EventQueue seen from Python (GIL
released while waiting, limits, shutdown), the event pump, the helper probe."""

import os
import stat
import threading
import time
from unittest import mock

import pytest

from octoprint_tsd import bridge
from octoprint_tsd import _tsd


def test_module_version_and_libraries():
    assert _tsd.__version__.count(".") == 2
    libraries = _tsd.library_versions()
    assert set(libraries) == {"libwebsockets", "openssl", "jansson", "libyaml", "libturbojpeg"}
    assert all(isinstance(v, str) and v for v in libraries.values())
    assert bridge.native_info()["version"] == _tsd.__version__


def test_queue_limits_are_validated():
    with pytest.raises(ValueError):
        _tsd.EventQueue(max_events=0)
    with pytest.raises(ValueError):
        _tsd.EventQueue(max_bytes=0)
    with pytest.raises(ValueError):
        _tsd.EventQueue(max_events=_tsd.EVQ_MAX_EVENTS_LIMIT + 1)
    with pytest.raises(ValueError):
        _tsd.EventQueue(max_bytes=_tsd.EVQ_MAX_BYTES_LIMIT + 1)
    with pytest.raises(TypeError):
        _tsd.EventQueue().push(1, "text is not bytes")
    with pytest.raises(ValueError):
        _tsd.EventQueue().pop(timeout=-1)


def test_queue_is_bounded_and_counts_drops():
    queue = _tsd.EventQueue(max_events=3, max_bytes=10)
    assert queue.push(1, b"1234")
    assert queue.push(2, b"5678")
    assert not queue.push(3, b"abc")  # 11 bytes > 10
    assert queue.push(3, b"ab")
    assert not queue.push(4, b"")  # 4 events > 3
    stats = queue.stats()
    assert stats["depth"] == 3 and stats["bytes"] == 10
    assert stats["pushed"] == 3 and stats["dropped"] == 2
    assert [queue.pop(0), queue.pop(0), queue.pop(0)] == [(1, b"1234"), (2, b"5678"), (3, b"ab")]
    assert queue.pop(0) is None


def test_pop_times_out():
    queue = _tsd.EventQueue()
    start = time.monotonic()
    assert queue.pop(timeout=0.3) is None
    assert 0.28 <= time.monotonic() - start < 3.0


def test_pop_releases_the_gil_while_waiting():
    queue = _tsd.EventQueue()
    counter = {"n": 0}
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter["n"] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        before = counter["n"]
        assert queue.pop(timeout=0.5) is None
        progressed = counter["n"] - before
    finally:
        stop.set()
        spinner.join()
    # With the GIL held for 0.5 s the spinner could not have counted at all
    # beyond the switch interval; released, it counts freely.
    assert progressed > 10000


def test_close_wakes_a_blocked_pop_and_refuses_pushes():
    queue = _tsd.EventQueue()
    queue.push(7, b"left over")
    result = {}

    def consume():
        result["first"] = queue.pop()
        try:
            queue.pop()  # blocks until close
        except _tsd.QueueClosedError as exc:
            result["closed"] = exc
            result["closed_at"] = time.monotonic()

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.2)
    closed_at = time.monotonic()
    queue.close()
    queue.close()
    thread.join(5)
    assert not thread.is_alive()
    assert result["first"] == (7, b"left over")
    assert isinstance(result["closed"], _tsd.TsdError)
    assert result["closed_at"] - closed_at < 1.0
    with pytest.raises(_tsd.QueueClosedError):
        queue.push(1, b"late")


def test_pump_dispatches_and_survives_handler_errors():
    queue = _tsd.EventQueue()
    seen = []
    logger = mock.Mock()

    def handler(event_type, payload):
        if payload == b"boom":
            raise RuntimeError("handler bug")
        seen.append((event_type, payload))

    pump = bridge.EventPump(queue.pop, queue.close, handler, logger)
    pump.start()
    pump.start()  # idempotent
    for payload in (b"a", b"boom", b"b"):
        queue.push(bridge.EVENT_LOG, payload)
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    pump.stop()
    pump.stop()
    assert seen == [(bridge.EVENT_LOG, b"a"), (bridge.EVENT_LOG, b"b")]
    logger.exception.assert_called_once()
    assert not pump.is_running()


def test_pump_stop_is_prompt():
    queue = _tsd.EventQueue()
    pump = bridge.EventPump(queue.pop, queue.close, lambda *a: None, mock.Mock())
    threads_before = threading.active_count()
    pump.start()
    assert threading.active_count() == threads_before + 1
    start = time.monotonic()
    pump.stop()
    assert time.monotonic() - start < 1.0
    assert threading.active_count() == threads_before


def test_helper_is_installed_next_to_the_package():
    path = bridge.helper_path()
    assert os.path.dirname(path) == os.path.dirname(os.path.abspath(bridge.__file__))
    result = bridge.probe_helper()
    assert result["available"] is True, result
    assert result["version"].startswith("tsd-helper " + _tsd.__version__)
    assert "opencv" in result["version"]


def write_script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_helper_probe_reports_each_failure(tmp_path):
    missing = bridge.probe_helper(str(tmp_path / "nope"))
    assert not missing["available"] and "not installed" in missing["error"]

    plain = tmp_path / "plain"
    plain.write_text("data")
    plain.chmod(0o644)
    assert "not executable" in bridge.probe_helper(str(plain))["error"]

    failing = write_script(tmp_path / "failing", "echo broken model >&2; exit 3")
    result = bridge.probe_helper(failing)
    assert not result["available"]
    assert "status 3" in result["error"] and "broken model" in result["error"]

    hanging = write_script(tmp_path / "hanging", "exec sleep 30")
    start = time.monotonic()
    result = bridge.probe_helper(hanging, timeout=0.5)
    assert "did not answer" in result["error"]
    assert time.monotonic() - start < 5
