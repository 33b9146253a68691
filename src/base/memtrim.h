/* Giving memory back to the system after a load has gone away.
 *
 * glibc keeps what the program frees in its arenas: after 100k rooms were joined and
 * left, wshub's RSS stayed where the peak left it (issue 14: 10 MiB at start, 118 MiB
 * after the teardown). Nothing leaked; the tables had emptied and freed themselves,
 * but freed chunks in the middle of an arena's heap are returned only by
 * malloc_trim(), which walks every arena and releases the whole free pages in it.
 * That walk takes each arena's lock while it runs, so it must not run on a hot path,
 * nor while the load is still there (memory freed now would be asked for again).
 *
 * The decision is separate from the act so that it can be tested without an
 * allocator: memtrim_check is fed, about once a second, a "load" figure that grows
 * with what the server holds (connections plus rooms) and the current RSS, and says
 * when to trim: the load has fallen to half its peak or less, by at least
 * MEMTRIM_MIN_DROP or with at least MEMTRIM_RSS_SLACK bytes of RSS above what the
 * last trim left, and for MEMTRIM_QUIET_MS it has not moved, up or down, by more
 * than a sixteenth of the peak from one check to the next (the teardown is over).
 * After a trim the peak starts again from the current load, so one fall gives one
 * trim.
 *
 * Not thread-safe: one owner (the main thread, see app/server.c). */
#ifndef WSHUB_BASE_MEMTRIM_H
#define WSHUB_BASE_MEMTRIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMTRIM_CHECK_MS  1000u               /* memtrim_check looks at most this often */
#define MEMTRIM_QUIET_MS  3000u               /* no rise in load for this long */
#define MEMTRIM_MIN_DROP  256u                /* connections + rooms gone since the peak */
#define MEMTRIM_RSS_SLACK (32u * 1024 * 1024) /* or this much RSS above the last trim's */

struct memtrim {
    uint64_t last_check_ms;
    uint64_t quiet_since_ms; /* when the load last moved by more than peak/16 */
    uint64_t peak;           /* highest load since the last trim */
    uint64_t prev;           /* load at the last check */
    uint64_t rss_base;       /* RSS after the last trim (or at start) */
    uint64_t trims;
};

void memtrim_init(struct memtrim *m, uint64_t now_ms, uint64_t load, uint64_t rss);

/* True when a trim is due (see above); the caller then calls memtrim_run and reports
 * the RSS it left with memtrim_done. Calls closer than MEMTRIM_CHECK_MS apart only
 * return false. */
bool memtrim_check(struct memtrim *m, uint64_t now_ms, uint64_t load, uint64_t rss);
void memtrim_done(struct memtrim *m, uint64_t load, uint64_t rss_after);

/* The process's resident set size in bytes (/proc/self/statm), 0 when unreadable. */
uint64_t memtrim_rss(void);

/* Returns free memory to the system (malloc_trim(0) on glibc; nothing elsewhere, nor
 * under a sanitizer's allocator). Sets *us to the time it took. Returns the RSS after. */
uint64_t memtrim_run(uint64_t *us);

#endif
