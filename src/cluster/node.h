/* The node's link to Redis (issue 12): one thread, the cluster thread, running its own
 * event loop (loop/loop.h) with, for every Redis instance given (--redis, repeatable),
 * a command connection and a subscriber connection (redis_conn.h). Nothing here blocks
 * a worker: workers hand work to this thread with node_post, and it hands results back
 * with loop_post to theirs.
 *
 * Sharding: a stream ("room:<id>", "user:<id>") lives on one instance, chosen by
 * rendezvous hashing of its name with each instance's address (host:port/db): the
 * instance with the highest hash wins. Adding an instance moves only the streams that
 * now hash highest to it (about 1/n of them); the order of the --redis options does
 * not matter. Broadcasts and presence use the first instance given.
 *
 * Subscriptions are counted: node_watch(stream, +1) subscribes to the stream's channel
 * "wshub:{<stream>}" on the first watch, node_watch(-1) unsubscribes on the last. After a
 * subscriber connection comes back, every watched channel is subscribed again, and each
 * confirmation is reported (on_subscribed): the owner then re-reads the stream's
 * position, since messages may have been missed while it was down.
 *
 * Threads: node_start/node_stop on the main thread; node_post and node_ready from any
 * thread; everything else, and every callback, on the cluster thread.
 *
 * Ownership: the node owns its loop, thread and connections; callbacks' data is valid
 * only during the call. */
#ifndef WSHUB_CLUSTER_NODE_H
#define WSHUB_CLUSTER_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/redis_conn.h"
#include "cluster/redis_url.h"
#include "loop/loop.h"

#define NODE_MAX_REDIS 8
#define NODE_ID_LEN    16 /* hex digits */

struct node;

struct node_opts {
    const struct redis_url *urls;
    int n_urls;
    const char *const *preload; /* scripts for every command connection */
    void *arg;
    /* A message on a watched stream's channel; stream is NULL for a broadcast. */
    void (*on_message)(void *arg, const char *stream, size_t stream_len, const char *msg,
                       size_t len);
    /* The subscription of a watched stream is (again) in place. */
    void (*on_subscribed)(void *arg, const char *stream, size_t stream_len);
    /* An instance's connections went up (both) or down (either). */
    void (*on_state)(void *arg, int instance, bool up);
};

/* Starts the cluster thread and connects. NULL when the thread cannot start. */
struct node *node_start(const struct node_opts *o);
/* Stops the thread, closes the connections, frees the node (main thread). */
void node_stop(struct node *n);

/* The node's random id (NODE_ID_LEN hex digits), fixed for the process. */
const char *node_id(const struct node *n);

/* Any thread: runs fn(arg) on the cluster thread. -1 when out of memory. */
int node_post(struct node *n, void (*fn)(void *arg), void *arg);

/* Any thread: every instance's connections are up. */
bool node_ready(const struct node *n);
int node_instances(const struct node *n);

/* Cluster thread only. */
int node_instance_of(const struct node *n, const char *stream, size_t len);
/* NULL once the node is stopping. */
struct redis_conn *node_cmd(struct node *n, int instance);
struct loop *node_loop(struct node *n);
void node_watch(struct node *n, const char *stream, size_t len, int delta);

/* Counters summed over the instances (any thread; relaxed, may be slightly stale). */
struct node_stats {
    uint64_t commands, replies, error_replies, bytes_out, bytes_in, messages;
    uint64_t connects, reconnects, failures, timeouts, refused;
    uint64_t rtt_count, rtt_sum_us;
    uint64_t rtt_hist[REDIS_RTT_BUCKETS];
    uint64_t subscriptions; /* channels subscribed now */
    int up;                 /* instances up */
};
void node_stats(const struct node *n, struct node_stats *out);

#endif
