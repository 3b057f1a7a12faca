/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for the layer rule (native/core/layers.c): what starts a layer
 * in the lines OctoPrint sends, and the same count over a whole file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "layers.h"

static long feed_all(struct layer_counter *counter, const char *const *lines)
{
    long layer = counter->layer;

    for (; *lines; lines++)
        layer = layer_counter_feed(counter, *lines, strlen(*lines));
    return layer;
}

static void test_layers_rise_with_extruding_moves(void)
{
    static const char *const lines[] = {
        "G28", "G90", "M82", "G92 E0",
        "G1 Z0.2 F3000", "G1 X10 Y10 E1.0", "G1 X20 Y10 E2.0",  /* layer 1 */
        "G1 Z0.4", "G1 X10 E3.0",                                /* layer 2 */
        "G1 Z0.6", "G1 X20 E4.0",                                /* layer 3 */
        NULL,
    };
    struct layer_counter counter;

    layer_counter_init(&counter);
    CHECK(feed_all(&counter, lines) == 3);
}

static void test_travel_hops_and_retractions_start_no_layer(void)
{
    static const char *const lines[] = {
        "G1 Z0.2", "G1 X1 Y1 E0.5",      /* layer 1 */
        "G1 E0.0",                       /* retract */
        "G1 Z1.2", "G1 X50 Y50",         /* hop and travel */
        "G1 Z0.2", "G1 E0.5",            /* down, un-retract: no X/Y */
        "G1 X60 E1.0",                   /* still layer 1 */
        "G91", "G1 Z10", "G1 E5",        /* a pause's lift and a purge */
        "G1 Z-10", "G90",                /* and back */
        "G1 X70 E6.0",                   /* same height: layer 1 */
        NULL,
    };
    struct layer_counter counter;

    layer_counter_init(&counter);
    CHECK(feed_all(&counter, lines) == 1);
}

static void test_relative_extrusion_and_compact_words(void)
{
    static const char *const lines[] = {
        "M83", "G1Z0.3", "G1X5Y5E.4", "N12 G1 Z0.5*77", "N13 G1 X6 E0.4*12 ; perimeter",
        "G1 Z0.7", "G1 X7 E-0.8", /* a retraction while moving: not a layer */
        "G1 X8 E0.8",             /* layer 3 */
        "G2 Z0.9 I1 J1 E0.2",     /* an arc that extrudes: layer 4 */
        "G1.1 X1 E9",             /* not a move we follow */
        "; G1 Z5 X1 E9", "", "   ", "G1 X1 E1e999",
        NULL,
    };
    struct layer_counter counter;

    layer_counter_init(&counter);
    CHECK(feed_all(&counter, lines) == 4);
}

static void test_g92_and_g28_set_positions(void)
{
    static const char *const lines[] = {
        "G1 Z0.2", "G1 X1 E5",   /* layer 1 */
        "G92 E0", "G1 X2 E1",    /* E reset: still extruding, same layer */
        "G92 Z0.2", "G1 X3 E2",  /* same height declared: same layer */
        "G28 Z", "G1 Z0.4", "G1 X4 E3", /* layer 2 */
        NULL,
    };
    struct layer_counter counter;

    layer_counter_init(&counter);
    CHECK(feed_all(&counter, lines) == 2);
}

static void test_small_rises_are_not_layers(void)
{
    struct layer_counter counter;
    char line[64];

    layer_counter_init(&counter);
    /* A vase rising 0.01 mm a segment: one layer per LAYERS_MIN_RISE_MM. */
    for (int i = 1; i <= 100; i++) {
        snprintf(line, sizeof(line), "G1 X%d Z%.2f E%d", i % 2, 0.2 + i * 0.01, i);
        layer_counter_feed(&counter, line, strlen(line));
    }
    CHECK(counter.layer >= 30 && counter.layer <= 34);
}

static void test_a_file_counts_as_its_lines_do(void)
{
    char path[] = "/tmp/tsd-layers-XXXXXX";
    int fd = mkstemp(path);
    FILE *file;
    long layers = -1;
    char reason[256] = "";
    struct layer_counter counter;
    char line[64];

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    file = fdopen(fd, "w");
    layer_counter_init(&counter);
    fputs("; generated\nG28\r\nM83\n", file);
    for (int layer = 1; layer <= 250; layer++) {
        snprintf(line, sizeof(line), "G1 Z%.1f\n", layer * 0.2);
        fputs(line, file);
        for (int i = 0; i < 300; i++)   /* enough to cross read chunks */
            fprintf(file, "G1 X%d Y%d E0.05 ; infill\n", i, layer);
    }
    for (int i = 0; i < 2000; i++)      /* a line far too long to be a move */
        fputc('x', file);
    fputs("\nG1 Z60\nG1 X1 E1", file);   /* a last layer without a newline */
    fclose(file);
    CHECK(layers_count_file(path, 1u << 30, &layers, reason, sizeof(reason)) == LAYERS_OK);
    CHECK(layers == 251);
    CHECK(layers_count_file(path, 1000, &layers, reason, sizeof(reason)) == LAYERS_ERR_TOO_BIG);
    CHECK(strstr(reason, "larger than") != NULL);
    unlink(path);
    CHECK(layers_count_file(path, 1u << 30, &layers, reason, sizeof(reason)) == LAYERS_ERR_OPEN);
    CHECK(strstr(reason, "cannot open") != NULL);
    CHECK(layers_count_file("/tmp", 1u << 30, &layers, reason, sizeof(reason)) == LAYERS_ERR_OPEN);
}

int main(void)
{
    RUN_TEST(test_layers_rise_with_extruding_moves);
    RUN_TEST(test_travel_hops_and_retractions_start_no_layer);
    RUN_TEST(test_relative_extrusion_and_compact_words);
    RUN_TEST(test_g92_and_g28_set_positions);
    RUN_TEST(test_small_rises_are_not_layers);
    RUN_TEST(test_a_file_counts_as_its_lines_do);
    return CHECK_DONE();
}
