/* libFuzzer target for the trace context parsers, which read untrusted input: the
 * traceparent header of an upgrade request and the traceparent / trace_id / span_id
 * fields of a client's message, plus the OTEL_RESOURCE_ATTRIBUTES list parser. The
 * input is copied to an exact-size heap block so that ASan sees any read past its end.
 * Invariants: an accepted traceparent has non-zero ids and formats (version 00) to 55
 * characters that parse back to the same ids and sampled flag; a rejected one leaves
 * no valid context; the guide's id pair accepts exactly 32 + 16 hex digits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/otlp.h"
#include "telemetry/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static bool zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (!s) return 0;
    memcpy(s, data, size);

    struct trace_ctx c;
    if (traceparent_parse(s, size, &c) == 0) {
        CHECK(c.valid && c.remote);
        CHECK(!zero(c.trace_id, TRACE_ID_LEN) && !zero(c.span_id, SPAN_ID_LEN));
        char out[TRACEPARENT_LEN + 1];
        traceparent_format(&c, out);
        CHECK(strlen(out) == TRACEPARENT_LEN);
        struct trace_ctx back;
        CHECK(traceparent_parse(out, TRACEPARENT_LEN, &back) == 0);
        CHECK(!memcmp(back.trace_id, c.trace_id, TRACE_ID_LEN));
        CHECK(!memcmp(back.span_id, c.span_id, SPAN_ID_LEN));
        CHECK((back.flags & 1) == (c.flags & 1));
    } else {
        CHECK(!c.valid);
    }

    /* The guide's pair: the first 32 bytes as trace_id, the rest as span_id. */
    size_t tn = size < 32 ? size : 32;
    if (trace_ids_parse(s, tn, s + tn, size - tn, &c) == 0) {
        CHECK(size == 48 && c.valid && (c.flags & TRACE_FLAG_SAMPLED));
    } else {
        CHECK(!c.valid);
    }

    /* Resource attributes: a NUL-terminated copy. */
    char *z = malloc(size + 1);
    if (z) {
        memcpy(z, data, size);
        z[size] = 0;
        struct otlp_resource r;
        char err[160];
        otlp_resource_init(&r, NULL, z, err, sizeof err);
        CHECK(r.service_name[0] != 0);
        otlp_resource_free(&r);
        free(z);
    }
    free(s);
    return 0;
}
