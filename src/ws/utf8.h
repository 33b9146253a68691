/* Incremental UTF-8 validation (RFC 3629): the state carries across calls, so a text
 * message split over frames and reads at any byte is validated as it arrives and
 * rejected at the first byte that cannot begin or continue a valid sequence (overlong
 * forms, surrogates U+D800..U+DFFF, code points above U+10FFFF, stray continuation
 * bytes, 0xC0/0xC1/0xF5..0xFF). The ASCII fast path checks a machine word at a time.
 * No allocation, no global state. */
#ifndef WSHUB_WS_UTF8_H
#define WSHUB_WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define WS_UTF8_ACCEPT 0u /* state between complete code points; the initial state */
#define WS_UTF8_REJECT 1u /* sticky: once rejected, every later call rejects */

/* Feeds p[0..len) and returns the new state: WS_UTF8_REJECT as soon as the input is
 * invalid, WS_UTF8_ACCEPT when it ends on a code point boundary, another value when
 * it ends inside a sequence that may still complete. */
uint32_t ws_utf8_feed(uint32_t state, const uint8_t *p, size_t len);

/* Convenience: 1 when the whole buffer is valid, complete UTF-8, else 0. */
int ws_utf8_valid(const uint8_t *p, size_t len);

#endif
