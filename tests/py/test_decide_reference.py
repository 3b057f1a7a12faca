# SPDX-License-Identifier: AGPL-3.0-or-later
"""native/core/decide.c against an independent pure-Python implementation.

The C module is run through tests/c/decide_driver (built by meson). This file
implements the same formulas from their description in docs/decisions.md,
feeds both the same randomized prints (fixed seeds, several intervals and
parameter sets, invalid frames mixed in) and compares every frame: the
numbers to 1e-9 relative, the verdicts exactly.

The driver is TSD_DECIDE_DRIVER, or build/test/tests/c/decide_driver in this
checkout.
"""

import math
import random
import subprocess

import pytest

from tsd_testing import c_test_binary

REL_TOL = 1e-9
# Values that should be 0 (adjusted when ewm == long) compare absolutely.
ABS_TOL = 1e-12

MAX_DETECTIONS = 4096


def driver_path():
    return c_test_binary("decide_driver", "TSD_DECIDE_DRIVER")


def run_driver(script):
    result = subprocess.run(
        [driver_path()],
        input="".join(line + "\n" for line in script),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result


# ---- the reference -----------------------------------------------------------

BASE_INTERVAL = 10.0
SPAN = 12
SHORT_WINDOW = 310
LONG_WINDOW = 7200
GRACE = 30
LOW = 0.38
HIGH = 0.78
SHORT_MULTIPLE = 3.8
PAUSE_FACTOR = 1.75


class Reference:
    """One printer's decider, written from the description, not the C code."""

    def __init__(self):
        self.long_mean = 0.0
        self.long_count = 0
        self.configure(1.0, 1.0, 0, 10.0)
        self.start()
        self.band = {True: 0, False: 0}  # factor-1 decisions made in the band

    def configure(self, sensitivity, bending, top_n, interval):
        self.sensitivity = sensitivity
        self.bending = bending
        self.top_n = top_n
        stretch = BASE_INTERVAL / interval if interval < BASE_INTERVAL else 1.0
        self.alpha = 2.0 / (SPAN * stretch + 1.0)
        self.short_window = math.floor(SHORT_WINDOW * stretch + 0.5)
        self.long_window = math.floor(LONG_WINDOW * stretch + 0.5)
        self.grace = math.ceil(GRACE * stretch - 1e-9)

    def start(self):
        self.frames = 0
        self.ewm = None
        self.short_mean = 0.0

    @staticmethod
    def fold(mean, count, window, value):
        return mean + (value - mean) / min(window, count + 1)

    def failing(self, factor, record=False):
        level = (self.ewm - self.long_mean) * self.sensitivity / factor
        if level > HIGH:
            return True
        if level < LOW:
            return False
        verdict = level > (self.short_mean - self.long_mean) * SHORT_MULTIPLE
        if record:
            self.band[verdict] += 1
        return verdict

    def frame(self, confidences):
        """The expected output line, as a tuple, or None for a refused frame."""
        if len(confidences) > MAX_DETECTIONS:
            return None
        if not all(0.0 <= c <= 1.0 for c in confidences):  # NaN fails too
            return None
        chosen = confidences
        if 0 < self.top_n < len(confidences):
            chosen = sorted(confidences, reverse=True)[: self.top_n]
        score = 0.0
        for c in chosen:  # not sum(): Python 3.12 compensates float sums
            score += c * self.bending
        if self.ewm is None:
            self.ewm = score
        else:
            self.ewm = self.alpha * score + (1 - self.alpha) * self.ewm
        self.short_mean = self.fold(self.short_mean, self.frames, self.short_window, score)
        self.long_mean = self.fold(self.long_mean, self.long_count, self.long_window, score)
        self.frames += 1
        self.long_count += 1
        verdict = "ok"
        if self.frames > self.grace:
            if self.failing(PAUSE_FACTOR):
                verdict = "pause"
            elif self.failing(1.0, record=True):
                verdict = "warn"
        adjusted = (self.ewm - self.long_mean) * self.sensitivity
        return (score, self.ewm, self.short_mean, self.long_mean, adjusted, verdict)


# ---- randomized prints -------------------------------------------------------

# name: (detections low, high; confidence low, high)
REGIMES = {
    "quiet": (0, 2, 0.0, 0.35),
    "noisy": (0, 4, 0.05, 0.6),
    "failing": (2, 8, 0.3, 1.0),
}
INVALID_VALUES = ["nan", "-nan", "inf", "-inf", "-0.25", "1.5", "1e308"]


def random_frame(rng, regime):
    low, high, c_low, c_high = REGIMES[regime]
    values = []
    for _ in range(rng.randint(low, high)):
        roll = rng.random()
        if roll < 0.03:
            values.append(0.0)
        elif roll < 0.06:
            values.append(1.0)
        else:
            values.append(rng.uniform(c_low, c_high))
    return values


def random_print(rng, interval, seconds):
    """(regime, confidences) frames for a print of about `seconds` seconds."""
    frames = []
    elapsed = 0.0
    while elapsed < seconds:
        regime = rng.choices(["quiet", "noisy", "failing"], weights=[5, 2, 2])[0]
        duration = rng.uniform(60.0, 900.0)
        for _ in range(max(1, int(duration / interval))):
            frames.append(random_frame(rng, regime))
        elapsed += duration
    return frames


class Session:
    """Builds the driver script and the reference's expected lines together."""

    def __init__(self):
        self.reference = Reference()
        self.script = []
        self.expected = []  # ("frame", tuple|None) or ("get", (mean, count))
        self.verdicts = {"ok": 0, "warn": 0, "pause": 0}

    def params(self, sensitivity, bending, top_n, interval):
        self.script.append("params {!r} {!r} {} {!r}".format(sensitivity, bending, top_n, interval))
        self.reference.configure(sensitivity, bending, top_n, interval)

    def longterm(self, mean, count):
        self.script.append("longterm {!r} {}".format(mean, count))
        self.reference.long_mean = mean
        self.reference.long_count = count

    def start(self):
        self.script.append("start")
        self.reference.start()

    def frame(self, confidences):
        self.script.append(
            " ".join(["frame", str(len(confidences))] + [repr(c) for c in confidences])
        )
        expected = self.reference.frame(confidences)
        if expected:
            self.verdicts[expected[5]] += 1
        self.expected.append(("frame", expected))

    def invalid_frame(self, rng):
        values = [repr(rng.uniform(0.0, 1.0)) for _ in range(rng.randint(0, 3))]
        values.insert(rng.randint(0, len(values)), rng.choice(INVALID_VALUES))
        self.script.append(" ".join(["frame", str(len(values))] + values))
        self.expected.append(("frame", None))

    def get(self):
        self.script.append("get")
        self.expected.append(("get", (self.reference.long_mean, self.reference.long_count)))

    def play_print(self, rng, interval, seconds, invalid_rate):
        self.start()
        for confidences in random_print(rng, interval, seconds):
            if rng.random() < invalid_rate:
                self.invalid_frame(rng)
            self.frame(confidences)
        self.get()


def close(got, want):
    return math.isclose(got, want, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def compare(session):
    result = run_driver(session.script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(session.expected)
    for number, (line, (kind, want)) in enumerate(zip(lines, session.expected)):
        where = "output line {}: {!r}".format(number + 1, line)
        fields = line.split()
        if kind == "get":
            assert len(fields) == 2, where
            assert close(float(fields[0]), want[0]), where
            assert int(fields[1]) == want[1], where
        elif want is None:
            assert line == "error invalid argument", where
        else:
            assert len(fields) == 6, where
            for got, expected in zip(fields[:5], want[:5]):
                assert close(float(got), expected), "{}: expected {!r}".format(where, want)
            assert fields[5] == want[5], "{}: expected {!r}".format(where, want)


# (seed, [(sensitivity, bending, top_n, interval) per print], seconds per print,
#  invalid frame rate, imported long-term (mean, count) or None)
CASES = [
    (101, [(1.0, 1.0, 0, 10.0)] * 4, 3600.0, 0.0, None),
    (202, [(1.3, 0.8, 3, 5.0)] * 4, 2400.0, 0.01, None),
    (303, [(0.7, 1.2, 0, 2.0)] * 3, 1200.0, 0.01, None),
    (404, [(1.4, 1.0, 2, 10.0), (1.0, 1.0, 1, 10.0)] * 2, 3600.0, 0.02, (0.35, 50000)),
    (505, [(1.0, 1.0, 0, 10.0), (1.5, 1.0, 2, 5.0), (0.8, 0.9, 0, 2.0), (1.0, 1.0, 4, 10.0)],
     1800.0, 0.01, None),
    (606, [(1.0, 1.0, 0, 3.0), (1.1, 1.0, 0, 1.2), (1.0, 1.0, 5, 7.5)], 1500.0, 0.0,
     (0.05, 10)),
]


@pytest.mark.parametrize("seed,prints,seconds,invalid_rate,imported", CASES,
                         ids=["seed{}".format(case[0]) for case in CASES])
def test_matches_reference(seed, prints, seconds, invalid_rate, imported):
    rng = random.Random(seed)
    session = Session()
    if imported:
        session.longterm(*imported)
    for sensitivity, bending, top_n, interval in prints:
        session.params(sensitivity, bending, top_n, interval)
        session.play_print(rng, interval, seconds, invalid_rate)
    frames = sum(session.verdicts.values())
    assert frames >= 500
    # Each sequence exercises every verdict, so the comparison means something.
    assert session.verdicts["warn"] > 0 and session.verdicts["pause"] > 0, session.verdicts
    compare(session)


def test_every_branch_is_covered():
    """Across the cases, the band rule decides both ways at least a few times."""
    band = {True: 0, False: 0}
    for seed, prints, seconds, invalid_rate, imported in CASES:
        rng = random.Random(seed)
        session = Session()
        if imported:
            session.longterm(*imported)
        for sensitivity, bending, top_n, interval in prints:
            session.params(sensitivity, bending, top_n, interval)
            session.play_print(rng, interval, seconds, invalid_rate)
        for verdict in (True, False):
            band[verdict] += session.reference.band[verdict]
    assert band[True] >= 5 and band[False] >= 5, band


def test_time_scaling_matches_reference():
    """A step from quiet to failing at several intervals: the reference and the
    driver agree, and the first pause comes 70 s after the step every time."""
    for interval in (10.0, 5.0, 2.0, 1.0):
        session = Session()
        session.longterm(0.0, 10 ** 6)
        session.params(1.0, 1.0, 0, interval)
        session.start()
        grace = session.reference.grace
        for _ in range(grace):
            session.frame([])
        for _ in range(int(120 / interval)):
            session.frame([1.0, 1.0])
        compare(session)
        verdicts = [want[5] for _, want in session.expected]
        first_pause = verdicts.index("pause") + 1 - grace
        assert first_pause * interval == 70.0, (interval, first_pause)
        assert "pause" not in verdicts[:grace] and "warn" not in verdicts[:grace]


@pytest.mark.parametrize(
    "script",
    [
        ["frame 2 0.5"],
        ["frame 1 0.5 0.6"],
        ["frame -1"],
        ["frame +1 0.5"],
        ["frame 1 abc"],
        ["frame 1 0.5x"],
        ["frame 1 1e999"],
        ["frame 4097"],
        ["frame"],
        ["params 1 1 -1 10"],
        ["params 1 1 0"],
        ["params 0 1 0 10"],
        ["params 1 1 0 0.01"],
        ["params nan 1 0 10"],
        ["longterm -1 5"],
        ["longterm nan 5"],
        ["longterm 0.5 -5"],
        ["start now"],
        ["get 1"],
        ["bogus"],
        ["frame 1 " + "0" * (300 * 1024)],
    ],
    ids=lambda script: script[0][:24],
)
def test_driver_rejects_malformed_input(script):
    result = run_driver(["frame 1 0.5"] + script + ["frame 1 0.5"])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "line 2" in result.stderr
    # The line before the bad one was answered, the one after was not read.
    assert len(result.stdout.splitlines()) == 1


def test_refused_frame_changes_nothing():
    script = ["frame 2 0.5 0.25", "frame 1 nan", "frame 2 0.5 -1", "frame 1 0.75", "get"]
    reference = Session()
    reference.frame([0.5, 0.25])
    reference.frame([0.75])
    reference.get()
    lines = run_driver(script).stdout.splitlines()
    assert lines[1] == lines[2] == "error invalid argument"
    del lines[1:3]
    assert len(lines) == 3
    want = [reference.expected[0][1], reference.expected[1][1]]
    for line, expected in zip(lines[:2], want):
        fields = line.split()
        assert all(close(float(g), w) for g, w in zip(fields[:5], expected[:5]))
        assert fields[5] == expected[5]
    assert lines[2].split()[1] == "2"
