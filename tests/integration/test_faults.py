# SPDX-License-Identifier: AGPL-3.0-or-later
"""The fault suite, short form: every fault of tests/fault_suite.py once,
in a row, while a print runs on the virtual printer of a real OctoPrint.

Throughout, OctoPrint's Tornado loop (a 10 ms timer inside it) and
/api/version (from outside) are timed, and the G-code the printer received
is checked: no fault may pause, resume or send anything. After each fault
the plugin works again by itself within its backoff bound (the token-refused
and 4321 cases excepted: the protocol says to stay down; the test reconnects
as the owner would) and its status said what happened; what it stores is
intact. `make soak` (scripts/soak.py) runs the long form.
"""

import pytest

import fault_rig
import fault_suite
from remote_rig import TOKEN
from tsd_testing import output_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with fault_suite.fault_octoprint(tmp_path_factory, "faults") as run:
        run.stored_at_start = run.stored()
        run.lag = fault_rig.LoopLag(run.linked.instance.url, run.linked.headers)
        assert run.lag.collect()["ticks"] > 0, "the loop-lag plugin is not ticking"
        fault_suite.start_print(run)
        run.mark = len(run.linked.serial_log())
        run.lag.reset()
        run.sampler = fault_rig.Sampler(run.linked.instance.url, run.linked.headers,
                                        run.linked.instance.process.pid).start()
        try:
            yield run
        finally:
            run.sampler.stop()


@pytest.mark.parametrize("fault", fault_suite.SHORT_FAULTS)
def test_fault_and_recovery(run, fault):
    getattr(run, fault)()
    run.lag.collect()


def test_octoprint_and_the_print_were_not_disturbed(run):
    run.lag.collect()
    lag_p99 = fault_rig.percentile(run.lag.lags, 0.99)
    api_p99 = fault_rig.percentile(run.sampler.latency_ms, 0.99)
    odd = fault_rig.unexpected_gcode(run.linked.sent_since(run.mark), run.gcode)
    with open(output_dir("faults") + "/short-form.txt", "w") as f:
        f.write("loop lag p99 {} ms over {} ticks; /api/version p99 {} ms\n".format(
            lag_p99, run.lag.ticks, api_p99))
        for fault, seconds in sorted(run.recovery.items()):
            f.write("{} recovered in {:.2f} s; status said: {}\n".format(fault, seconds, run.seen.get(fault)))
    assert run.lag.ticks > 1000
    assert lag_p99 <= 100, lag_p99
    assert api_p99 <= 1000, api_p99
    assert run.sampler.states == {"Printing"}, run.sampler.states
    assert odd == [], odd
    assert run.linked.printer_state() == "Printing"
    run.assert_stored_intact(run.stored_at_start)
    # No fault's error text carries the token into the log.
    with open(run.linked.instance.octoprint_log, encoding="utf-8", errors="replace") as f:
        assert TOKEN not in f.read()


def test_disk_full_keeps_the_token_and_the_learned_state(run):
    if run.disk is None:
        pytest.skip("mounting a small tmpfs needs root here")
    fault_suite.disk_full(run)
