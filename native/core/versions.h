/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * Versions of the libraries the native core is linked against, read at run
 * time where the library can tell (so a user's bug report shows what was
 * really loaded, not what the build saw).
 */
#ifndef TSD_VERSIONS_H
#define TSD_VERSIONS_H

struct tsd_library_version {
    const char *name;    /* (transfer none) */
    const char *version; /* (transfer none) static or library-owned */
};

/* (transfer none) A table ending with a {NULL, NULL} entry. */
const struct tsd_library_version *tsd_library_versions(void);

#endif
