/* Fuzzes the envelope parser and the raw-payload scanner: whatever the input, parsing
 * must not crash or leak; when it succeeds, the raw payload span found by the scanner
 * must parse to the same JSON as jansson's payload, and a frame built from it must be
 * valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope env;
    const char *detail;
    const char *v;
    size_t n;
    (void)proto_find_member((const char *)data, size, "payload", &v, &n);
    enum proto_err e = envelope_parse((const char *)data, size, &env, &detail);
    if (e == PE_NONE) {
        if (env.out.raw) {
            json_t *raw = json_loadb(env.out.raw, env.out.raw_len, 0, NULL);
            if (!raw || !json_equal(raw, env.payload)) abort();
            json_decref(raw);
        }
        struct wh_msg *m = proto_frame(env.type_str, &env.out, "u", "r", 1, env.id);
        if (m) {
            size_t hl = (m->data[1] & 0x7f) == 126 ? 4 : (m->data[1] & 0x7f) == 127 ? 10 : 2;
            json_t *j = json_loadb((const char *)m->data + hl, m->len - hl, 0, NULL);
            if (!j) abort();
            json_decref(j);
            msg_unref(m);
        }
    }
    envelope_free(&env);
    return 0;
}
