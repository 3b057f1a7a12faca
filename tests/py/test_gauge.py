# SPDX-License-Identifier: AGPL-3.0-or-later
"""The tab's gauge (watch.decision_gauge, the Obico server's normalized_p)
against the native decider's verdicts: on real prints fed to _tsd.Decider,
a frame is in the failure third exactly when the decider says pause, and in
the warning third exactly when it says warn (issue 15, item 8: the plot
must explain the decision)."""

import random

import pytest

from octoprint_tsd import bridge, watch

pytestmark = pytest.mark.skipif(not bridge.native_available(), reason="native module missing")


def frames(rng, count):
    """Healthy stretches, sudden failures, slow creeps and noise."""
    level = 0.0
    for _ in range(count):
        regime = rng.random()
        if regime < 0.02:
            level = rng.choice([0.0, 0.3, 1.0, 2.5, 6.0])
        elif regime < 0.3:
            level = max(0.0, level + rng.uniform(-0.2, 0.25))
        yield [min(1.0, max(0.0, rng.gauss(level / 3, 0.1))) for _ in range(3)]


@pytest.mark.parametrize("seed,sensitivity", [(1, 1.0), (2, 1.2), (3, 0.8), (4, 1.0)])
def test_parity8_gauge_agrees_with_the_native_decision(seed, sensitivity):
    rng = random.Random(seed)
    decider = bridge.new_decider(sensitivity=sensitivity, bending_factor=1.0, frame_interval_s=10)
    grace = decider.params()["grace_frames"]
    seen = {"ok": 0, "warn": 0, "pause": 0}
    for confidences in frames(rng, 3000):
        result = decider.add_frame(confidences)
        gauge = watch.decision_gauge(result["short_mean"], result["long_mean"], result["adjusted"])
        assert 0.38 <= gauge["warn_at"] <= 0.78
        assert gauge["pause_at"] == pytest.approx(gauge["warn_at"] * 1.75)
        assert 0.0 <= gauge["normalized_p"] <= 1.0
        if result["frame"] <= grace:
            assert result["verdict"] == "ok"
            continue
        x = result["adjusted"]
        # Away from the lines themselves (a tie is not a crossing in either).
        if min(abs(x - gauge["warn_at"]), abs(x - gauge["pause_at"])) < 1e-9:
            continue
        third = 2 if x > gauge["pause_at"] else (1 if x > gauge["warn_at"] else 0)
        assert result["verdict"] == ("ok", "warn", "pause")[third], (result, gauge)
        # The gauge is in that third.
        assert third / 3 <= gauge["normalized_p"] <= (third + 1) / 3
        seen[result["verdict"]] += 1
    assert all(seen.values()), seen   # every verdict was exercised


def test_parity8_gauge_maps_the_thirds_as_the_server():
    # short == long: the lines sit at their floor, 0.38 and 0.665.
    assert watch.decision_gauge(0.2, 0.2, 0.0)["normalized_p"] == 0.0
    assert watch.decision_gauge(0.2, 0.2, 0.19)["normalized_p"] == pytest.approx(1 / 6)
    assert watch.decision_gauge(0.2, 0.2, (0.38 + 0.665) / 2)["normalized_p"] == pytest.approx(0.5)
    assert watch.decision_gauge(0.2, 0.2, 0.665 * 1.25)["normalized_p"] == pytest.approx(5 / 6)
    assert watch.decision_gauge(0.2, 0.2, 5.0)["normalized_p"] == 1.0
    assert watch.decision_gauge(0.2, 0.2, -0.5)["normalized_p"] == 0.0
    # A high short-term mean lifts the lines to their ceiling, 0.78 and 1.365.
    gauge = watch.decision_gauge(0.5, 0.1, 1.0)
    assert gauge["warn_at"] == 0.78 and gauge["pause_at"] == pytest.approx(1.365)
    assert 1 / 3 < gauge["normalized_p"] < 2 / 3
    # In between they follow 3.8 x (short - long).
    assert watch.decision_gauge(0.25, 0.1, 0.0)["warn_at"] == pytest.approx(0.57)
