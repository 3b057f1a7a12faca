# SPDX-License-Identifier: AGPL-3.0-or-later
"""sec13: the token store (native/core/tok.c) under concurrent writers.

Several processes, each with several threads, save different tokens into one
folder at the same moment. Every save must succeed (one writer's clean-up
never removes another writer's temporary file), and the file left behind is
one of the written tokens, valid, with no temporary file left over.
"""

import os
import subprocess
import sys
import textwrap
import threading

from octoprint_tsd import _tsd

SERVER = "https://app.example.com"
PROCESSES = 3
THREADS = 4
SAVES = 30

WRITER = textwrap.dedent("""
    import sys, threading
    from octoprint_tsd import _tsd
    folder, process, threads, saves = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    failures = []
    def run(thread):
        for _ in range(saves):
            try:
                _tsd.token_save(folder, "{server}", "sec13-p%d-t%d" % (process, thread), "n")
            except _tsd.TokenError as exc:
                failures.append(str(exc))
    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
    print(len(failures), failures[-1] if failures else "")
""").format(server=SERVER)


def test_sec13_concurrent_token_saves_all_succeed(tmp_path):
    folder = str(tmp_path / "data")
    os.mkdir(folder, 0o700)
    # The children import the same build of the extension as this process.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(_tsd.__file__)), env.get("PYTHONPATH", "")])
    children = [
        subprocess.Popen([sys.executable, "-c", WRITER, folder, str(p), str(THREADS), str(SAVES)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=str(tmp_path), env=env)
        for p in range(1, PROCESSES + 1)
    ]
    # This process writes too (process number 0), from threads: the GIL is
    # released around the save.
    failures = []

    def run(thread):
        for _ in range(SAVES):
            try:
                _tsd.token_save(folder, SERVER, "sec13-p0-t%d" % thread, "n")
            except _tsd.TokenError as exc:
                failures.append(str(exc))

    workers = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        count, _, last = out.strip().partition(" ")
        assert int(count) == 0, "a concurrent save failed: " + last
    assert not failures, failures[-1]

    record = _tsd.token_load(folder)
    written = {"sec13-p%d-t%d" % (p, t) for p in range(PROCESSES + 1) for t in range(THREADS)}
    assert record["token"] in written and record["server"] == SERVER
    assert os.listdir(folder) == ["tsd-token"]
