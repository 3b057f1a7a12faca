# SPDX-License-Identifier: AGPL-3.0-or-later
"""octoprint_tsd.learned: what "looks fine" teaches a printer."""

import json

import pytest

from octoprint_tsd import learned
from octoprint_tsd.learned import LearnedError, LearnedScene


def sig(*values, dims=32):
    out = [0.0] * dims
    for i, v in enumerate(values):
        out[i] = v
    return out


def det(box, signature, confidence=0.9):
    return {"class": "failure", "confidence": confidence, "box": list(box), "sig": signature}


CABLE = det([0, 0, 320, 240], sig(1.0, 0.2))
SPAGHETTI_SAME_PLACE = det([0, 0, 320, 240], sig(0.1, 1.0))
SPAGHETTI_ELSEWHERE = det([320, 240, 320, 240], sig(1.0, 0.2))


def test_learned_detection_is_suppressed_only_where_and_as_it_was(tmp_path):
    scene = LearnedScene(str(tmp_path / "learned.json"))
    assert scene.learn("cam", [CABLE], 640, 480) == 1
    # The same thing at the same place, a little noisier: dropped.
    noisy = det([2, 1, 318, 241], sig(1.0, 0.25, 0.02))
    kept, suppressed = scene.filter("cam", [noisy], 640, 480)
    assert kept == [] and suppressed == 1
    # Something that looks different at that place, or the same look
    # elsewhere, or another camera: kept.
    for other, camera in ((SPAGHETTI_SAME_PLACE, "cam"), (SPAGHETTI_ELSEWHERE, "cam"), (CABLE, "other")):
        kept, suppressed = scene.filter(camera, [other], 640, 480)
        assert kept == [other] and suppressed == 0


def test_detections_without_signature_are_never_learned_or_suppressed(tmp_path):
    scene = LearnedScene(str(tmp_path / "learned.json"))
    bare = {"class": "failure", "confidence": 0.9, "box": [0, 0, 320, 240]}
    assert scene.learn("cam", [bare], 640, 480) == 0
    scene.learn("cam", [CABLE], 640, 480)
    assert scene.filter("cam", [bare], 640, 480) == ([bare], 0)


def test_persisted_and_reloaded(tmp_path):
    path = str(tmp_path / "learned.json")
    LearnedScene(path).learn("cam", [CABLE, SPAGHETTI_ELSEWHERE], 640, 480)
    again = LearnedScene(path)
    again.load()
    assert again.count() == 2
    assert again.filter("cam", [CABLE], 640, 480)[1] == 1
    with open(path) as f:
        doc = json.load(f)
    assert doc["version"] == learned.FORMAT_VERSION and len(doc["entries"]) == 2


def test_bounded_oldest_forgotten_first(tmp_path):
    scene = LearnedScene(str(tmp_path / "learned.json"))
    total = learned.MAX_ENTRIES + 10

    def one_hot(i):
        return det([0, 0, 100, 100], [1.0 if k == i else 0.0 for k in range(total)])

    for i in range(total):
        assert scene.learn("cam", [one_hot(i)], 640, 480) == 1
    assert scene.count() == learned.MAX_ENTRIES
    assert scene.filter("cam", [one_hot(0)], 640, 480)[1] == 0
    assert scene.filter("cam", [one_hot(total - 1)], 640, 480)[1] == 1


