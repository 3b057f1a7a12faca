# SPDX-License-Identifier: AGPL-3.0-or-later
"""The soak's gauges (tests/fault_rig.py, scripts/soak.py) count what stays:
a descriptor or thread left open is counted, one that comes and goes between
readings (the camera's per-frame connection, a name-lookup thread) is not,
and OctoPrint's request pool counts only past its bound."""

import os
import socket
import threading
import time
import types

import fault_rig

# Nothing listens on the discard port: thread_census() gets no Python names
# (those come from the loop-lag plugin inside OctoPrint) and counts by /proc.
NO_OCTOPRINT = "http://127.0.0.1:9"


def churn(stop):
    """A connection and a thread that come and go all the time."""
    while not stop.is_set():
        ends = socket.socketpair()
        passing = threading.Thread(target=time.sleep, args=(0.002,))
        passing.start()
        passing.join()
        for end in ends:
            end.close()


def settled():
    return fault_rig.Settled(os.getpid(), NO_OCTOPRINT, {}, seconds=1.0)


def test_what_stays_is_counted_and_what_comes_and_goes_is_not():
    stop = threading.Event()
    churner = threading.Thread(target=churn, args=(stop,))
    churner.start()
    release = threading.Event()
    leaked_thread = threading.Thread(target=release.wait)
    leaked_sockets = ()
    try:
        before = settled()
        again = settled()
        assert again.fds - before.fds == 0, (before.descriptors, again.descriptors)
        assert fault_rig.thread_growth(before, again) == 0, (before.census, again.census)
        leaked_sockets = socket.socketpair()
        leaked_thread.start()
        after = settled()
        assert after.fds - before.fds == 2, (before.descriptors, after.descriptors)
        assert {fd.fileno() for fd in leaked_sockets} <= set(after.descriptors)
        assert fault_rig.thread_growth(before, after) == 1
        assert leaked_thread.native_id in after.census
    finally:
        stop.set()
        release.set()
        churner.join()
        if leaked_thread.is_alive():
            leaked_thread.join()
        for end in leaked_sockets:
            end.close()


def test_the_request_pool_counts_only_past_its_bound():
    bound = fault_rig.request_pool_bound()

    def at(kept, pool):
        return types.SimpleNamespace(threads_kept=kept, request_pool=pool)

    assert fault_rig.thread_growth(at(30, 3), at(30, bound)) == 0
    assert fault_rig.thread_growth(at(30, 3), at(31, bound)) == 1
    assert fault_rig.thread_growth(at(30, 3), at(30, bound + 2)) == 2


def test_request_pool_workers_are_told_by_their_name():
    census = {1: ("python", "WsgiRequestHandler_0", []), 2: ("python", "WsgiRequestHandler_5", []),
              3: ("python", "tsd-watch", []), 4: ("tsd-tunnel", None, [])}
    assert fault_rig.request_pool_size(census) == 2
