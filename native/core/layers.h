/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * layers: which layer a print is on, from the G-code itself. The server
 * shows "layer N of M" (status.currentLayerHeight, which holds a layer
 * number, and file_metadata.obico.totalLayerCount). OctoPrint-Obico gets
 * both by rewriting every uploaded file with marker lines; we leave files
 * alone and apply one rule twice: to the lines OctoPrint sends during a
 * print (the current layer) and to the file before it (the total).
 *
 * The rule: a layer starts when a move that extrudes while moving in X/Y (or
 * an arc that extrudes) happens at least LAYERS_MIN_RISE_MM above the
 * height of the layer before. Travel, Z hops, retractions and
 * un-retractions (E without X/Y) never start one, so neither do the pause
 * and resume moves. Spiral vases rise continuously: they count one layer per
 * LAYERS_MIN_RISE_MM of height, for the live count and the total alike.
 */
#ifndef TSD_LAYERS_H
#define TSD_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAYERS_MIN_RISE_MM 0.03
#define LAYERS_MAX_LINE 512 /* longer lines are not moves: skipped */

struct layer_counter {
    bool absolute_xyz;  /* G90 / G91 */
    bool absolute_e;    /* M82 / M83 (G90/G91 set it too) */
    double z;           /* the nozzle's height as the G-code says */
    double e;           /* the extruder's position (absolute mode) */
    double layer_z;     /* the height of the current layer */
    long layer;         /* 0 until the first extruding move */
};

enum layers_result {
    LAYERS_OK = 0,
    LAYERS_ERR_OPEN,    /* the file cannot be opened or read */
    LAYERS_ERR_TOO_BIG, /* larger than the caller's limit */
};

const char *layers_result_str(enum layers_result result);

void layer_counter_init(struct layer_counter *counter);

/* One line as sent to the printer or read from a file (a comment, a line
 * number and a checksum allowed); returns the layer after it. */
long layer_counter_feed(struct layer_counter *counter, const char *line, size_t len);

/* The layers of a whole G-code file, read in bounded chunks. reason (may be
 * NULL) gets a text for an error. */
enum layers_result layers_count_file(const char *path, uint64_t max_bytes, long *ret_layers,
                                     char *reason, size_t reason_size);

#endif
