/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * The sandbox probe: compiled only into tsd-helper-sandbox-probe, a test
 * build of the helper (meson -Dtests=true) that is never installed. The
 * shipped tsd-helper has no such code.
 *
 * After the probe build has loaded its model and locked its sandbox,
 * TSD_HELPER_PROBE makes it try one thing that code taken over through a
 * crafted JPEG would try:
 *   open:PATH   open and read a file (the token file, in the tests)
 *   socket      create an IPv4 TCP socket
 *   exec:PATH   run a program
 *   fork        start a process
 * The sandbox must kill it at the attempt (SIGSYS). When the attempt
 * returns instead, the probe says so on stderr (never what it read) and the
 * helper exits with status 1.
 */
#ifndef TSD_HELPER_TEST_PROBE_H
#define TSD_HELPER_TEST_PROBE_H

void helper_test_probe(void);

#endif
