/* Live data streams (see stream.h). The host is sampled on every tick, members or
 * not, so that the CPU share in the first message a new member sees is measured over
 * one interval rather than since boot; a sample is three small /proc reads. */
#include "services/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "services/hoststats.h"

struct stream {
    struct timer t; /* first: the timer callback recovers the stream from it */
    struct streams *owner;
    struct stream_spec spec;
    struct hoststats hs;
};

struct streams {
    struct hub *hub;
    struct loop *loop;
    int n;
    uint64_t published;
    struct stream s[STREAMS_MAX];
};

static void tick(struct loop *loop, struct timer *t)
{
    struct stream *st = (struct stream *)t;
    struct streams *ss = st->owner;
    struct hoststats_sample sample;
    memset(&sample, 0, sizeof sample);
    hoststats_sample(&st->hs, loop_now(loop), &sample);
    loop_timer_arm(loop, t, st->spec.interval_ms);
    if (hub_room_member_count(ss->hub, st->spec.room) == 0) return;
    /* The sampler's JSON goes out as written (two decimals), not re-printed by jansson
     * with seventeen digits. The room id is a configured name, escaped by jansson. */
    char data[1024], text[1400];
    size_t n = hoststats_json(&sample, data, sizeof data);
    json_t *room = json_string(st->spec.room);
    char *room_json = room ? json_dumps(room, JSON_ENCODE_ANY) : NULL;
    json_decref(room);
    int len = room_json && n ? snprintf(text, sizeof text,
                                        "{\"room_id\":%s,\"source\":\"host\",\"data\":%.*s}",
                                        room_json, (int)n, data)
                             : -1;
    free(room_json);
    if (len <= 0 || (size_t)len >= sizeof text) return;
    struct proto_payload pp = {NULL, text, (size_t)len};
    if (hub_publish_room(ss->hub, st->spec.room, "data_update", &pp, NULL)) ss->published++;
}

struct streams *streams_start(struct hub *h, struct loop *loop, const struct stream_spec *specs,
                              int n)
{
    struct streams *ss = calloc(1, sizeof *ss);
    if (!ss) return NULL;
    ss->hub = h;
    ss->loop = loop;
    ss->n = n > STREAMS_MAX ? STREAMS_MAX : n;
    for (int i = 0; i < ss->n; i++) {
        struct stream *st = &ss->s[i];
        st->owner = ss;
        st->spec = specs[i];
        hoststats_init(&st->hs, "/proc");
        loop_timer_init(&st->t, tick);
        loop_timer_arm(loop, &st->t, st->spec.interval_ms);
        log_info("data stream", "room=%s interval_ms=%u", st->spec.room, st->spec.interval_ms);
    }
    return ss;
}

void streams_stop(struct streams *ss)
{
    if (!ss) return;
    for (int i = 0; i < ss->n; i++)
        loop_timer_cancel(ss->loop, &ss->s[i].t);
    free(ss);
}

uint64_t streams_published(const struct streams *ss)
{
    return ss ? ss->published : 0;
}
