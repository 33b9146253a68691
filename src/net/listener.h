/* A listening socket on one loop. Each worker opens its own on the same address with
 * SO_REUSEPORT, so the kernel spreads new connections over the workers and no accept
 * lock is shared. Accepted sockets are non-blocking, close-on-exec, TCP_NODELAY (set
 * on the listening socket, which they inherit: no system call per accept for it).
 *
 * When accept fails for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM), the listener stops accepting for LISTENER_BACKOFF_MS and then tries again:
 * pending connections wait in the kernel's backlog instead of spinning the loop.
 *
 * Ownership: the caller owns struct listener; listener_close releases the socket. */
#ifndef WSHUB_NET_LISTENER_H
#define WSHUB_NET_LISTENER_H

#include <stdint.h>

#include "loop/loop.h"

#define LISTENER_BACKOFF_MS 100u

/* Connections taken from the backlog per loop turn: the rest wait for the next turn,
 * after the events of the connections already open. Under --defer-accept a plaintext
 * connection's request is served in the turn that accepts it, ~15 µs each, so an
 * unbounded accept loop over a full backlog (4,096) would hold every open connection
 * back for ~60 ms during a reconnect storm; 64 bound that to ~1 ms a turn. */
#define LISTENER_ACCEPTS_PER_TURN 64

struct listener;

/* fd: a connected socket now owned by the callee. */
typedef void (*listener_accept_fn)(struct listener *l, int fd);

struct listener {
    struct io_watch w; /* first: the loop hands back this pointer */
    struct loop *loop;
    struct timer retry;
    struct loop_task more; /* the backlog's rest, next turn (LISTENER_ACCEPTS_PER_TURN) */
    listener_accept_fn on_accept;
    void *ud;
    uint64_t accepted;
    uint64_t accept_errors; /* resource exhaustion events */
    char name[80];          /* "host:port" for logs */
};

/* Opens a non-blocking listening socket on host:port (numeric IPv4/IPv6; "" means
 * 0.0.0.0) with SO_REUSEADDR, and SO_REUSEPORT when `shared` (IPV6_V6ONLY for IPv6,
 * so [::] and 0.0.0.0 may both be listened on). A socket opened without `shared`
 * fails with -EADDRINUSE if anyone holds the port, even with SO_REUSEPORT: that is
 * how start-up checks the port is ours before the workers share it. Returns the fd
 * or -errno. */
int listener_socket(const char *host, uint16_t port, int shared);

/* Asks the kernel to hand a connection to accept only once its first bytes have
 * arrived (TCP_DEFER_ACCEPT): an HTTP or TLS client speaks first, so the request comes
 * with the connection and one wake-up serves both, where without it the accept and
 * the request each woke the loop (connection set-up costs ~10% less server CPU, see
 * docs/benchmarks.md). A client that connects and stays silent is handed over after
 * about `seconds` (the kernel's next SYN-ACK retransmission), and its handshake
 * timeout runs from then. Returns 0 or -errno. */
int listener_defer_accept(int fd, unsigned seconds);

/* Binds a listener to a loop around fd from listener_socket. Returns 0 or -errno. */
int listener_start(struct listener *l, struct loop *loop, int fd, listener_accept_fn fn, void *ud);

void listener_close(struct listener *l);

/* The port the socket is bound to (useful with port 0). */
int listener_port(int fd);

#endif
