/* Streams and their history: the position (seq, epoch) of every room and every user,
 * and the last messages sent on each, kept in memory so that a client that comes back
 * can be sent what it missed (docs/protocol.md, "Recovery").
 *
 * A stream has a position: `top`, the last seq assigned (seq starts at 1), and an
 * `epoch`, a random string chosen when the stream is created. Positions are
 * consecutive: every assigned seq is appended, so the kept history is the window
 * (top - count, top]. A stream outlives its users (the room, the online user) for
 * its time to live; once it is gone a new stream, with a new epoch, takes its name, so
 * a position from the old one can never be taken for a position in the new one.
 *
 * What is kept is the frame that was delivered (a reference, base/msg.h), never a
 * copy. Limits: per stream, the last `size` messages no older than `ttl`; for the
 * whole store, `memory_cap` bytes (frames, entries, streams), past which the history
 * of the streams that were appended to least recently is dropped first (counted; a
 * client asking for a dropped position is told `recovered: false`).
 *
 * The interface is the one a clustered store (Redis Streams, a later engine) has to
 * provide: append under a per-stream order (here a mutex; there a script), read
 * since a position, the current position. Callers never see the ring.
 *
 * Locks: the store's table mutex, then a stream's mutex; never the other way. A
 * caller that appends holds the stream's mutex across "assign seq, append, post to
 * the shards", which is what makes a recovery's "read history, then go live" exact.
 *
 * Ownership: hist_get returns a reference; release it with hist_unref. The store
 * holds one reference on every stream in its table and is the only one that removes
 * streams from it (hist_sweep, the memory cap, hist_store_free). */
#ifndef WSHUB_HISTORY_HISTORY_H
#define WSHUB_HISTORY_HISTORY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"

#define HIST_EPOCH_LEN   16 /* hex digits */
#define HIST_MAX_RULES   32
#define HIST_MAX_PATTERN 128
#define HIST_MAX_NAME    128 /* room and user ids (proto/envelope.h PROTO_MAX_NAME) */

enum hist_kind { HIST_ROOM = 0, HIST_USER = 1 };

struct hist_limits {
    uint32_t size;   /* messages kept; 0: none (the position is still kept) */
    uint64_t ttl_ms; /* oldest kept; 0: no age limit */
};

/* `--history PATTERN:SIZE:TTL`: rooms whose id matches PATTERN ('*' matches any run of
 * characters) get these limits instead of the default. The first matching rule wins. */
struct hist_rule {
    char pattern[HIST_MAX_PATTERN + 1];
    struct hist_limits lim;
};

struct hist_config {
    struct hist_limits room; /* --history-size, --history-ttl */
    struct hist_limits user; /* users' streams: the same defaults */
    uint64_t memory_cap;     /* --history-memory: bytes for the whole store */
    struct hist_rule rules[HIST_MAX_RULES];
    int n_rules;
};

/* Parses a comma-separated list of PATTERN:SIZE:TTL rules into cfg->rules (appending).
 * TTL takes a unit (ms, s, m, h; bare number: seconds). Returns 0, or -1 with a
 * message in err. */
int hist_rules_parse(const char *spec, struct hist_config *cfg, char *err, size_t cap);

/* The limits that apply to a stream. */
struct hist_limits hist_limits_for(const struct hist_config *cfg, enum hist_kind kind,
                                   const char *name);

/* One kept message. The entry's seq is implicit (reads return consecutive runs). */
struct hist_entry {
    struct wh_msg *frame;
    uint64_t stamp; /* (append time in ms << 1) | presence flag */
};

static inline bool hist_entry_presence(const struct hist_entry *e)
{
    return e->stamp & 1;
}

struct hist_stream;
struct hist_store;

/* Counters and sizes, summed at collection (any thread). */
struct hist_totals {
    uint64_t bytes;            /* accounted memory: frames, entries, streams */
    uint64_t streams;          /* streams in the table */
    uint64_t messages;         /* messages kept */
    uint64_t evicted_messages; /* dropped to stay under the memory cap */
    uint64_t evicted_streams;  /* streams whose history was dropped for the cap */
    uint64_t expired_messages; /* dropped by age */
};

struct hist_store *hist_store_new(const struct hist_config *cfg);
void hist_store_free(struct hist_store *st);
void hist_totals(struct hist_store *st, struct hist_totals *out);

/* The stream named (kind, name), with a reference for the caller; created (new epoch,
 * top 0) when absent and create is set, else NULL (also for a name longer than
 * HIST_MAX_NAME, which no valid id is). *created (may be NULL) says which. */
struct hist_stream *hist_get(struct hist_store *st, enum hist_kind kind, const char *name,
                             bool create, bool *created);
struct hist_stream *hist_ref(struct hist_stream *s);
/* Drops a reference; the stream's time to live counts from the last release. */
void hist_unref(struct hist_stream *s);

/* Fixed at creation for a stream of this node: safe to read without the lock. A
 * mirror (below) changes it under the lock. */
const char *hist_epoch(const struct hist_stream *s);

/* Mirrors (cluster mode, hub/relay.c): the stream is kept in Redis and this one holds
 * what this node received of it. live says its position is known (set once the
 * position was read from Redis); reset, under the lock, drops what is kept and takes
 * the position from Redis. */
void hist_set_live(struct hist_stream *s, bool live);
bool hist_live(const struct hist_stream *s);

void hist_lock(struct hist_stream *s);
void hist_unlock(struct hist_stream *s);

/* --- under hist_lock --- */

/* The last position assigned (0: none yet). */
uint64_t hist_top(const struct hist_stream *s);

/* Assigns the next position to frame and keeps a reference to it (when the stream
 * keeps history); returns the position. presence marks events that members may have
 * opted out of (replays skip them for those members). */
uint64_t hist_append(struct hist_stream *s, struct wh_msg *frame, bool presence);

/* Can a client at position (epoch, since) be brought to top from what is kept? True
 * when the epoch is this stream's, since <= top, and every position after since is
 * still kept (trivially so when since == top). */
bool hist_can_resume(struct hist_stream *s, const char *epoch, uint64_t since);

/* Copies up to max kept entries with seq > after, in order and consecutive from
 * after + 1, each with a reference for the caller (release with msg_unref). Returns
 * the number copied (0 when after >= top), or -1 when position after + 1 is no longer
 * kept (a gap: the history moved on). */
int hist_read(struct hist_stream *s, uint64_t after, struct hist_entry *out, int max);

void hist_reset(struct hist_stream *s, const char *epoch, uint64_t top);

/* The first kept position (top + 1 when none is kept). */
uint64_t hist_first(struct hist_stream *s);

/* --- maintenance (any thread, no stream lock held) --- */

/* After an append: drops the oldest streams' history while the store is over its
 * memory cap. Cheap when under it (one atomic load). */
void hist_enforce_cap(struct hist_store *st);

/* Drops expired messages, and removes streams that nobody uses and whose history is
 * empty once their time to live has passed since their last use. Call about once a
 * second. */
void hist_sweep(struct hist_store *st);

#endif
