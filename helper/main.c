/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * tsd-helper: the inference process, kept apart from OctoPrint so that a
 * crash or an out-of-memory in OpenCV can never take OctoPrint down.
 *
 * Modes so far:
 *   tsd-helper --version     print the helper and OpenCV versions
 *   tsd-helper --self-check  build a tiny network in memory, run it once and
 *                            compare the output with values computed by hand
 * The frame protocol used by the plugin comes with the detection work.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"

#ifndef TSD_VERSION
#error "meson passes TSD_VERSION"
#endif

enum helper_result {
    HELPER_OK = 0,
    HELPER_ERR_USAGE = 2,
    HELPER_ERR_CHECK = 3,
};

/* One 1x1 convolution, 3 input channels -> 2 outputs, linear activation. */
static const char self_check_cfg[] =
    "[net]\nwidth=4\nheight=4\nchannels=3\n\n"
    "[convolutional]\nfilters=2\nsize=1\nstride=1\npad=0\nactivation=linear\n";

#define SELF_CHECK_FILTERS 2
#define SELF_CHECK_CHANNELS 3
#define SELF_CHECK_SIDE 4

static size_t put_u32(unsigned char *buf, uint32_t value)
{
    memcpy(buf, &value, sizeof(value)); /* Darknet files are little-endian */
    return sizeof(value);
}

static size_t put_f32(unsigned char *buf, float value)
{
    memcpy(buf, &value, sizeof(value));
    return sizeof(value);
}

static enum helper_result self_check(void)
{
    enum helper_result result = HELPER_OK;
    unsigned char weights[64];
    const float biases[SELF_CHECK_FILTERS] = {0.5f, -1.0f};
    const float kernel[SELF_CHECK_FILTERS] = {0.25f, 2.0f};
    float input[SELF_CHECK_CHANNELS * SELF_CHECK_SIDE * SELF_CHECK_SIDE];
    float output[SELF_CHECK_FILTERS * SELF_CHECK_SIDE * SELF_CHECK_SIDE];
    size_t output_len = 0;
    struct infer_net *net = NULL;
    char err[512] = "";
    enum infer_result rc;
    size_t off = 0;
    uint64_t seen = 0;

    /* Header: major 0, minor 2, revision 0, then a 64-bit "seen" counter. */
    off += put_u32(weights + off, 0);
    off += put_u32(weights + off, 2);
    off += put_u32(weights + off, 0);
    memcpy(weights + off, &seen, sizeof(seen));
    off += sizeof(seen);
    for (int f = 0; f < SELF_CHECK_FILTERS; f++)
        off += put_f32(weights + off, biases[f]);
    for (int f = 0; f < SELF_CHECK_FILTERS; f++)
        for (int c = 0; c < SELF_CHECK_CHANNELS; c++)
            off += put_f32(weights + off, kernel[f]);

    for (size_t i = 0; i < sizeof(input) / sizeof(input[0]); i++)
        input[i] = 1.0f;

    rc = infer_net_load_darknet(self_check_cfg, sizeof(self_check_cfg) - 1, weights, off,
                                &net, err, sizeof(err));
    if (rc != INFER_OK) {
        fprintf(stderr, "tsd-helper: self-check: %s (%s)\n", infer_result_str(rc), err);
        result = HELPER_ERR_CHECK;
        goto out;
    }
    rc = infer_net_forward(net, input, SELF_CHECK_CHANNELS, SELF_CHECK_SIDE, SELF_CHECK_SIDE,
                           output, sizeof(output) / sizeof(output[0]), &output_len,
                           err, sizeof(err));
    if (rc != INFER_OK) {
        fprintf(stderr, "tsd-helper: self-check: %s (%s)\n", infer_result_str(rc), err);
        result = HELPER_ERR_CHECK;
        goto out;
    }
    if (output_len != sizeof(output) / sizeof(output[0])) {
        fprintf(stderr, "tsd-helper: self-check: %zu outputs, expected %zu\n", output_len,
                sizeof(output) / sizeof(output[0]));
        result = HELPER_ERR_CHECK;
        goto out;
    }
    for (int f = 0; f < SELF_CHECK_FILTERS; f++) {
        /* Each output pixel = bias + kernel * (sum over 3 channels of 1.0). */
        float expected = biases[f] + kernel[f] * SELF_CHECK_CHANNELS;
        for (int i = 0; i < SELF_CHECK_SIDE * SELF_CHECK_SIDE; i++) {
            float got = output[f * SELF_CHECK_SIDE * SELF_CHECK_SIDE + i];
            if (got < expected - 1e-5f || got > expected + 1e-5f) {
                fprintf(stderr, "tsd-helper: self-check: output %d/%d is %g, expected %g\n",
                        f, i, (double)got, (double)expected);
                result = HELPER_ERR_CHECK;
                goto out;
            }
        }
    }
    printf("self-check ok: opencv %s, %zu outputs\n", infer_opencv_version(), output_len);

out:
    net = infer_net_free(net);
    return result;
}

static void usage(FILE *stream)
{
    fprintf(stream, "usage: tsd-helper --version | --self-check\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("tsd-helper %s (opencv %s)\n", TSD_VERSION, infer_opencv_version());
        return HELPER_OK;
    }
    if (argc == 2 && strcmp(argv[1], "--self-check") == 0)
        return self_check();
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return HELPER_OK;
    }
    usage(stderr);
    return HELPER_ERR_USAGE;
}
