/* pipeline: running the plan — per step a settings hash and the outputs' times decide whether it
 * runs; steps are child processes of the vlm4rec executable; the stand-in server runs in-process
 * while grounding needs it; a grounding endpoint is checked before anything runs. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipeline_internal.h"
#include "vlm4rec/ground.h"

static const char *const stage_names[V4R_NSTAGES] = {"dataset", "ground", "encode", "vision",
                                                     "fusion",  "eval",   "report"};

const char *v4r_stage_name(int stage) { return stage >= 0 && stage < V4R_NSTAGES ? stage_names[stage] : "?"; }

int v4r_stage_parse(const char *name)
{
    for (int i = 0; i < V4R_NSTAGES; i++)
        if (!strcmp(name, stage_names[i]))
            return i;
    return -1;
}

int pl_spawn(char *const *argv, const char *stdout_path, int quiet)
{
    char *tmp = stdout_path ? v4r_sprintf("%s.tmp.%d", stdout_path, (int)getpid()) : NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = tmp ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644) : quiet ? open("/dev/null", O_WRONLY) : -1;
        if (fd >= 0)
            dup2(fd, 1);
        if (quiet)
            dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0, rc = -1;
    if (pid > 0 && waitpid(pid, &status, 0) == pid)
        rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (tmp && rc == 0 && rename(tmp, stdout_path) != 0)
        rc = -1;
    if (tmp && rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* The settings hash: every argument but the executable's path, and the stdout file. */
static void step_hash(const pl_step *s, char hex[65])
{
    char *text = v4r_strdup(s->stdout_path ? s->stdout_path : "");
    for (size_t i = 1; i < s->argc; i++) {
        char *n = v4r_sprintf("%s\n%s", text, s->argv[i]);
        free(text);
        text = n;
    }
    v4r_sha256_hex(text, strlen(text), hex);
    free(text);
}

static int newer(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec != b->tv_sec ? a->tv_sec > b->tv_sec : a->tv_nsec > b->tv_nsec;
}

static char *state_file(const pl_plan *p, const pl_step *s, const char *ext)
{
    char *name = v4r_sprintf("%s.%s", s->id, ext), *path = v4r_path_join(p->state_dir, name);
    free(name);
    return path;
}

/* 1 when the stored hash matches and every output is at least as new as every input. */
static int up_to_date(const pl_plan *p, const pl_step *s, const char *hash)
{
    char *hf = state_file(p, s, "hash"), *stored = NULL;
    size_t len = 0;
    int ok = v4r_read_file(hf, &stored, &len, NULL) == 0 && len >= 64 && !strncmp(stored, hash, 64);
    free(hf);
    free(stored);
    struct timespec oldest_out = {0, 0}, newest_in = {0, 0};
    struct stat st;
    for (size_t i = 0; i < s->n_out && ok; i++) {
        ok = stat(s->out[i], &st) == 0;
        if (ok && (i == 0 || newer(&oldest_out, &st.st_mtim)))
            oldest_out = st.st_mtim;
    }
    for (size_t i = 0; i < s->n_in && ok; i++) {
        ok = stat(s->in[i], &st) == 0;
        if (ok && newer(&st.st_mtim, &newest_in))
            newest_in = st.st_mtim;
    }
    return ok && !newer(&newest_in, &oldest_out);
}

static int write_state(const pl_plan *p, const pl_step *s, const char *hash, double seconds, v4r_err *err)
{
    char *hf = state_file(p, s, "hash"), *tf = state_file(p, s, "seconds");
    v4r_outfile out;
    int rc = v4r_out_open(&out, tf, err);
    if (!rc) {
        fprintf(out.fp, "%.3f\n", seconds);
        rc = v4r_out_commit(&out, err);
    }
    if (!rc)
        rc = v4r_out_open(&out, hf, err);
    if (!rc) {
        fprintf(out.fp, "%s\n", hash);
        rc = v4r_out_commit(&out, err);
    }
    free(hf);
    free(tf);
    return rc;
}

