/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * lebytes: little-endian integers in byte buffers (the helper's frame
 * headers), whatever the host's byte order.
 */
#ifndef TSD_LEBYTES_H
#define TSD_LEBYTES_H

#include <stdint.h>

static inline uint16_t get_u16le(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void put_u16le(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v & 0xffu);
    p[1] = (unsigned char)(v >> 8);
}

static inline void put_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v & 0xffu);
    p[1] = (unsigned char)((v >> 8) & 0xffu);
    p[2] = (unsigned char)((v >> 16) & 0xffu);
    p[3] = (unsigned char)(v >> 24);
}

#endif
