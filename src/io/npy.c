/* .npy files: strict header parsing, float16/32/64 to float32, atomic float32/uint8 writes. */
#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void v4r_matrix_free(v4r_matrix *m)
{
    free(m->data);
    memset(m, 0, sizeof *m);
}

typedef struct {
    char kind;      /* 'f' */
    int itemsize;   /* 2, 4, 8 */
    int fortran;
    int ndim;
    size_t shape[2];
    long data_offset;
} npy_header;

/* Finds the value text after 'key': in the header dict. */
static const char *dict_value(const char *hdr, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static int parse_descr(const char *path, const char *v, npy_header *h, v4r_err *err)
{
    if (!v || (*v != '\'' && *v != '"'))
        return v4r_fail(err, V4R_EINPUT, "%s: .npy header has no 'descr'", path);
    char q = *v++;
    const char *end = strchr(v, q);
    if (!end || end - v > 16)
        return v4r_fail(err, V4R_EINPUT, "%s: .npy header has a malformed 'descr'", path);
    char d[17];
    memcpy(d, v, (size_t)(end - v));
    d[end - v] = 0;
    int little = d[0] == '<' || d[0] == '=' || d[0] == '|';
    if (!little || d[1] != 'f' || (strcmp(d + 2, "2") && strcmp(d + 2, "4") && strcmp(d + 2, "8")))
        return v4r_fail(err, V4R_EINPUT, "%s: dtype '%s' is not a little-endian float (need <f2, <f4 or <f8)", path,
                        d);
    h->kind = 'f';
    h->itemsize = atoi(d + 2);
    return V4R_OK;
}

static int parse_shape(const char *path, const char *v, npy_header *h, v4r_err *err)
{
    if (!v || *v != '(')
        return v4r_fail(err, V4R_EINPUT, "%s: .npy header has no 'shape'", path);
    v++;
    h->ndim = 0;
    for (;;) {
        while (*v == ' ' || *v == ',')
            v++;
        if (*v == ')')
            break;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || errno || h->ndim >= 2)
            return v4r_fail(err, V4R_EINPUT, "%s: .npy shape must be 1-D or 2-D", path);
        h->shape[h->ndim++] = (size_t)x;
        v = end;
    }
    if (h->ndim == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: .npy holds a scalar, not a vector table", path);
    if (h->ndim == 1)
        h->shape[1] = 1;
    return V4R_OK;
}

static int read_header(FILE *fp, const char *path, npy_header *h, v4r_err *err)
{
    unsigned char pre[10];
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return v4r_fail(err, V4R_EINPUT, "%s: not a .npy file (bad magic)", path);
    size_t hlen;
    long off;
    if (pre[6] == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
        off = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char b[2];
        if (fread(b, 1, 2, fp) != 2)
            return v4r_fail(err, V4R_EINPUT, "%s: truncated .npy header", path);
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)b[0] << 16 | (size_t)b[1] << 24;
        off = 12;
    } else {
        return v4r_fail(err, V4R_EINPUT, "%s: unsupported .npy version %d", path, pre[6]);
    }
    if (hlen > 1 << 20)
        return v4r_fail(err, V4R_EINPUT, "%s: .npy header too large", path);
    char *hdr = v4r_malloc(hlen + 1);
    if (fread(hdr, 1, hlen, fp) != hlen) {
        free(hdr);
        return v4r_fail(err, V4R_EINPUT, "%s: truncated .npy header", path);
    }
    hdr[hlen] = 0;
    memset(h, 0, sizeof *h);
    int rc = parse_descr(path, dict_value(hdr, "descr"), h, err);
    if (!rc)
        rc = parse_shape(path, dict_value(hdr, "shape"), h, err);
    const char *fo = dict_value(hdr, "fortran_order");
    if (!rc && !fo)
        rc = v4r_fail(err, V4R_EINPUT, "%s: .npy header has no 'fortran_order'", path);
    if (!rc)
        h->fortran = !strncmp(fo, "True", 4);
    free(hdr);
    h->data_offset = off + (long)hlen;
    return rc;
}

static void convert_to_f32(const void *src, float *dst, size_t n, int itemsize)
{
    if (itemsize == 2) {
        v4r_f16_to_f32_n(src, dst, n);
    } else if (itemsize == 8) {
        const double *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
    } else {
        memcpy(dst, src, n * 4);
    }
}

