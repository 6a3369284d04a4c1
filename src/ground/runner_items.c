/* ground: preparing one item of a grounding run — its image read (or downloaded once into the image
 * cache), hashed, claimed in the semantic cache, checked and turned into a request — and recording
 * how it ended. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner_internal.h"

static int is_url(const char *s)
{
    return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

static v4r_job *job_new(v4r_run *r, int32_t item)
{
    v4r_job *j = v4r_calloc(1, sizeof *j);
    j->item = item;
    j->stage = JOB_WAIT;
    v4r_grow((void **)&r->jobs, &r->jobs_cap, r->n_jobs + 1, sizeof(v4r_job *));
    r->jobs[r->n_jobs++] = j;
    return j;
}

void v4r_job_free(v4r_job *j)
{
    if (!j)
        return;
    free(j->resp.data);
    free(j->body);
    free(j->last_error);
    free(j);
}

double v4r_run_backoff(v4r_run *r, int attempt)
{
    double d = r->o->backoff_s * pow(2.0, attempt > 1 ? attempt - 1 : 0);
    if (d > r->o->backoff_max_s)
        d = r->o->backoff_max_s;
    return d * (0.5 + 0.5 * v4r_rng_uniform(&r->rng)); /* jitter: between half and all of it */
}

static v4r_cache_key key_of(const v4r_run *r, int32_t item, const char *image_hash)
{
    v4r_cache_key k = {r->ds.item_id[item], image_hash, r->prompt_hash, r->o->model};
    return k;
}

int v4r_run_finish(v4r_run *r, v4r_job *j, const v4r_answer *a, const char *error, int permanent, v4r_err *err)
{
    v4r_cache_key k = key_of(r, j->item, j->image_hash);
    v4r_cache_result res = {0};
    res.attempts = j->attempts;
    res.latency_s = -1;
    res.prompt_tokens = res.completion_tokens = -1;
    if (a && a->kind == V4R_ANSWER_OK) {
        res.description = a->text;
        res.latency_s = v4r_now() - j->sent_at;
        res.prompt_tokens = a->prompt_tokens;
        res.completion_tokens = a->completion_tokens;
        if (j->stage == JOB_SEND)
            res.endpoint = r->o->endpoints[j->endpoint].url;
        r->sum->done++;
    } else {
        res.error = error;
        res.permanent = permanent;
        r->sum->failed++;
        v4r_debug("%s failed%s: %s", k.item, permanent ? " (permanent)" : "", error);
    }
    j->stage = JOB_DONE;
    return v4r_cache_finish(r->cache, &k, &res, err);
}

/* Claims (item, hash); counts what it finds instead when it cannot. Returns the claim outcome. */
static int claim(v4r_run *r, int32_t item, const char *hash, int *outcome, v4r_err *err)
{
    v4r_cache_key k = key_of(r, item, hash);
    int rc = v4r_cache_claim(r->cache, &k, r->o->retry_failed, outcome, err);
    if (rc)
        return rc;
    if (*outcome == V4R_CLAIM_DONE)
        r->sum->skipped_done++;
    else if (*outcome == V4R_CLAIM_FAILED)
        r->sum->skipped_failed++;
    else if (*outcome == V4R_CLAIM_BUSY)
        r->sum->skipped_busy++;
    return 0;
}

/* An item that fails before any request (no image, unreadable, bad download): claimed under the
 * image hash "" and recorded as failed. */
static int fail_unsent(v4r_run *r, v4r_job *j, const char *error, int permanent, v4r_err *err)
{
    int outcome;
    j->image_hash[0] = 0;
    int rc = claim(r, j->item, "", &outcome, err);
    if (rc || outcome != V4R_CLAIM_OK) {
        j->stage = JOB_DONE;
        return rc;
    }
    return v4r_run_finish(r, j, NULL, error, permanent, err);
}

/* Hashes and claims the image bytes, then checks them and builds the request. */
static int ready_bytes(v4r_run *r, v4r_job *j, const uint8_t *bytes, size_t n, const char *what, v4r_err *err)
{
    v4r_sha256_hex(bytes, n, j->image_hash);
    int outcome;
    int rc = claim(r, j->item, j->image_hash, &outcome, err);
    if (rc || outcome != V4R_CLAIM_OK) {
        j->stage = JOB_DONE;
        return rc;
    }
    v4r_upload up;
    v4r_err bad = {0};
    rc = v4r_upload_prepare(bytes, n, what, r->o->max_side, r->o->max_image_bytes, &up, &bad);
    if (rc == V4R_EINPUT)
        return v4r_run_finish(r, j, NULL, bad.msg, 1, err);
    if (rc) {
        *err = bad;
        return rc;
    }
    char *prompt = v4r_prompt_fill(r->o->prompt, r->ds.item_title[j->item]);
    j->body = v4r_request_body(r->o, prompt, up.data_url);
    free(prompt);
    v4r_upload_free(&up);
    j->stage = JOB_WAIT;
    j->fetching = 0;
    j->not_before = 0;
    return 0;
}

