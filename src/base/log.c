/* Leveled logging to stderr and a terminal progress bar with rate and ETA. */
#include "vlm4rec/base.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_level = -1;

void v4r_log_set_level(int level) { log_level = level; }

int v4r_log_level(void)
{
    if (log_level < 0) {
        const char *env = getenv("VLM4REC_LOG");
        log_level = V4R_LOG_INFO;
        if (env && !strcmp(env, "quiet"))
            log_level = V4R_LOG_QUIET;
        else if (env && !strcmp(env, "warn"))
            log_level = V4R_LOG_WARN;
        else if (env && !strcmp(env, "debug"))
            log_level = V4R_LOG_DEBUG;
    }
    return log_level;
}

static void vlog(int level, const char *tag, const char *fmt, va_list ap)
{
    if (v4r_log_level() < level)
        return;
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "vlm4rec: %s%s\n", tag, line);
}

#define DEFINE_LOG(name, level, tag)        \
    void name(const char *fmt, ...)         \
    {                                       \
        va_list ap;                         \
        va_start(ap, fmt);                  \
        vlog(level, tag, fmt, ap);          \
        va_end(ap);                         \
    }
DEFINE_LOG(v4r_warn, V4R_LOG_WARN, "warning: ")
DEFINE_LOG(v4r_info, V4R_LOG_INFO, "")
DEFINE_LOG(v4r_debug, V4R_LOG_DEBUG, "debug: ")

double v4r_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void draw(v4r_progress *p, int final)
{
    double elapsed = v4r_now() - p->start;
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    double frac = p->total ? (double)p->done / (double)p->total : 1;
    int width = 24, fill = (int)(frac * width);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '=' : ' ';
    bar[width] = 0;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : 0;
    fprintf(stderr, "\r%s [%s] %3d%% %llu/%llu %.0f/s ETA %d:%02d%s", p->label, bar, (int)(frac * 100),
            (unsigned long long)p->done, (unsigned long long)p->total, rate, (int)eta / 60, (int)eta % 60,
            final ? "\n" : "");
    fflush(stderr);
}

void v4r_progress_start(v4r_progress *p, const char *label, uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->start = p->last_draw = v4r_now();
    p->enabled = isatty(STDERR_FILENO) && v4r_log_level() >= V4R_LOG_INFO;
}

void v4r_progress_add(v4r_progress *p, uint64_t n)
{
    uint64_t done = __atomic_add_fetch(&p->done, n, __ATOMIC_RELAXED);
    (void)done;
    if (!p->enabled)
        return;
#pragma omp critical(v4r_progress)
    {
        double t = v4r_now();
        if (t - p->last_draw > 0.2) {
            p->last_draw = t;
            draw(p, 0);
        }
    }
}

void v4r_progress_end(v4r_progress *p)
{
    if (p->enabled)
        draw(p, 1);
}