/* Runs one step's command (the stand-in around it when grounding needs one). */
static int run_command(const pl_plan *p, const pl_step *s, v4r_err *err)
{
    v4r_standin *si = NULL;
    char **argv = v4r_calloc(s->argc + 1, sizeof *argv);
    char *ground_dir = v4r_path_join(p->run_dir, "ground"), *log = v4r_path_join(ground_dir, "standin.log");
    int rc = V4R_OK;
    if (s->standin) { /* its log (a line per request, appended) shows what each run asked */
        v4r_standin_opts so;
        v4r_standin_defaults(&so);
        so.port = 0;
        so.log_path = log;
        rc = v4r_mkdir_p(ground_dir, err);
        if (!rc)
            rc = v4r_standin_start(&so, &si, err);
    }
    for (size_t i = 0; i < s->argc && !rc; i++)
        argv[i] = strstr(s->argv[i], "@STANDIN@")
                      ? v4r_sprintf("--endpoint=http://127.0.0.1:%d/v1", v4r_standin_port(si))
                      : v4r_strdup(s->argv[i]);
    for (size_t i = 0; i < s->n_out && !rc; i++) {
        const char *slash = strrchr(s->out[i], '/');
        char *dir = slash ? v4r_strndup(s->out[i], (size_t)(slash - s->out[i])) : v4r_strdup(".");
        rc = v4r_mkdir_p(dir, err);
        free(dir);
    }
    int code = rc ? 0 : pl_spawn(argv, s->stdout_path, 0);
    if (!rc && code != 0)
        rc = v4r_fail(err, code == 3 ? V4R_EINPUT : V4R_EIO, "step %s failed (exit %d): %s %s ...", s->id, code,
                      argv[1], s->argc > 2 ? argv[2] : "");
    if (si) {
        printf("        the stand-in server answered %llu requests (each one a line in %s)\n",
               (unsigned long long)v4r_standin_requests(si), log);
        v4r_standin_stop(si);
    }
    for (size_t i = 0; i < s->argc; i++)
        free(argv[i]);
    free(argv);
    free(ground_dir);
    free(log);
    return rc;
}

/* arg as one shell word: as it is when every byte is safe, else in single quotes. */
static void print_word(const char *arg)
{
    static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-";
    if (*arg && strspn(arg, safe) == strlen(arg)) {
        fputs(arg, stdout);
        return;
    }
    putchar('\'');
    for (; *arg; arg++)
        if (*arg == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*arg);
    putchar('\'');
}

/* A dry run's view of a step: its command line, shell-quoted, on one indented line. */
static void print_command(const pl_step *s)
{
    fputs("        ", stdout);
    for (size_t i = 0; i < s->argc; i++) {
        if (i)
            putchar(' ');
        print_word(strstr(s->argv[i], "@STANDIN@") ? "--endpoint=http://127.0.0.1:PORT/v1" : s->argv[i]);
    }
    if (s->stdout_path) {
        fputs(" > ", stdout);
        print_word(s->stdout_path);
    }
    putchar('\n');
    if (s->standin)
        puts("        # PORT: the in-process stand-in server's, chosen when the step runs");
}

static int run_step(const pl_plan *p, size_t i, int *n_ran, v4r_err *err)
{
    const pl_step *s = &p->steps[i];
    char hash[65];
    step_hash(s, hash);
    int forced = p->o->from_stage >= 0 && s->stage >= p->o->from_stage;
    if (!forced && up_to_date(p, s, hash)) {
        printf("[%2zu/%zu] %-28s up to date\n", i + 1, p->n_steps, s->id);
        if (p->o->dry_run)
            print_command(s);
        return V4R_OK;
    }
    printf("[%2zu/%zu] %-28s %s\n", i + 1, p->n_steps, s->id, p->o->dry_run ? "would run" : "running");
    if (p->o->dry_run) {
        print_command(s);
        return V4R_OK;
    }
    double t0 = v4r_now();
    int rc = run_command(p, s, err);
    if (!rc && s->protocol >= 0)
        rc = pl_annotate(p, (size_t)s->protocol, err);
    if (!rc)
        rc = write_state(p, s, hash, v4r_now() - t0, err);
    if (!rc)
        printf("[%2zu/%zu] %-28s done in %.1f s\n", i + 1, p->n_steps, s->id, v4r_now() - t0);
    char *counts = rc ? NULL : pl_item_counts(s);
    if (counts)
        printf("        items: %s\n", counts);
    free(counts);
    (*n_ran)++;
    return rc;
}