static float *transpose(const float *src, size_t rows, size_t cols)
{
    float *t = v4r_malloc(rows * cols * sizeof *t);
    for (size_t c = 0; c < cols; c++)
        for (size_t r = 0; r < rows; r++)
            t[r * cols + c] = src[c * rows + r];
    return t;
}

static int open_checked(const char *path, FILE **fpo, npy_header *h, v4r_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = read_header(fp, path, h, err);
    struct stat st;
    if (!rc && fstat(fileno(fp), &st) != 0)
        rc = v4r_fail(err, V4R_EIO, "%s: cannot stat", path);
    if (!rc) {
        unsigned long long want = (unsigned long long)h->shape[0] * h->shape[1] * (unsigned)h->itemsize;
        unsigned long long have = (unsigned long long)st.st_size - (unsigned long long)h->data_offset;
        if (have < want)
            rc = v4r_fail(err, V4R_EINPUT, "%s: truncated: shape (%zu, %zu) needs %llu data bytes, file has %llu", path,
                          h->shape[0], h->shape[1], want, have);
        else if (have > want)
            rc = v4r_fail(err, V4R_EINPUT, "%s: %llu bytes of trailing data after the array", path, have - want);
    }
    if (rc) {
        fclose(fp);
        return rc;
    }
    *fpo = fp;
    return V4R_OK;
}

int v4r_npy_shape(const char *path, size_t *rows, size_t *cols, v4r_err *err)
{
    FILE *fp;
    npy_header h;
    int rc = open_checked(path, &fp, &h, err);
    if (rc)
        return rc;
    fclose(fp);
    *rows = h.shape[0];
    *cols = h.shape[1];
    return V4R_OK;
}

int v4r_npy_read(const char *path, v4r_matrix *m, v4r_err *err)
{
    FILE *fp;
    npy_header h;
    memset(m, 0, sizeof *m);
    int rc = open_checked(path, &fp, &h, err);
    if (rc)
        return rc;
    size_t n = h.shape[0] * h.shape[1];
    float *data = v4r_malloc(n * sizeof *data);
    void *raw = h.itemsize == 4 ? (void *)data : v4r_malloc(n * (size_t)h.itemsize);
    size_t got = fread(raw, (size_t)h.itemsize, n, fp);
    fclose(fp);
    if (got != n) {
        if (raw != data)
            free(raw);
        free(data);
        return v4r_fail(err, V4R_EIO, "%s: read error", path);
    }
    if (raw != data) {
        convert_to_f32(raw, data, n, h.itemsize);
        free(raw);
    }
    if (h.fortran && h.ndim == 2) {
        float *t = transpose(data, h.shape[0], h.shape[1]);
        free(data);
        data = t;
    }
    m->data = data;
    m->rows = h.shape[0];
    m->cols = h.shape[1];
    return V4R_OK;
}

static int write_npy(const char *path, const char *descr, const void *data, size_t elem, size_t rows, size_t cols,
                     int two_d, v4r_err *err)
{
    char dict[256];
    if (two_d)
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr, rows, cols);
    else
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }", descr, rows);
    size_t dlen = strlen(dict), total = 10 + dlen + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = dlen + pad + 1;
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 255), (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, 10, out.fp);
    fputs(dict, out.fp);
    for (size_t i = 0; i < pad; i++)
        putc(' ', out.fp);
    putc('\n', out.fp);
    fwrite(data, elem, rows * cols, out.fp);
    return v4r_out_commit(&out, err);
}

int v4r_npy_write(const char *path, const float *data, size_t rows, size_t cols, v4r_err *err)
{
    return write_npy(path, "<f4", data, sizeof(float), rows, cols, 1, err);
}

int v4r_npy_write_u8(const char *path, const uint8_t *data, size_t n, v4r_err *err)
{
    return write_npy(path, "|u1", data, 1, n, 1, 0, err);
}

size_t v4r_npy_header_f32(size_t rows, size_t cols, char buf[V4R_NPY_HEADER_MAX])
{
    char dict[128];
    snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", rows, cols);
    size_t dlen = strlen(dict), pad = (64 - (10 + dlen + 1) % 64) % 64, hlen = dlen + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 255), (unsigned char)(hlen >> 8)};
    memcpy(buf, pre, 10);
    memcpy(buf + 10, dict, dlen);
    memset(buf + 10 + dlen, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    return 10 + hlen;
}
