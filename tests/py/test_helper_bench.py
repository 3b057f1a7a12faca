# SPDX-License-Identifier: AGPL-3.0-or-later
"""tsd-helper --bench FILE JPEG [--repeat N]: the per-frame time of the
shipped helper and model on a local file (docs/packaging.md), and serving's
refusal to run without its sandbox (docs/security.md).

--bench scores the file as serving scores a frame from the pipe, and takes
the same sandbox steps. Where seccomp is missing (qemu-user; here:
tests/c/without-seccomp, which makes seccomp() answer ENOSYS) serving
refuses and --bench says on stderr that it runs unsandboxed. The launcher
comes from $TSD_WITHOUT_SECCOMP_BIN, else build/test/tests/c/ of this
checkout (meson setup build/test -Dtests=true && meson compile -C build/test).
"""

import json
import os
import subprocess

import pytest

import helper_models as hm
from octoprint_tsd import bridge

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_WITHOUT_SECCOMP = os.path.join(REPO, "build", "test", "tests", "c", "without-seccomp")
SANDBOX_OFF_SANITIZER = "off (sanitizer build)"
TIMEOUT = 120


def helper_bin():
    return os.environ.get("TSD_HELPER") or bridge.helper_path()


def without_seccomp_bin():
    path = os.environ.get("TSD_WITHOUT_SECCOMP_BIN") or DEFAULT_WITHOUT_SECCOMP
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("without-seccomp not found at {} (set TSD_WITHOUT_SECCOMP_BIN, or build it: "
                    "meson setup build/test -Dtests=true && meson compile -C build/test)".format(path))
    return path


@pytest.fixture(autouse=True)
def no_preload(monkeypatch):
    # The asan-py suite preloads a sanitizer runtime into this process.
    monkeypatch.delenv("LD_PRELOAD", raising=False)


@pytest.fixture
def frame(tmp_path):
    path = tmp_path / "frame.jpg"
    path.write_bytes(hm.make_jpeg(640, 480, seed=3))
    return str(path)


def run_bench(config, jpeg, *extra, launcher=()):
    return subprocess.run([*launcher, helper_bin(), "--bench", config, jpeg, *extra],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT)


def bench_results(done):
    """(detections reply, summary) of a --bench run that succeeded."""
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2, lines
    return json.loads(lines[0]), json.loads(lines[1])


def served_reply(config, jpeg, tmp_path):
    """The serving path's answer for the same frame (--config, the pipe)."""
    helper = hm.Helper(helper_bin(), config, str(tmp_path / "serve.log"))
    try:
        kind, request_id, payload = helper.detect(jpeg, request_id=9, timeout=TIMEOUT)
        assert (kind, request_id) == (hm.RESP_DETECTIONS, 9), payload
        return json.loads(payload)
    finally:
        helper.stop()


def test_bench_scores_a_frame_with_the_shipped_model_as_serving_does(frame, tmp_path):
    config = bridge.default_model_config()
    done = run_bench(config, frame, "--repeat", "3")
    reply, summary = bench_results(done)

    with open(frame, "rb") as f:
        served = served_reply(config, f.read(), tmp_path)
    assert hm.reply_without_timing(reply) == hm.reply_without_timing(served)
    assert (reply["w"], reply["h"]) == (640, 480)
    assert summary["frames"] == 3
    assert 0 < summary["median_ms"] <= summary["max_ms"]
    assert summary["start_ms"] > 0
    assert summary["detections"] == len(reply["detections"])
    best = max([d["confidence"] for d in reply["detections"]], default=0.0)
    assert best <= summary["top_score"] <= 1.0
    assert summary["top_score"] > 0.0  # the model really ran on it
    assert summary["sandbox"] in ("seccomp", SANDBOX_OFF_SANITIZER), summary
    stderr = done.stderr.decode()
    assert "bench: 3 frames of " + frame in stderr and "UNSANDBOXED" not in stderr, stderr


def test_bench_top_score_is_the_models_best_score_even_below_the_threshold(frame, tmp_path):
    # The tiny model's strongest rows score TINY_CONFIDENCE whatever the
    # image; above a threshold of 0.9 nothing is detected.
    cfg, weights = hm.write_tiny_model(str(tmp_path), deterministic=True)
    config = hm.write_config(str(tmp_path / "helper.yaml"), cfg, weights, hm.TINY_SIDE,
                             box_threshold=0.9)
    reply, summary = bench_results(run_bench(config, frame, "--repeat", "1"))
    assert reply["detections"] == [] and summary["detections"] == 0
    assert summary["top_score"] == pytest.approx(hm.TINY_CONFIDENCE, abs=1e-3)
    assert summary["frames"] == 1 and summary["median_ms"] == summary["max_ms"]


