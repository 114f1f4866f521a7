/* hashslot.c: see hashslot.h. The CRC is table-driven, one lookup per byte;
 * the table is derived from the polynomial on first use rather than written
 * out, so it is short and checkably right. */
#include "hashslot.h"

#include <stdbool.h>
#include <string.h>

#define CRC16_POLY 0x1021

static uint16_t table[256];
static bool table_ready;

static void build_table(void)
{
    for (unsigned b = 0; b < 256; b++) {
        uint16_t crc = (uint16_t)(b << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t)((crc & 0x8000) ? (crc << 1) ^ CRC16_POLY : crc << 1);
        table[b] = crc;
    }
    table_ready = true;
}

uint16_t hashslot_crc16(const void *data, size_t len)
{
    if (!table_ready) build_table();
    const unsigned char *p = data;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ table[((crc >> 8) ^ p[i]) & 0xff]);
    return crc;
}

void hashslot_tag(const char *key, size_t len, const char **tag, size_t *tlen)
{
    *tag = key;
    *tlen = len;
    const char *open = memchr(key, '{', len);
    if (!open) return;
    size_t from = (size_t)(open - key) + 1;
    const char *close = memchr(open + 1, '}', len - from);
    if (!close || close == open + 1) return; /* no '}', or "{}": the whole key */
    *tag = open + 1;
    *tlen = (size_t)(close - open - 1);
}

unsigned hashslot_of(const char *key, size_t len)
{
    const char *tag;
    size_t tlen;
    hashslot_tag(key, len, &tag, &tlen);
    return hashslot_crc16(tag, tlen) & (HASHSLOT_COUNT - 1);
}
