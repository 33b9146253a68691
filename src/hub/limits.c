/* Connection admission: a total and a per-address count of /ws connections, checked
 * before the upgrade so that a refused client gets an HTTP status (503 / 429) rather
 * than a socket that closes. The total is one atomic; the per-address table takes a
 * mutex, once per upgrade and once per close, never per message. The same table
 * counts each address's room memberships (max_rooms_per_ip: one address cannot fill
 * the node's room limit from many connections); taken once per join and leave. */
#include <stdlib.h>
#include <string.h>

#include "hub/internal.h"
#include "telemetry/trace.h"

int hub_admit(struct hub *h, const char *ip)
{
    unsigned now = atomic_fetch_add(&h->conns, 1) + 1;
    if (h->cfg.max_conns && now > h->cfg.max_conns) {
        atomic_fetch_sub(&h->conns, 1);
        return 503;
    }
    if (!h->cfg.max_conns_per_ip && !h->cfg.max_rooms_per_ip) return 0;
    uint32_t hv = id_hash(ip);
    pthread_mutex_lock(&h->ip_mu);
    struct ip_count *e = ip_of(id_tab_find(&h->ips, ip, hv));
    int rc = 0;
    if (e && h->cfg.max_conns_per_ip && e->n >= h->cfg.max_conns_per_ip) {
        rc = 429;
    } else if (e) {
        e->n++;
    } else {
        /* Out of memory: refused (503) rather than admitted uncounted. An uncounted
         * connection's close would take one off a later entry for the same address,
         * freeing it under the connections that point at it. */
        size_t len = strnlen(ip, CLIENT_IP_LEN - 1); /* (conn_peer's text always fits) */
        if ((e = calloc(1, sizeof *e + len + 1))) {
            memcpy(e->ip, ip, len);
            e->hashv = ip[len] ? id_hash(e->ip) : hv;
            e->n = 1;
            if (id_tab_add(&h->ips, &e->hashv) < 0) {
                free(e);
                e = NULL;
            }
        }
        if (!e) rc = 503;
    }
    pthread_mutex_unlock(&h->ip_mu);
    if (rc) {
        atomic_fetch_sub(&h->conns, 1);
    }
    return rc;
}

void hub_release(struct hub *h, const char *ip)
{
    atomic_fetch_sub(&h->conns, 1);
    if (!h->cfg.max_conns_per_ip && !h->cfg.max_rooms_per_ip) return;
    uint32_t hv = id_hash(ip);
    pthread_mutex_lock(&h->ip_mu);
    struct ip_count *e = ip_of(id_tab_find(&h->ips, ip, hv));
    if (e && --e->n == 0) {
        id_tab_del(&h->ips, &e->hashv);
        free(e);
    }
    pthread_mutex_unlock(&h->ip_mu);
}

struct ip_count *hub_ip_entry(struct hub *h, const char *ip)
{
    if (!h->cfg.max_conns_per_ip && !h->cfg.max_rooms_per_ip) return NULL;
    uint32_t hv = id_hash(ip);
    pthread_mutex_lock(&h->ip_mu);
    struct ip_count *e = ip_of(id_tab_find(&h->ips, ip, hv));
    pthread_mutex_unlock(&h->ip_mu);
    return e;
}

bool hub_ip_room_take(struct hub *h, const char *ip)
{
    if (!h->cfg.max_rooms_per_ip) return true;
    uint32_t hv = id_hash(ip);
    pthread_mutex_lock(&h->ip_mu);
    struct ip_count *e = ip_of(id_tab_find(&h->ips, ip, hv));
    /* Every admitted connection's address has an entry (hub_admit refuses otherwise);
     * none would mean a caller without one: let it be. */
    bool ok = !e || e->rooms < h->cfg.max_rooms_per_ip;
    if (e && ok) e->rooms++;
    pthread_mutex_unlock(&h->ip_mu);
    return ok;
}

void hub_ip_room_give(struct hub *h, const char *ip, uint32_t n)
{
    if (!h->cfg.max_rooms_per_ip || !n) return;
    uint32_t hv = id_hash(ip);
    pthread_mutex_lock(&h->ip_mu);
    struct ip_count *e = ip_of(id_tab_find(&h->ips, ip, hv));
    if (e) e->rooms = e->rooms > n ? e->rooms - n : 0;
    pthread_mutex_unlock(&h->ip_mu);
}

size_t hub_connection_count(struct hub *h)
{
    return atomic_load(&h->conns);
}

/* Read by every entry point that would ack a message; written once. Sequentially
 * consistent: a worker that has seen the shutdown order (a task posted after the
 * store) refuses every message it parses after it (server.c relies on that). */
void hub_begin_shutdown(struct hub *h)
{
    atomic_store(&h->closing, true);
}

bool hub_closing(const struct hub *h)
{
    return atomic_load(&h->closing);
}

uint32_t hub_query_cost(size_t limit)
{
    return (uint32_t)((limit + HUB_PAGE_DEFAULT - 1) / HUB_PAGE_DEFAULT);
}

static bool bucket_take_n(struct rate_bucket *b, const struct rate_limit *l, uint32_t n,
                          uint64_t now_ms)
{
    uint32_t size = l->burst ? l->burst : l->rate;
    if (n > size) n = size; /* a page the bucket can never hold costs a full bucket */
    for (uint32_t i = 0; i < n; i++)
        if (!rate_bucket_take(b, l, now_ms)) return false;
    return true;
}

bool hub_client_query_take(struct client *c, uint32_t cost)
{
    struct hub *h = client_sh(c)->hub;
    uint64_t now = loop_now(client_sh(c)->loop);
    /* The connection's bucket lives in its cold part, set up full at the first
     * listing: the same as full at the open, since a bucket only fills up to full. */
    struct client_cold *k = client_cold(c);
    if (!k) return false;
    if (!k->qrl_set) {
        rate_bucket_init(&k->qrl, &h->cfg.query_rate, now);
        k->qrl_set = true;
    }
    char ip[CLIENT_IP_LEN];
    return bucket_take_n(&k->qrl, &h->cfg.query_rate, cost, now) &&
           hub_query_take(h, client_ip(c, ip), cost, now);
}

bool hub_query_take(struct hub *h, const char *ip, uint32_t cost, uint64_t now_ms)
{
    if (!h->cfg.query_rate.rate || !h->q_slots) return true;
    uint64_t x = h->q_seed ^ UINT64_C(0xcbf29ce484222325); /* FNV-1a, keyed */
    for (const char *p = ip; *p; p++)
        x = (x ^ (unsigned char)*p) * UINT64_C(0x100000001b3);
    x ^= x >> 29;
    pthread_mutex_lock(&h->q_mu);
    bool ok = bucket_take_n(&h->q_slots[x % HUB_QUERY_SLOTS], &h->cfg.query_rate, cost, now_ms);
    pthread_mutex_unlock(&h->q_mu);
    return ok;
}

int hub_limits_init(struct hub *h)
{
    pthread_mutex_init(&h->q_mu, NULL);
    h->q_seed = trace_random64();
    h->q_slots = calloc(HUB_QUERY_SLOTS, sizeof *h->q_slots);
    if (!h->q_slots) return -1;
    for (size_t i = 0; i < HUB_QUERY_SLOTS; i++)
        rate_bucket_init(&h->q_slots[i], &h->cfg.query_rate, 0);
    return 0;
}

void hub_limits_destroy(struct hub *h)
{
    free(h->q_slots);
    pthread_mutex_destroy(&h->q_mu);
}
