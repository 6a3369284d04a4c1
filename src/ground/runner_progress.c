/* ground: the grounding run's progress line (done / failed / in flight, rate, ETA, endpoint health)
 * redrawn on a terminal, logged once a minute otherwise. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runner_internal.h"

static void endpoint_health(const v4r_run *r, double now, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t k = 0; k < r->n_ep && used + 40 < cap; k++) {
        const v4r_ep_state *e = &r->ep[k];
        int n;
        if (now < e->rest_until)
            n = snprintf(out + used, cap - used, " | ep%zu resting %.0fs", k + 1, e->rest_until - now);
        else if (e->probing)
            n = snprintf(out + used, cap - used, " | ep%zu probing", k + 1);
        else
            n = snprintf(out + used, cap - used, " | ep%zu %d/%d", k + 1, e->in_flight, e->concurrency);
        used += n > 0 ? (size_t)n : 0;
    }
}

static void format_eta(double s, char *out, size_t cap)
{
    if (s < 0 || s > 1e8)
        snprintf(out, cap, "?");
    else if (s >= 3600)
        snprintf(out, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60)
        snprintf(out, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(out, cap, "%ds", (int)s);
}

void v4r_run_progress(v4r_run *r, int final)
{
    const v4r_ground_summary *s = r->sum;
    double now = v4r_now();
    int tty = r->o->progress && isatty(STDERR_FILENO) && v4r_log_level() >= V4R_LOG_INFO;
    if (!final && now - r->last_draw < (tty ? 0.25 : 60.0))
        return;
    if (!final && !tty && now - r->start < 60.0)
        return;
    r->last_draw = now;
    size_t in_flight = 0;
    for (size_t k = 0; k < r->n_ep; k++)
        in_flight += (size_t)r->ep[k].in_flight;
    size_t finished = s->done + s->failed;
    size_t skipped = s->skipped_done + s->skipped_failed + s->skipped_busy;
    double elapsed = now - r->start;
    double rate = elapsed > 0 ? finished / elapsed : 0;
    size_t left = s->planned > finished + skipped ? s->planned - finished - skipped : 0;
    char eta[32], health[256];
    format_eta(rate > 0 ? left / rate : -1, eta, sizeof eta);
    endpoint_health(r, now, health, sizeof health);
    char line[512];
    snprintf(line, sizeof line, "ground %zu/%zu: done %zu, failed %zu, skipped %zu, in flight %zu | %.2f items/s, ETA %s%s",
             finished + skipped, s->planned, s->done, s->failed, skipped, in_flight, rate, final ? "0s" : eta, health);
    if (tty && !final)
        fprintf(stderr, "\r%s\033[K", line);
    else if (tty)
        fprintf(stderr, "\r\033[K");
    else if (!final)
        v4r_info("%s", line);
    fflush(stderr);
}
