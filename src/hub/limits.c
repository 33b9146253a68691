/* Connection admission: a total and a per-address count of /ws connections, checked
 * before the upgrade so that a refused client gets an HTTP status (503 / 429) rather
 * than a socket that closes. The total is one atomic; the per-address table takes a
 * mutex, once per upgrade and once per close, never per message. */
#include <stdlib.h>
#include <string.h>

#include "hub/internal.h"

int hub_admit(struct hub *h, const char *ip)
{
    unsigned now = atomic_fetch_add(&h->conns, 1) + 1;
    if (h->cfg.max_conns && now > h->cfg.max_conns) {
        atomic_fetch_sub(&h->conns, 1);
        return 503;
    }
    if (!h->cfg.max_conns_per_ip) return 0;
    pthread_mutex_lock(&h->ip_mu);
    struct ip_count *e;
    HASH_FIND_STR(h->ips, ip, e);
    int rc = 0;
    if (e && e->n >= h->cfg.max_conns_per_ip) {
        rc = 429;
    } else if (e) {
        e->n++;
    } else if ((e = calloc(1, sizeof *e))) {
        snprintf(e->ip, sizeof e->ip, "%s", ip);
        e->n = 1;
        HASH_ADD_STR(h->ips, ip, e);
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
    if (!h->cfg.max_conns_per_ip) return;
    pthread_mutex_lock(&h->ip_mu);
    struct ip_count *e;
    HASH_FIND_STR(h->ips, ip, e);
    if (e && --e->n == 0) {
        HASH_DEL(h->ips, e);
        free(e);
    }
    pthread_mutex_unlock(&h->ip_mu);
}

size_t hub_connection_count(struct hub *h)
{
    return atomic_load(&h->conns);
}
