/* Parameters as a safetensors file: an 8-byte header length, a JSON header (dtype, shape and data
 * offsets of each tensor, "__metadata__"), padded with spaces to 8 bytes, then the F32 data. */
#include "vlm4rec/fusion.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *header_json(const v4r_params *ps, const char *const *metadata, size_t n_meta)
{
    json_t *h = json_object();
    if (n_meta) {
        json_t *meta = json_object();
        for (size_t i = 0; i < n_meta; i++)
            json_object_set_new(meta, metadata[2 * i], json_string(metadata[2 * i + 1]));
        json_object_set_new(h, "__metadata__", meta);
    }
    size_t off = 0;
    for (size_t i = 0; i < ps->n; i++) {
        const v4r_param *p = ps->p[i];
        size_t bytes = p->t.rows * p->t.cols * sizeof(float);
        json_t *shape = json_array(), *e = json_object();
        for (int d = 0; d < p->ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)p->shape[d]));
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        json_object_set_new(h, p->name, e);
        off += bytes;
    }
    return h;
}

int v4r_params_save(const v4r_params *ps, const char *path, const char *const *metadata, size_t n_meta, v4r_err *err)
{
    json_t *h = header_json(ps, metadata, n_meta);
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    unsigned char size_le[8];
    for (int b = 0; b < 8; b++)
        size_le[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (!rc) {
        fwrite(size_le, 1, 8, out.fp);
        fwrite(text, 1, len, out.fp);
        for (size_t i = len; i < padded; i++)
            fputc(' ', out.fp);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian: add a byte swap for this machine"
#endif
        for (size_t i = 0; i < ps->n; i++)
            fwrite(ps->p[i]->t.val, sizeof(float), ps->p[i]->t.rows * ps->p[i]->t.cols, out.fp);
        rc = v4r_out_commit(&out, err);
    }
    free(text);
    return rc;
}