def test_forget_removes_memory_and_file(tmp_path):
    path = tmp_path / "learned.json"
    scene = LearnedScene(str(path))
    scene.learn("cam", [CABLE], 640, 480)
    assert path.exists()
    assert scene.forget() == 1
    assert not path.exists() and scene.count() == 0
    assert scene.filter("cam", [CABLE], 640, 480) == ([CABLE], 0)
    assert scene.forget() == 0


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps({"version": 99, "entries": []}),
    json.dumps({"version": 1, "entries": {}}),
    json.dumps({"version": 1, "entries": [{"camera": "cam", "box": [0, 0, 2, 1], "sig": [1, 0]}]}),
    json.dumps({"version": 1, "entries": [{"camera": "cam", "box": [0, 0, 1, 1], "sig": [0, 0]}]}),
    json.dumps({"version": 1, "entries": [{"camera": 5, "box": [0, 0, 1, 1], "sig": [1]}]}),
    json.dumps({"version": 1, "entries": [{"camera": "cam", "box": [0, 0, 1, 1], "sig": ["NaN"]}]}),
])
def test_a_corrupt_file_is_reported_and_the_memory_stays_empty(tmp_path, content):
    path = tmp_path / "learned.json"
    path.write_text(content)
    scene = LearnedScene(str(path))
    with pytest.raises(LearnedError):
        scene.load()
    assert scene.count() == 0
    # It keeps working: learning replaces the bad file.
    assert scene.learn("cam", [CABLE], 640, 480) == 1
    again = LearnedScene(str(path))
    again.load()
    assert again.count() == 1


def test_a_missing_file_is_an_empty_memory(tmp_path):
    scene = LearnedScene(str(tmp_path / "none.json"))
    scene.load()
    assert scene.count() == 0


def test_relearning_the_same_thing_adds_nothing(tmp_path):
    scene = LearnedScene(str(tmp_path / "learned.json"))
    assert scene.learn("cam", [CABLE], 640, 480) == 1
    assert scene.learn("cam", [CABLE], 640, 480) == 0
    assert scene.count() == 1


def test_a_failed_save_keeps_the_old_file_and_leaves_no_partial_copy(tmp_path, monkeypatch):
    """A full disk (ENOSPC at the sync) while saving: the file keeps what it
    had, the partial copy is removed, the error reaches the caller."""
    import errno
    import os

    path = str(tmp_path / "state.json")
    learned.write_json_file(path, {"kept": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(learned.os, "fsync", full)
    with pytest.raises(OSError):
        learned.write_json_file(path, {"kept": 2})
    with open(path) as f:
        assert f.read() == '{"kept": 1}'
    assert os.listdir(str(tmp_path)) == ["state.json"]


def test_a_failed_save_is_retried_once_there_is_room(tmp_path, monkeypatch):
    """"Looks fine" on a full disk: the memory in use keeps what it learned
    and says why the file is behind; save_if_behind() writes it once the
    disk has room again (before, nothing saved it until the next new
    detection was learned)."""
    import errno

    path = str(tmp_path / "learned.json")
    scene = LearnedScene(path)
    scene.learn("cam", [det((10, 10, 50, 50), sig(1))], 640, 480)
    real_fsync = learned.os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(learned.os, "fsync", full)
    with pytest.raises(OSError):
        scene.learn("cam", [det((100, 100, 160, 160), sig(0, 1))], 640, 480)
    assert scene.count() == 2
    assert "No space left" in scene.save_error()
    assert scene.save_if_behind() is not None  # still full
    monkeypatch.setattr(learned.os, "fsync", real_fsync)
    assert scene.save_if_behind() is None
    assert scene.save_error() is None
    again = LearnedScene(path)
    again.load()
    assert again.count() == 2


def test_relearning_saves_a_file_that_is_behind(tmp_path, monkeypatch):
    """Nothing new learned, but the last save failed: learning saves anyway."""
    import errno

    path = str(tmp_path / "learned.json")
    scene = LearnedScene(path)
    real_fsync = learned.os.fsync
    monkeypatch.setattr(learned.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        scene.learn("cam", [det((10, 10, 50, 50), sig(1))], 640, 480)
    monkeypatch.setattr(learned.os, "fsync", real_fsync)
    assert scene.learn("cam", [det((10, 10, 50, 50), sig(1))], 640, 480) == 0
    assert scene.save_error() is None
    again = LearnedScene(path)
    again.load()
    assert again.count() == 1


def test_forgetting_clears_a_save_error(tmp_path, monkeypatch):
    import errno

    scene = LearnedScene(str(tmp_path / "learned.json"))
    monkeypatch.setattr(learned.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        scene.learn("cam", [det((10, 10, 50, 50), sig(1))], 640, 480)
    assert scene.forget() == 1
    assert scene.save_error() is None
