/* The scratch block for threads that own no worker (main thread, unit tests). */
#include "base/stats.h"

static struct wh_stats stats_scratch;
_Thread_local struct wh_stats *stats_cur = &stats_scratch;
