/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the one host rule (native/core/hostrule.c): the bytes are
 * a server URL (byte 0: whether cleartext on the LAN is allowed). Every
 * input must give a clean refusal with a printable reason, or a URL whose
 * parts are within their bounds and whose cleartext the rule allows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hostrule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hostrule_url url;
    char reason[384];
    enum hostrule_result result;
    bool allow_lan;
    char *text;

    if (size < 1)
        return 0;
    allow_lan = data[0] & 1;
    text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    reason[0] = '\0';
    result = hostrule_check_url(text, allow_lan, &url, reason, sizeof(reason));
    if (result == HOSTRULE_OK) {
        if (strlen(url.host) > HOSTRULE_MAX_HOST || url.port < 0 || url.port > 65535 ||
            !url.path || (!url.tls && !hostrule_cleartext_allowed(url.host_class, allow_lan)) ||
            url.host_class != hostrule_classify(url.host))
            abort();
    } else {
        for (const char *r = reason; *r; r++)
            if ((unsigned char)*r < 0x20 || (unsigned char)*r > 0x7e)
                abort();
        if (!reason[0])
            abort();
    }
    (void)hostrule_classify(text);
    free(text);
    return 0;
}
