/* Allocation helpers that abort on exhaustion, and printf into fresh strings. */
#include "vlm4rec/base.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { HUGE_PAGE = 2 << 20 };

static void *check(void *p, size_t n)
{
    if (!p && n) {
        fprintf(stderr, "vlm4rec: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

void *v4r_malloc(size_t n) { return check(malloc(n ? n : 1), n); }
void *v4r_calloc(size_t count, size_t size) { return check(calloc(count ? count : 1, size ? size : 1), count * size); }
void *v4r_realloc(void *p, size_t n) { return check(realloc(p, n ? n : 1), n); }

void *v4r_huge_alloc(size_t n)
{
    if (n < HUGE_PAGE) {
        void *p = NULL;
        return check(posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL, n);
    }
    size_t whole = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *p = NULL;
    check(posix_memalign(&p, HUGE_PAGE, whole) == 0 ? p : NULL, n);
    madvise(p, whole, MADV_HUGEPAGE); /* advice only: without transparent huge pages, 4 KiB pages */
    return p;
}

char *v4r_strdup(const char *s) { return v4r_strndup(s, strlen(s)); }

char *v4r_strndup(const char *s, size_t n)
{
    char *d = v4r_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *v4r_sprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = v4r_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

void v4r_grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    *buf = v4r_realloc(*buf, ncap * elem);
    *cap = ncap;
}
