/* The JSON envelope: parsing (every error code), the raw-payload scanner, and the
 * frames built for sending (valid JSON, fields present, payload relayed as written). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "proto/envelope.h"
#include "ws/frame.h"

static enum proto_err parse(const char *s, struct envelope *env)
{
    const char *detail = NULL;
    enum proto_err e = envelope_parse(s, strlen(s), env, &detail);
    if (e) assert_non_null(detail);
    return e;
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        enum proto_err want;
    } cases[] = {
        {"", PE_BAD_JSON},
        {"{", PE_BAD_JSON},
        {"nope", PE_BAD_JSON},
        {"[1,2]", PE_BAD_ENVELOPE},
        {"\"str\"", PE_BAD_ENVELOPE},
        {"{}", PE_BAD_ENVELOPE},
        {"{\"type\":5}", PE_BAD_ENVELOPE},
        {"{\"type\":\"\"}", PE_BAD_ENVELOPE},
        {"{\"type\":\"join_room\",\"payload\":[]}", PE_BAD_ENVELOPE},
        {"{\"type\":\"join_room\",\"payload\":\"x\"}", PE_BAD_ENVELOPE},
        {"{\"type\":\"join_room\",\"id\":{}}", PE_BAD_ENVELOPE},
        {"{\"type\":\"join_room\",\"id\":1.5}", PE_BAD_ENVELOPE},
        {"{\"type\":\"a\",\"type\":\"b\"}", PE_BAD_JSON}, /* duplicate keys refused */
        {"{\"type\":\"dance\"}", PE_UNKNOWN_TYPE},
        {"{\"type\":\"join_room\"}", PE_NONE},
        {"{\"type\":\"join_room\",\"payload\":null,\"id\":null}", PE_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct envelope env;
        enum proto_err e = parse(cases[i].in, &env);
        if (e != cases[i].want) fail_msg("case %zu (%s): got %d", i, cases[i].in, (int)e);
        envelope_free(&env);
    }
}

static void test_id_kept_on_error(void **state)
{
    (void)state;
    struct envelope env;
    assert_int_equal(parse("{\"type\":\"dance\",\"id\":\"abc\"}", &env), PE_UNKNOWN_TYPE);
    assert_non_null(env.id);
    assert_string_equal(json_string_value(env.id), "abc");
    envelope_free(&env);
    char big[200];
    snprintf(big, sizeof big, "{\"type\":\"ping\",\"id\":\"%065d\"}", 0);
    assert_int_equal(parse(big, &env), PE_BAD_ENVELOPE); /* id over 64 bytes */
    envelope_free(&env);
}

static void test_names(void **state)
{
    (void)state;
    struct envelope env;
    const char *room = NULL;
    assert_int_equal(parse("{\"type\":\"join_room\",\"payload\":{\"room_id\":\"r1\"}}", &env), 0);
    assert_int_equal(envelope_name(&env, "room_id", &room), PE_NONE);
    assert_string_equal(room, "r1");
    assert_int_equal(envelope_name(&env, "user_id", &room), PE_MISSING_FIELD);
    envelope_free(&env);
    /* the guide's crash: room_id of the wrong type */
    assert_int_equal(parse("{\"type\":\"join_room\",\"payload\":{\"room_id\":123}}", &env), 0);
    assert_int_equal(envelope_name(&env, "room_id", &room), PE_BAD_FIELD);
    envelope_free(&env);
    assert_int_equal(parse("{\"type\":\"join_room\",\"payload\":{\"room_id\":\"\"}}", &env), 0);
    assert_int_equal(envelope_name(&env, "room_id", &room), PE_BAD_FIELD);
    envelope_free(&env);
    assert_int_equal(parse("{\"type\":\"join_room\",\"payload\":{\"room_id\":\"a\\u0001\"}}", &env),
                     0);
    assert_int_equal(envelope_name(&env, "room_id", &room), PE_BAD_FIELD);
    envelope_free(&env);
    char big[300];
    snprintf(big, sizeof big, "{\"type\":\"join_room\",\"payload\":{\"room_id\":\"%0129d\"}}", 0);
    assert_int_equal(parse(big, &env), 0);
    assert_int_equal(envelope_name(&env, "room_id", &room), PE_BAD_FIELD);
    envelope_free(&env);
}

