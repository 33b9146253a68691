/* Streams (positions, epoch, history) kept in Redis, one command per operation
 * (issue 12; built and tested, not wired into the hub yet). docs/cluster.md has the
 * key layout; in short, for a stream named N (e.g. "room:lobby"):
 *
 *   wshub:{N}:x      a Redis stream, entry id "<seq>-0", one field "f" = the frame
 *   wshub:{N}:seq    the last position assigned (INCR)
 *   wshub:{N}:epoch  a random id (16 hex digits) naming this run of positions
 *   wshub:{N}       the pub/sub channel the frames are published on
 *
 * rstream_publish runs one Lua script (EVALSHA, and EVAL once when Redis answers
 * NOSCRIPT) that atomically: starts a new epoch (random, drawn by the caller) when the
 * epoch or seq key is missing (first use, expiry, deletion; the old stream is dropped,
 * so positions restart at 1 and a client holding the old epoch can tell); INCRs the
 * position; XADDs the frame with MAXLEN ~ size; PEXPIREs the three keys (TTL, when not
 * 0); and PUBLISHes "<epoch>:<seq>:<frame>" on the channel. So every subscriber sees
 * one order, the order of the positions, whichever node published.
 *
 * rstream_read_since runs a second script that reads the epoch, the last position and
 * XRANGE from since+1 in one atomic step, and reports consecutive entries, or a gap
 * (the stream was trimmed or expired past since+1), or an epoch change.
 *
 * Ownership: arguments are copied; results (epoch, entries) point into the reply and
 * are valid only during the callback. Callbacks run on the connection's loop. Each call
 * returns -1 (callback never called) when the connection is not up. */
#ifndef WSHUB_CLUSTER_RSTREAM_H
#define WSHUB_CLUSTER_RSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/redis_conn.h"

#define RSTREAM_EPOCH_LEN 16

/* The scripts, NULL-terminated: pass as redis_conn_opts.preload. Without that (or after
 * a SCRIPT FLUSH), the first calls get NOSCRIPT and are retried with EVAL, which keeps
 * them correct but may reorder them after later calls of the same connection. */
extern const char *const rstream_scripts[];

struct rstream_published {
    uint64_t seq;
    char epoch[RSTREAM_EPOCH_LEN + 1];
};

/* ok == 0 with res set, or -1 (connection lost, script error: res NULL). */
typedef void (*rstream_publish_cb)(void *arg, int ok, const struct rstream_published *res);

int rstream_publish(struct redis_conn *rc, const char *name, size_t name_len, const void *frame,
                    size_t frame_len, uint32_t maxlen, uint32_t ttl_ms, rstream_publish_cb cb,
                    void *arg);

/* The same, with the position spliced into the frame: frame .. seq .. suffix. */
int rstream_publish_split(struct redis_conn *rc, const char *name, size_t name_len,
                          const void *frame, size_t frame_len, const void *suffix,
                          size_t suffix_len, uint32_t maxlen, uint32_t ttl_ms,
                          rstream_publish_cb cb, void *arg);

/* The stream's position now (res->seq = top, maybe 0), creating it (new epoch, top 0)
 * when it does not exist; refreshes the TTL of its position. */
int rstream_anchor(struct redis_conn *rc, const char *name, size_t name_len, uint32_t ttl_ms,
                   rstream_publish_cb cb, void *arg);

enum rstream_read_status {
    RSTREAM_READ_OK,    /* entries since+1 .. top, consecutive (maybe none) */
    RSTREAM_READ_GAP,   /* since+1 is no longer in the stream (or since > top) */
    RSTREAM_READ_EPOCH, /* the stream's epoch is not the caller's (or it does not exist) */
    RSTREAM_READ_FAILED /* connection lost or unexpected reply */
};

struct rstream_entry {
    uint64_t seq;
    const char *data;
    size_t len;
};

/* epoch and top describe the stream now ("" and 0 when it does not exist). */
typedef void (*rstream_read_cb)(void *arg, enum rstream_read_status st, const char *epoch,
                                uint64_t top, const struct rstream_entry *entries, size_t n);

/* Reads up to max entries after since. epoch is the caller's (NULL: accept any). */
int rstream_read_since(struct redis_conn *rc, const char *name, size_t name_len, const char *epoch,
                       uint64_t since, uint32_t max, rstream_read_cb cb, void *arg);

/* Splits a published message "<epoch>:<seq>:<frame>". Returns 0 or -1 when malformed. */
int rstream_msg_parse(const char *msg, size_t len, struct rstream_published *hdr,
                      const char **frame, size_t *frame_len);

#endif
