/* Structured logging core: one line per event, logfmt (`ts=... level=... msg=...
 * key=value`) or JSON lines, to stderr. Lines are formatted into a stack buffer and
 * written with one write(2), so lines from several threads never interleave. The
 * level check is an inline comparison, so a disabled debug line costs a branch.
 *
 * Use: log_info("listening", "addr=%s port=%d", host, port). The second argument is
 * a printf format producing space-separated key=value pairs (logfmt); in JSON mode
 * they are converted to JSON members (values that need quoting in logfmt should be
 * passed through log_quote). */
#ifndef WSHUB_BASE_LOG_H
#define WSHUB_BASE_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

extern int log_min_level;

void log_configure(int min_level, int json);

/* Parses "debug|info|warn|error|off"; returns the level or -1. */
int log_level_parse(const char *s);

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void log_write(int level, const char *msg, const char *kv_fmt, ...);

#define log_debug(...) ((LOG_DEBUG >= log_min_level) ? log_write(LOG_DEBUG, __VA_ARGS__) : (void)0)
#define log_info(...)  ((LOG_INFO >= log_min_level) ? log_write(LOG_INFO, __VA_ARGS__) : (void)0)
#define log_warn(...)  ((LOG_WARN >= log_min_level) ? log_write(LOG_WARN, __VA_ARGS__) : (void)0)
#define log_error(...) ((LOG_ERROR >= log_min_level) ? log_write(LOG_ERROR, __VA_ARGS__) : (void)0)

/* Writes s as a logfmt-safe value into out (quoted and escaped when it holds spaces,
 * quotes, '=' or control bytes; truncated to fit). Returns out. */
const char *log_quote(char *out, size_t cap, const char *s, size_t len);

#endif
