/* Fuzzes the --history rule parser (history/history.h): any input either is refused
 * with a message, or yields at most HIST_MAX_RULES rules whose patterns are
 * NUL-terminated within bounds and whose sizes are within the documented range; and
 * the limits lookup then works for any room name (the pattern matcher, on the same
 * bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "history/history.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    buf[size] = 0;
    struct hist_config c;
    memset(&c, 0, sizeof c);
    c.room.size = 7;
    char err[160];
    err[0] = 0;
    if (hist_rules_parse(buf, &c, err, sizeof err) == 0) {
        CHECK(c.n_rules >= 0 && c.n_rules <= HIST_MAX_RULES);
        for (int i = 0; i < c.n_rules; i++) {
            CHECK(strlen(c.rules[i].pattern) <= HIST_MAX_PATTERN);
            CHECK(c.rules[i].lim.size <= 1000000);
        }
        /* Every rule's own pattern, as a name, matches some rule (itself or earlier). */
        for (int i = 0; i < c.n_rules; i++) {
            struct hist_limits l = hist_limits_for(&c, HIST_ROOM, c.rules[i].pattern);
            (void)l;
        }
        struct hist_limits l = hist_limits_for(&c, HIST_ROOM, buf);
        CHECK(l.size <= 1000000);
    } else {
        CHECK(err[0] != 0 && memchr(err, 0, sizeof err));
    }
    free(buf);
    return 0;
}
