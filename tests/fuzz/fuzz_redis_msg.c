/* Fuzzes the parser of what the cluster receives on a stream's channel
 * (cluster/rstream.h rstream_msg_parse, "<epoch>:<seq>:<frame>"): any input is refused,
 * or splits into a 16 lower-case hex epoch, a seq > 0 without leading zero and a frame
 * inside the input, which print back to exactly the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/rstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rstream_published hdr;
    const char *frame = NULL;
    size_t flen = 0;
    const char *msg = (const char *)data;
    if (rstream_msg_parse(msg, size, &hdr, &frame, &flen) != 0) return 0;
    CHECK(strlen(hdr.epoch) == RSTREAM_EPOCH_LEN);
    for (int i = 0; i < RSTREAM_EPOCH_LEN; i++)
        CHECK((hdr.epoch[i] >= '0' && hdr.epoch[i] <= '9') ||
              (hdr.epoch[i] >= 'a' && hdr.epoch[i] <= 'f'));
    CHECK(hdr.seq > 0);
    CHECK(frame >= msg && frame + flen == msg + size);
    char head[64];
    int n = snprintf(head, sizeof head, "%s:%llu:", hdr.epoch, (unsigned long long)hdr.seq);
    CHECK(n > 0 && (size_t)n == (size_t)(frame - msg) && !memcmp(head, msg, (size_t)n));
    return 0;
}