static char *url_cache_path(const v4r_run *r, const char *url)
{
    char hex[65];
    v4r_sha256_hex(url, strlen(url), hex);
    char name[80];
    snprintf(name, sizeof name, "%s.img", hex);
    return v4r_path_join(r->image_cache_dir, name);
}

static int ready_file(v4r_run *r, v4r_job *j, const char *path, const char *what, v4r_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && r->o->max_image_bytes && (size_t)st.st_size > r->o->max_image_bytes) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s: image is %lld bytes, over the limit of %zu", what, (long long)st.st_size,
                 r->o->max_image_bytes);
        return fail_unsent(r, j, msg, 1, err);
    }
    char *data = NULL;
    size_t n = 0;
    v4r_err io = {0};
    if (v4r_read_file(path, &data, &n, &io)) {
        char msg[1200];
        snprintf(msg, sizeof msg, "image file not readable: %s", io.msg);
        return fail_unsent(r, j, msg, 1, err);
    }
    int rc = ready_bytes(r, j, (const uint8_t *)data, n, what, err);
    free(data);
    return rc;
}

int v4r_run_prepare_next(v4r_run *r, v4r_err *err)
{
    int32_t item = r->plan.item[r->next++];
    const char *image = r->ds.item_image[item];
    v4r_job *j = job_new(r, item);
    if (!*image)
        return fail_unsent(r, j, "the item has no image", 1, err);
    if (is_url(image)) {
        char *cached = url_cache_path(r, image);
        int rc = 0;
        if (access(cached, F_OK) == 0) {
            rc = ready_file(r, j, cached, image, err);
        } else {
            j->fetching = 1; /* the loop downloads it when a transfer slot is free */
            j->not_before = 0;
        }
        free(cached);
        return rc;
    }
    char *path = image[0] == '/' ? v4r_strdup(image) : v4r_path_join(r->ds.dir, image);
    int rc = ready_file(r, j, path, path, err);
    free(path);
    return rc;
}

static int store_download(v4r_run *r, const char *url, const v4r_buf *b, v4r_err *err)
{
    int rc = v4r_mkdir_p(r->image_cache_dir, err);
    if (rc)
        return rc;
    char *path = url_cache_path(r, url);
    v4r_outfile out;
    rc = v4r_out_open(&out, path, err);
    if (!rc) {
        if (b->len && fwrite(b->data, 1, b->len, out.fp) != b->len) {
            v4r_out_abort(&out);
            rc = v4r_fail(err, V4R_EIO, "%s: write failed", path);
        } else {
            rc = v4r_out_commit(&out, err);
        }
    }
    free(path);
    return rc;
}

int v4r_run_fetch_done(v4r_run *r, v4r_job *j, CURLcode cc, long status, v4r_err *err)
{
    const char *url = r->ds.item_image[j->item];
    char msg[1200];
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        int rc = store_download(r, url, &j->resp, err);
        if (rc)
            return rc;
        j->attempts = 0; /* the cache counts requests to the model, not downloads */
        rc = ready_bytes(r, j, (const uint8_t *)j->resp.data, j->resp.len, url, err);
        free(j->resp.data);
        memset(&j->resp, 0, sizeof j->resp);
        return rc;
    }
    if (j->resp.overflow || cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(msg, sizeof msg, "%s: image download over the limit of %zu bytes", url, r->o->max_image_bytes);
        return fail_unsent(r, j, msg, 1, err);
    }
    int transient = cc != CURLE_OK || status == 408 || status == 429 || status >= 500;
    if (cc != CURLE_OK)
        snprintf(msg, sizeof msg, "downloading %s: %s", url, j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc));
    else
        snprintf(msg, sizeof msg, "downloading %s: HTTP %ld", url, status);
    if (!transient)
        return fail_unsent(r, j, msg, 1, err);
    if (j->attempts > r->o->retries) {
        char gave[1300];
        snprintf(gave, sizeof gave, "gave up after %d attempts: %s", j->attempts, msg);
        return fail_unsent(r, j, gave, 0, err);
    }
    free(j->resp.data);
    memset(&j->resp, 0, sizeof j->resp);
    j->stage = JOB_WAIT;
    j->not_before = v4r_now() + v4r_run_backoff(r, j->attempts);
    r->sum->retries++;
    return 0;
}
