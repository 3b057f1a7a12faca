/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "versions.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <yaml.h>

#ifndef TSD_TURBOJPEG_VERSION
#error "meson passes TSD_TURBOJPEG_VERSION (libturbojpeg has no run-time version call)"
#endif

const struct tsd_library_version *tsd_library_versions(void)
{
    /* Filled on each call: the run-time calls return static strings, and the
     * table itself is rebuilt in place, so no initialisation race matters. */
    static _Thread_local struct tsd_library_version table[6];

    table[0] = (struct tsd_library_version){"libwebsockets", lws_get_library_version()};
    table[1] = (struct tsd_library_version){"openssl", OpenSSL_version(OPENSSL_VERSION)};
    table[2] = (struct tsd_library_version){"jansson", jansson_version_str()};
    table[3] = (struct tsd_library_version){"libyaml", yaml_get_version_string()};
    table[4] = (struct tsd_library_version){"libturbojpeg", TSD_TURBOJPEG_VERSION};
    table[5] = (struct tsd_library_version){NULL, NULL};
    return table;
}
