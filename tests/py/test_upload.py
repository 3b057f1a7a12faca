# SPDX-License-Identifier: AGPL-3.0-or-later
"""The upload cadence (octoprint_tsd/upload.py), driven tick by tick with a
fake clock: what is posted, when, and how failures back off."""

import logging

from octoprint_tsd import upload


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Server:
    def __init__(self):
        self.posts = []
        self.status = 200
        self.error = None

    def __call__(self, path, data, files):
        if self.error:
            raise self.error
        self.posts.append((path, dict(data), files["pic"][1]))
        return self.status


def make(printing=True):
    clock, server = Clock(), Server()
    state = {"printing": printing, "requests": 0}

    def request_frame():
        state["requests"] += 1

    uploader = upload.Uploader(server, lambda: state["printing"], request_frame,
                               logging.getLogger("test-upload"), time_scale=1.0, clock=clock)
    return uploader, clock, server, state


def run(uploader, clock, seconds, frame_every=1.0, seq=[0]):
    """Advance the clock second by second, a new frame every frame_every s."""
    elapsed = 0.0
    next_frame = 0.0
    while elapsed < seconds:
        if elapsed >= next_frame:
            seq[0] += 1
            uploader.on_frame(b"\xff\xd8frame%d\xff\xd9" % seq[0], 4, 3, seq[0])
            next_frame += frame_every
        uploader._tick()
        clock.now += 1.0
        elapsed += 1.0


def test_nothing_is_posted_while_not_printing():
    uploader, clock, server, _ = make(printing=False)
    run(uploader, clock, 300)
    assert server.posts == []
    assert uploader.info()["interval_s"] is None


def test_every_120_s_while_printing_unwatched_and_10_s_when_watched():
    uploader, clock, server, _ = make()
    run(uploader, clock, 600)
    assert len(server.posts) == 5  # t = 0, 120, 240, 360, 480
    assert all(path == upload.PIC_PATH and data == {} for path, data, _ in server.posts)
    uploader.set_remote_status(should_watch=True)
    del server.posts[:]
    run(uploader, clock, 100)
    assert 9 <= len(server.posts) <= 11


def test_viewing_boost_posts_at_once_with_a_fresh_frame():
    uploader, clock, server, state = make(printing=False)
    run(uploader, clock, 5)
    assert server.posts == []
    uploader.set_remote_status(viewing=True)
    assert state["requests"] == 1  # the watcher is asked for a frame now
    uploader._tick()
    assert server.posts == []  # the frame from before the boost is not used
    uploader.on_frame(b"\xff\xd8fresh\xff\xd9", 4, 3, 999)
    uploader._tick()
    assert server.posts == [(upload.PIC_PATH, {"viewing_boost": "true"}, b"\xff\xd8fresh\xff\xd9")]
    # Staying viewed does not boost again; not printing means nothing else.
    run(uploader, clock, 60)
    assert len(server.posts) == 1
    assert uploader.info()["boosts"] == 1


def test_failures_back_off_and_are_counted():
    uploader, clock, server, _ = make()
    uploader.set_remote_status(should_watch=True)
    server.error = ConnectionError("server down")
    run(uploader, clock, 60)
    info = uploader.info()
    # 5 s, 10 s, 20 s, 40 s between tries instead of every 10 s
    assert 3 <= info["failed"] <= 5
    assert "server down" in info["last_error"]
    server.error = None
    server.status = 500
    run(uploader, clock, 200)
    assert uploader.info()["last_error"] == "HTTP 500"
    server.status = 200
    run(uploader, clock, 400)
    info = uploader.info()
    assert info["last_error"] is None and info["backoff_s"] == 0 and info["posted"] >= 1


def test_unlinked_posts_nothing_and_counts_nothing():
    uploader, clock, _, _ = make()
    uploader._post = lambda path, data, files: None
    run(uploader, clock, 300)
    info = uploader.info()
    assert info["posted"] == 0 and info["failed"] == 0