static size_t ignore_body(char *ptr, size_t size, size_t n, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * n;
}

/* Any HTTP answer from URL/models counts as up; no connection is down. */
static int endpoint_up(const char *url, char *why, size_t n)
{
    CURL *c = curl_easy_init();
    char *full = v4r_sprintf("%s/models", url);
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ignore_body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK)
        snprintf(why, n, "%s", curl_easy_strerror(cc));
    curl_easy_cleanup(c);
    free(full);
    return cc == CURLE_OK;
}

/* Before anything runs: a grounding endpoint that will be needed must answer. */
static int early_checks(const pl_plan *p, v4r_err *err)
{
    if (!p->ground || p->standin || p->o->dry_run)
        return V4R_OK;
    for (size_t i = 0; i < p->n_steps; i++) {
        const pl_step *s = &p->steps[i];
        char hash[65];
        step_hash(s, hash);
        int forced = p->o->from_stage >= 0 && s->stage >= p->o->from_stage;
        if (s->stage != V4R_STAGE_GROUND || (!forced && up_to_date(p, s, hash)))
            continue;
        char *list = v4r_strdup(p->ground_endpoint), *save = NULL, why[256] = "";
        int rc = V4R_OK;
        for (char *e = strtok_r(list, ", ", &save); e && !rc; e = strtok_r(NULL, ", ", &save))
            if (!endpoint_up(e, why, sizeof why))
                rc = pl_conf_fail(p, p->endpoint_line, err, "endpoint %s%s is down: %s", e,
                                  getenv("VLM4REC_LVLM_URL") && *getenv("VLM4REC_LVLM_URL") ? " (VLM4REC_LVLM_URL)" : "",
                                  why);
        free(list);
        return rc;
    }
    return V4R_OK;
}

/* The summary's per-item lines: what each per-item step that ran did with the catalog's items. */
static void print_item_counts(const pl_plan *p, const uint8_t *ran)
{
    for (size_t i = 0; i < p->n_steps; i++) {
        char *counts = ran[i] ? pl_item_counts(&p->steps[i]) : NULL;
        if (counts)
            printf("items of %s: %s\n", p->steps[i].id, counts);
        free(counts);
    }
}

int v4r_pipeline_run(const v4r_run_opts *o, v4r_err *err)
{
    pl_plan p;
    double t0 = v4r_now();
    int rc = pl_plan_build(&p, o, err), n_ran = 0;
    if (!rc && !o->dry_run) /* a dry run writes nothing */
        rc = v4r_mkdir_p(p.state_dir, err);
    if (!rc)
        rc = early_checks(&p, err);
    if (!rc && p.fusion_note)
        printf("fusion: %s; the representations that need it are left out\n", p.fusion_note);
    uint8_t *ran = v4r_calloc(p.n_steps + 1, 1);
    for (size_t i = 0; i < p.n_steps && !rc; i++) {
        int before = n_ran;
        rc = run_step(&p, i, &n_ran, err);
        ran[i] = n_ran > before;
    }
    if (!rc && !o->dry_run) {
        printf("%d of %zu steps ran, %.1f s; run directory %s\n", n_ran, p.n_steps, v4r_now() - t0, p.run_dir);
        print_item_counts(&p, ran);
        if (p.n_protos)
            printf("report: %s/report/report.html\n", p.run_dir);
    }
    free(ran);
    pl_plan_free(&p);
    return rc;
}