@pytest.mark.parametrize("case, expected", [
    ("missing", "cannot read"),
    ("empty", "is empty"),
    ("folder", "is not a regular file"),
    ("truncated", "truncated JPEG"),
    ("not-a-jpeg", "not a JPEG"),
    ("too-large", "allowed (max_frame_bytes)"),
])
def test_bench_refuses_a_bad_file_with_a_clear_error(case, expected, frame, tmp_path):
    with open(frame, "rb") as f:
        jpeg = f.read()
    config = bridge.default_model_config()
    path = tmp_path / "input.jpg"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "folder":
        path.mkdir()
    elif case == "truncated":
        path.write_bytes(jpeg[: len(jpeg) // 2])
    elif case == "not-a-jpeg":
        path.write_bytes(b"GIF89a" + bytes(200))
    elif case == "too-large":
        small = tmp_path / "small.yaml"
        with open(config) as f:
            text = f.read()
        model_dir = os.path.dirname(config)
        # The shipped configuration with its model path made absolute, and a
        # frame limit below the file's size.
        small.write_text(text.replace("model_onnx: ", "model_onnx: " + model_dir + "/")
                         + "max_frame_bytes: {}\n".format(len(jpeg) - 1))
        config = str(small)
        path.write_bytes(jpeg)
    done = run_bench(config, str(path))
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert done.stdout == b""
    assert "tsd-helper: bench: " in stderr and expected in stderr, stderr
    assert str(path) in stderr


@pytest.mark.parametrize("repeat", ["0", "1001", "-3", "5x", ""])
def test_bench_refuses_a_bad_repeat(repeat, frame):
    done = run_bench(bridge.default_model_config(), frame, "--repeat", repeat)
    assert done.returncode == 2
    assert "--repeat takes 1..1000" in done.stderr.decode()


def test_bench_never_reads_stdin(frame):
    # Frames on stdin (what the plugin sends) are not what --bench scores.
    done = subprocess.run([helper_bin(), "--bench", bridge.default_model_config(), frame, "--repeat", "1"],
                          input=hm.request(hm.REQ_JPEG, 1, b"not read"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=TIMEOUT)
    reply, summary = bench_results(done)
    assert reply["w"] == 640 and summary["frames"] == 1


def sandbox_enforced(frame):
    """False for a sanitizer build, whose filter is off by design: without
    seccomp it has nothing to refuse."""
    _, summary = bench_results(run_bench(bridge.default_model_config(), frame, "--repeat", "1"))
    return summary["sandbox"] == "seccomp"


# Serving never decodes a camera's frame unsandboxed: where seccomp answers
# ENOSYS (qemu-user, a kernel without filters) it stops before reading stdin.
def test_serving_refuses_to_run_without_its_sandbox(frame, tmp_path):
    if not sandbox_enforced(frame):
        pytest.skip("sanitizer build of the helper: its seccomp filter is off by design")
    with open(frame, "rb") as f:
        request = hm.request(hm.REQ_JPEG, 1, f.read())
    done = subprocess.run([without_seccomp_bin(), helper_bin(), "--config", bridge.default_model_config()],
                          input=request, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    if done.returncode == 77:
        pytest.skip(done.stderr.decode())
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "cannot lock the sandbox: seccomp" in stderr, stderr
    assert done.stdout == b"", done.stdout  # no detections, not even an error frame
    assert ": ready (" not in stderr


def test_bench_without_seccomp_says_it_runs_unsandboxed_and_scores_the_same(frame):
    if not sandbox_enforced(frame):
        pytest.skip("sanitizer build of the helper: its seccomp filter is off by design")
    config = bridge.default_model_config()
    sandboxed, _ = bench_results(run_bench(config, frame, "--repeat", "1"))
    done = run_bench(config, frame, "--repeat", "2", launcher=(without_seccomp_bin(),))
    if done.returncode == 77:
        pytest.skip(done.stderr.decode())
    reply, summary = bench_results(done)
    stderr = done.stderr.decode()
    assert "cannot lock the sandbox (seccomp" in stderr, stderr
    assert "running UNSANDBOXED" in stderr and "a local file named on the command line" in stderr, stderr
    assert summary["sandbox"] == "none (cannot be locked here)"
    assert hm.reply_without_timing(reply) == hm.reply_without_timing(sandboxed)