/* The shared rules that /ws and POST /api/publish both apply. */
static void test_shared_name_and_type_rules(void **state)
{
    (void)state;
    const char *detail = NULL;
    json_t *v = json_string("lobby");
    assert_int_equal(proto_name_check(v), PE_NONE);
    assert_int_equal(proto_type_check(v, &detail), PE_NONE);
    json_decref(v);
    assert_int_equal(proto_name_check(NULL), PE_MISSING_FIELD);
    v = json_null();
    assert_int_equal(proto_name_check(v), PE_MISSING_FIELD);
    assert_int_equal(proto_type_check(v, &detail), PE_BAD_ENVELOPE);
    assert_non_null(detail);
    json_decref(v);
    static const char *const bad[] = {"a\nb", "\t", "x\x7f", "\x1b[0m", "", NULL};
    for (const char *const *b = bad; *b; b++) {
        v = json_string(*b);
        assert_int_equal(proto_name_check(v), PE_BAD_FIELD);
        assert_int_equal(proto_type_check(v, &detail), PE_BAD_ENVELOPE);
        json_decref(v);
    }
    char longs[PROTO_MAX_NAME + 2];
    memset(longs, 'x', sizeof longs - 1);
    longs[PROTO_MAX_NAME] = 0;
    v = json_string(longs);
    assert_int_equal(proto_name_check(v), PE_NONE);
    assert_int_equal(proto_type_check(v, &detail), PE_BAD_ENVELOPE); /* over 64 */
    json_decref(v);
    longs[PROTO_MAX_TYPE] = 0;
    v = json_string(longs);
    assert_int_equal(proto_type_check(v, &detail), PE_NONE);
    json_decref(v);
    memset(longs, 'x', sizeof longs - 1); /* 129 bytes */
    longs[PROTO_MAX_NAME + 1] = 0;
    v = json_string(longs);
    assert_int_equal(proto_name_check(v), PE_BAD_FIELD);
    json_decref(v);
    v = json_integer(5);
    assert_int_equal(proto_name_check(v), PE_BAD_FIELD);
    assert_int_equal(proto_type_check(v, &detail), PE_BAD_ENVELOPE);
    json_decref(v);
    /* On /ws a type with a control character is bad_envelope, as on the API. */
    struct envelope env;
    static const char msg[] = "{\"type\":\"join\\nroom\",\"payload\":{}}";
    assert_int_equal(envelope_parse(msg, sizeof msg - 1, &env, &detail), PE_BAD_ENVELOPE);
    envelope_free(&env);
}

static void test_find_member(void **state)
{
    (void)state;
    const char *v;
    size_t n;
    const char *t = " { \"a\" : [1, {\"payload\": 2}], \"s\":\"x\\\"}\", \"payload\" "
                    ":{\"k\":[3.140, \"}\"]} } ";
    assert_int_equal(proto_find_member(t, strlen(t), "payload", &v, &n), 1);
    assert_int_equal(n, strlen("{\"k\":[3.140, \"}\"]}"));
    assert_memory_equal(v, "{\"k\":[3.140, \"}\"]}", n);
    assert_int_equal(proto_find_member(t, strlen(t), "zzz", &v, &n), 0);
    assert_int_equal(proto_find_member(t, strlen(t), "a", &v, &n), 1);
    assert_memory_equal(v, "[1, {\"payload\": 2}]", n);
    const char *esc = "{\"pay\\u006coad\":{}}";
    assert_int_equal(proto_find_member(esc, strlen(esc), "payload", &v, &n), -1);
    assert_int_equal(proto_find_member("[]", 2, "payload", &v, &n), 0);
    assert_int_equal(proto_find_member("", 0, "payload", &v, &n), 0);
    /* truncated input never reads past the end */
    for (size_t cut = 0; cut < strlen(t); cut++)
        (void)proto_find_member(t, cut, "payload", &v, &n);
}

/* Strips the ws header of a server text frame and parses the JSON inside. */
static json_t *frame_json(struct wh_msg *m)
{
    assert_true(m->len >= 2);
    assert_int_equal(m->data[0], 0x81);
    size_t hl = 2, len = m->data[1] & 0x7f;
    if (len == 126) {
        len = (size_t)m->data[2] << 8 | m->data[3];
        hl = 4;
    }
    assert_int_equal(hl + len, m->len);
    json_error_t err;
    json_t *j = json_loadb((const char *)m->data + hl, len, 0, &err);
    assert_non_null(j);
    return j;
}

static void test_frames(void **state)
{
    (void)state;
    struct envelope env;
    const char *in = "{\"type\":\"send_to_room\",\"payload\":{\"room_id\":\"r\",\"p\":3.14159},"
                     "\"id\":9}";
    assert_int_equal(parse(in, &env), 0);
    assert_non_null(env.out.raw); /* relayed as written */
    struct wh_msg *m = proto_frame(env.type_str, &env.out, "al\"ice", "r", 42, env.id);
    assert_non_null(m);
    assert_non_null(memmem(m->data, m->len, "\"p\":3.14159", 11));
    json_t *j = frame_json(m);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "send_to_room");
    assert_string_equal(json_string_value(json_object_get(j, "from")), "al\"ice");
    assert_string_equal(json_string_value(json_object_get(j, "room_id")), "r");
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 42);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 9);
    assert_true(json_is_string(json_object_get(j, "timestamp")));
    json_decref(j);
    msg_unref(m);
    envelope_free(&env);

    m = proto_error_frame(PE_NOT_MEMBER, "join first", NULL);
    j = frame_json(m);
    json_t *p = json_object_get(j, "payload");
    assert_string_equal(json_string_value(json_object_get(p, "code")), "not_member");
    json_decref(j);
    msg_unref(m);

    m = proto_frame("x", NULL, NULL, NULL, 0, NULL); /* no payload: {} */
    j = frame_json(m);
    assert_true(json_is_object(json_object_get(j, "payload")));
    assert_null(json_object_get(j, "seq"));
    json_decref(j);
    msg_unref(m);
}

static int teardown(void **state)
{
    (void)state;
    proto_thread_cleanup();
    msg_thread_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_id_kept_on_error),
        cmocka_unit_test(test_names),        cmocka_unit_test(test_find_member),
        cmocka_unit_test(test_frames),       cmocka_unit_test(test_shared_name_and_type_rules),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
