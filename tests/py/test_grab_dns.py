# SPDX-License-Identifier: AGPL-3.0-or-later
"""sec09 from pytest: the frame grabber's name resolution has a deadline,
and interrupt/close do not wait for a lookup that never answers.

The checks are C (tests/c/test_grab_dns.c, the meson test
sec09-dns-deadline): they replace the resolver inside the process, which no
Python code can reach. This runs that binary: TSD_GRAB_DNS_TEST, or
build/test/tests/c/test_grab_dns in this checkout.
"""

import subprocess

from tsd_testing import c_test_binary


def test_sec09_dns_lookup_has_a_deadline_and_close_does_not_wait():
    path = c_test_binary("test_grab_dns", "TSD_GRAB_DNS_TEST")
    result = subprocess.run([path], capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "not ok" not in report, report
    assert "1..5" in report, report
