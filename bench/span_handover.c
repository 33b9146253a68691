/* Micro-benchmark: the cost of ending a sampled span, as a worker pays it. Compares
 * the per-thread single-producer ring that wshub uses (telemetry/spanq.h) with the
 * alternative the design considered: one shared queue behind a mutex, taken once per
 * span by producers and once per batch by the consumer. A consumer thread drains
 * either queue continuously, as the exporter does; both drop when full and count it.
 *
 * Build and run (after building wshub_core):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Isrc bench/span_handover.c build/libwshub_core.a \
 *       -ljansson -ljwt -lcurl -lssl -lcrypto -lz -lpthread -lm -o /tmp/span_handover
 *   /tmp/span_handover [producers] [spans per producer]
 * Prints ns per span for span_start + 4 attributes + span_end, per producer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "telemetry/spanq.h"
#include "telemetry/trace.h"

#define SHARED_CAP 2048

static struct {
    pthread_mutex_t mu;
    struct span slots[SHARED_CAP];
    size_t head, n;
    uint64_t dropped;
} shared = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int use_ring;
static long per_thread;
static atomic_int producers_left;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void shared_push(const struct span *s)
{
    pthread_mutex_lock(&shared.mu);
    if (shared.n == SHARED_CAP) {
        shared.dropped++;
    } else {
        struct span *d = &shared.slots[(shared.head + shared.n++) % SHARED_CAP];
        memcpy(d, s, offsetof(struct span, str) + s->str_used);
    }
    pthread_mutex_unlock(&shared.mu);
}

static void *producer(void *arg)
{
    uint64_t *ns = arg;
    struct span s;
    uint64_t t0 = now_ns();
    for (long i = 0; i < per_thread; i++) {
        span_start(&s, "websocket.receive", SPAN_CONSUMER, NULL);
        span_attr_cstr(&s, "client.id", "5f9cb92651276e6c");
        span_attr_cstr(&s, "message.type", "send_to_room");
        span_attr_cstr(&s, "room.id", "lobby");
        span_attr_int(&s, "messaging.message.body.size", 72);
        if (use_ring) {
            span_end(&s); /* spanq_push */
        } else {
            s.recording = false;
            s.end_ns = trace_now_ns();
            shared_push(&s);
        }
    }
    *ns = now_ns() - t0;
    atomic_fetch_sub(&producers_left, 1);
    return NULL;
}

static void *consumer(void *arg)
{
    uint64_t *taken = arg;
    static const struct span *batch[512];
    static struct span copy[512];
    while (atomic_load(&producers_left) > 0) {
        if (use_ring) {
            size_t n = spanq_take(batch, 512);
            *taken += n;
            spanq_release();
        } else {
            /* Take a batch under the lock (copy out), then let producers go on. */
            pthread_mutex_lock(&shared.mu);
            size_t n = shared.n < 512 ? shared.n : 512;
            for (size_t i = 0; i < n; i++)
                memcpy(&copy[i], &shared.slots[(shared.head + i) % SHARED_CAP],
                       offsetof(struct span, str) + 64);
            shared.head = (shared.head + n) % SHARED_CAP;
            shared.n -= n;
            pthread_mutex_unlock(&shared.mu);
            *taken += n;
        }
    }
    return NULL;
}

static void run(int ring, int np)
{
    use_ring = ring;
    atomic_store(&producers_left, np);
    spanq_init(SHARED_CAP / (size_t)np, 512, NULL);
    shared.head = shared.n = 0;
    shared.dropped = 0;
    pthread_t pt[8], ct;
    uint64_t ns[8] = {0}, taken = 0;
    pthread_create(&ct, NULL, consumer, &taken);
    for (int i = 0; i < np; i++)
        pthread_create(&pt[i], NULL, producer, &ns[i]);
    for (int i = 0; i < np; i++)
        pthread_join(pt[i], NULL);
    pthread_join(ct, NULL);
    uint64_t dropped = ring ? spanq_dropped() : shared.dropped;
    double avg = 0;
    for (int i = 0; i < np; i++)
        avg += (double)ns[i] / (double)per_thread;
    avg /= np;
    printf("%-28s producers=%d  %6.1f ns/span  handed over %.1f%%  dropped %.1f%%\n",
           ring ? "per-thread SPSC ring" : "shared queue behind a mutex", np, avg,
           100.0 * (double)(np * per_thread - (long)dropped) / (double)(np * per_thread),
           100.0 * (double)dropped / (double)(np * per_thread));
    spanq_destroy();
}

int main(int argc, char **argv)
{
    int max_np = argc > 1 ? atoi(argv[1]) : 2;
    per_thread = argc > 2 ? atol(argv[2]) : 2000000;
    if (max_np < 1 || max_np > 8) max_np = 2;
    trace_sampler = (struct sampler){.kind = SAMPLER_ALWAYS_ON, .ratio = 1};
    for (int np = 1; np <= max_np; np++) {
        run(1, np);
        run(0, np);
    }
    return 0;
}
