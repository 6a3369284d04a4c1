/* Test helpers: temporary directories, small files, running the vlm4rec binary. */
#ifndef V4R_TESTUTIL_H
#define V4R_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vlm4rec/base.h"

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

#endif
