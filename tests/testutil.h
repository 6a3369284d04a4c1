/* Test helpers: temporary directories, small files, running the vlm4rec binary. */
#ifndef V4R_TESTUTIL_H
#define V4R_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vlm4rec/base.h"
#include "vlm4rec/data.h"
#include "vlm4rec/io.h"
#include "vlm4rec/text.h"

/* SANITIZED: 1 in the AddressSanitizer build (tests then check fewer texts where they are slow). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* A fresh directory under $TMPDIR (or /tmp); removed by tu_rmtree. Caller frees the string. */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* Writes text to dir/name (creating parent directories). */
void tu_write(const char *dir, const char *name, const char *text);
/* Reads dir/name into a fresh string (NULL when missing). */
char *tu_read(const char *dir, const char *name);
/* Runs the vlm4rec binary with a shell-quoted argument string; captures stdout+stderr into *out
 * (caller frees, may be NULL). Returns the exit code. */
int tu_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The shared fixtures directory. */
const char *tu_shared(void);

/* The fixture corpus's token ids truncated to 256 (text/tokens.bert-base-uncased.jsonl, "ids_256"),
 * one list per text in file order. */
typedef struct {
    int32_t **ids;
    size_t *lens, n;
} tu_tokens;
void tu_tokens_load(tu_tokens *t);
void tu_tokens_free(tu_tokens *t);
/* The vectors of t's first n texts by e in batches of batch (fails the test on an error). */
float *tu_encode(v4r_encoder *e, const tu_tokens *t, size_t n, size_t batch);
/* Asserts e gives the same bytes for t's first n texts in batches of 32, 1 and 7 on 2 threads and of
 * 32 on 1 thread. */
void tu_same_across_batches(v4r_encoder *e, const tu_tokens *t, size_t n);

/* A synthetic catalog in a fresh directory (vlm4rec dataset synth with these sizes), loaded, with
 * its description and visual vectors. tu_catalog_free removes the directory. */
typedef struct {
    char *dir;
    v4r_dataset ds;
    v4r_matrix desc, visual;
} tu_catalog;
void tu_catalog_make(tu_catalog *c, size_t users, size_t items, size_t interactions);
void tu_catalog_free(tu_catalog *c);

#endif
