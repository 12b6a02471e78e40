#include "log.h"

#include "err.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static ao_log_level_t threshold = AO_LOG_INFO;
static int as_json;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int ao_log_configure(const char *level, const char *format)
{
    if (level && *level) {
        if (!strcmp(level, "debug")) threshold = AO_LOG_DEBUG;
        else if (!strcmp(level, "info")) threshold = AO_LOG_INFO;
        else if (!strcmp(level, "warn")) threshold = AO_LOG_WARN;
        else if (!strcmp(level, "error")) threshold = AO_LOG_ERROR;
        else return AO_EINVAL;
    }
    if (format && *format) {
        if (!strcmp(format, "text")) as_json = 0;
        else if (!strcmp(format, "json")) as_json = 1;
        else return AO_EINVAL;
    }
    return 0;
}

int ao_log_enabled(ao_log_level_t level)
{
    return level >= threshold;
}

/* Adds the message's trailing key=value pairs as JSON fields. Values run to
 * the next space; the text before the first pair is the message. */
static void add_pairs(json_t *obj, char *msg)
{
    char *p = msg;
    char *first_pair = NULL;
    while ((p = strchr(p, '='))) {
        char *k = p;
        while (k > msg && k[-1] != ' ') k--;
        if (k == p) {
            p++;
            continue;
        }
        char *v = p + 1;
        char *end = strchr(v, ' ');
        char key[64];
        size_t klen = (size_t)(p - k) < sizeof key - 1 ? (size_t)(p - k) : sizeof key - 1;
        memcpy(key, k, klen);
        key[klen] = '\0';
        json_object_set_new(obj, key, end ? json_stringn(v, (size_t)(end - v)) : json_string(v));
        if (!first_pair) first_pair = k;
        if (!end) break;
        p = end;
    }
    if (first_pair) {
        while (first_pair > msg && first_pair[-1] == ' ') first_pair--;
        *first_pair = '\0';
    }
}

void ao_log(ao_log_level_t level, const char *comp, const char *fmt, ...)
{
    if (!ao_log_enabled(level)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);

    pthread_mutex_lock(&log_lock);
    if (as_json) {
        json_t *obj = json_object();
        json_object_set_new(obj, "ts", json_string(when));
        json_object_set_new(obj, "level", json_string(level_names[level]));
        json_object_set_new(obj, "comp", json_string(comp));
        add_pairs(obj, msg);
        json_object_set_new(obj, "msg", json_string(msg));
        char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (line) {
            fprintf(stderr, "%s\n", line);
            free(line);
        }
        json_decref(obj);
    } else {
        fprintf(stderr, "%s %s %s %s\n", when, level_names[level], comp, msg);
    }
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}
