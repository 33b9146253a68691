/* The hand-over of finished spans from the threads that record them to the
 * exporter thread: one single-producer single-consumer ring per producing thread,
 * so ending a span takes no lock and makes no system call.
 *
 * A thread's ring is allocated on its first span (one allocation per thread, never
 * per span) and registered once under a mutex; rings outlive their threads and are
 * freed by spanq_destroy after every producer has stopped. A full ring drops the
 * span and counts it (spanq_dropped): memory is bounded by capacity * threads.
 *
 * Wake-up: a producer whose ring reaches `batch` spans calls the wake function once
 * (at that crossing, not per span), so a busy server exports full batches without
 * waiting for the schedule delay.
 *
 * Threads: spanq_push from any thread; spanq_take, spanq_release and the counters
 * from the one consumer (the exporter). */
#ifndef WSHUB_TELEMETRY_SPANQ_H
#define WSHUB_TELEMETRY_SPANQ_H

#include <stddef.h>
#include <stdint.h>

#include "telemetry/trace.h"

/* ring_cap is rounded up to a power of two (at least 16). */
int spanq_init(size_t ring_cap, size_t batch, void (*wake)(void));
void spanq_destroy(void);

/* Copies s into this thread's ring; 0, or -1 when it was dropped. */
int spanq_push(const struct span *s);

/* Up to max spans waiting, oldest first per ring, as pointers into the rings (valid
 * until spanq_release). Returns how many. */
size_t spanq_take(const struct span **out, size_t max);
/* Frees the slots of everything the last spanq_take returned. */
void spanq_release(void);

/* Spans waiting in all rings (approximate while producers run). */
size_t spanq_pending(void);
uint64_t spanq_dropped(void);

#endif
