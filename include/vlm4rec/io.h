/* io: .npy float matrices, line readers with line numbers, TSV and CSV fields, JSON files,
 * safetensors. */
#ifndef VLM4REC_IO_H
#define VLM4REC_IO_H

#include "vlm4rec/base.h"

/* A dense row-major float32 matrix. */
typedef struct {
    float *data;
    size_t rows, cols;
} v4r_matrix;

void v4r_matrix_free(v4r_matrix *m);

/* Reads a .npy file (versions 1-3) of little-endian float16/32/64, 1-D (one column) or 2-D,
 * C or Fortran order, into float32. Anything else (ints, big-endian, truncation, trailing
 * garbage) is V4R_EINPUT with the reason. */
int v4r_npy_read(const char *path, v4r_matrix *m, v4r_err *err);
/* Reads only the header: dtype descriptor, shape (rows, cols; cols = 1 for 1-D). */
int v4r_npy_shape(const char *path, size_t *rows, size_t *cols, v4r_err *err);
/* Writes a 2-D float32 C-order .npy atomically (numpy reads it). */
int v4r_npy_write(const char *path, const float *data, size_t rows, size_t cols, v4r_err *err);
/* The header v4r_npy_write writes for rows x cols into buf; returns its length (a multiple of 64). */
#define V4R_NPY_HEADER_MAX 192
size_t v4r_npy_header_f32(size_t rows, size_t cols, char buf[V4R_NPY_HEADER_MAX]);
/* Writes a 1-D uint8 .npy atomically (coverage masks). */
int v4r_npy_write_u8(const char *path, const uint8_t *data, size_t n, v4r_err *err);

/* Line reader: strips the end of line (\n or \r\n), counts lines from 1. */
typedef struct {
    FILE *fp;
    char *path;
    char *line;
    size_t cap, len;
    long lineno;
} v4r_lines;

int v4r_lines_open(v4r_lines *r, const char *path, v4r_err *err);
/* 1: a line is in r->line; 0: end of file; -1: read error (err set). */
int v4r_lines_next(v4r_lines *r, v4r_err *err);
void v4r_lines_close(v4r_lines *r);
/* 1 when a line holds only spaces and tabs (or nothing). */
int v4r_line_blank(const char *s);

/* Splits line in place at tabs. Returns the number of fields; fields beyond max are not stored
 * (the return value still counts them). */
size_t v4r_tsv_split(char *line, char **fields, size_t max);
/* TSV escapes: \t \n \r \\ inside a field. Unescape works in place. */
void v4r_tsv_unescape(char *field);
void v4r_tsv_write_field(FILE *fp, const char *field);

/* CSV (RFC 4180: quotes, doubled quotes, delimiters and newlines inside quotes). Reads one record,
 * joining physical lines while a quote is open. Fields point into an internal buffer valid until
 * the next call. Returns the field count (>= 1), 0 at end of file, -1 on error (err names file:line). */
typedef struct {
    v4r_lines lines;
    char delim;
    char *buf;
    size_t cap;
    char **fields;
    size_t fields_cap;
    long record_line; /* line where the current record started */
} v4r_csv;

int v4r_csv_open(v4r_csv *c, const char *path, char delim, v4r_err *err);
int v4r_csv_next(v4r_csv *c, v4r_err *err);
void v4r_csv_close(v4r_csv *c);

/* ---- JSON files (jansson) ---- */

typedef struct json_t json_t;

/* Reads path, a JSON object, into *root (caller json_decref's it). A missing file is V4R_EIO
 * ("cannot open: no such file"), a parse error V4R_EINPUT ("PATH:LINE: not JSON: ..."), any other
 * top level V4R_EINPUT ("not a JSON object"); *root is NULL on failure. */
int v4r_json_read_object(const char *path, json_t **root, v4r_err *err);
/* obj[key], a positive integer of at most max, into *out; absent: dflt, or an error when dflt is 0.
 * The error (V4R_EINPUT) names path and key: "must be a positive integer". */
int v4r_json_get_size(const char *path, const json_t *obj, const char *key, size_t dflt, size_t max, size_t *out,
                      v4r_err *err);
/* obj[key], any JSON number, into *out; absent: dflt. Else V4R_EINPUT "must be a number". */
int v4r_json_get_number(const char *path, const json_t *obj, const char *key, double dflt, double *out, v4r_err *err);

/* ---- safetensors ---- */

/* One tensor of a safetensors file: its header entry and its bytes in the mapped file. */
typedef struct {
    char *name;
    char dtype[16]; /* as the header spells it: F32, F16, BF16, I64, ... */
    int ndim;
    size_t shape[8];
    size_t numel;
    const unsigned char *data; /* little-endian, any alignment */
    size_t nbytes;
    const char *file; /* the file that holds it */
} v4r_st_tensor;

typedef struct v4r_safetensors v4r_safetensors;

/* Opens a .safetensors file, or an index (a .json file with a "weight_map") and every shard it
 * names, mmap'ed read-only. Headers are checked in full: a truncated file, data past the end, a
 * size that does not match shape and dtype, a shard the index names but that is missing (V4R_EIO,
 * naming the index and the shard) or that lacks a tensor the index puts there are errors. */
int v4r_st_open(const char *path, v4r_safetensors **out, v4r_err *err);
/* The weights of a model directory: model.safetensors.index.json when present, else
 * model.safetensors; neither is V4R_EIO naming the directory. */
int v4r_st_open_dir(const char *dir, v4r_safetensors **out, v4r_err *err);
void v4r_st_close(v4r_safetensors *st);
/* The path given to v4r_st_open (the file or the index). */
const char *v4r_st_path(const v4r_safetensors *st);
size_t v4r_st_count(const v4r_safetensors *st);
const v4r_st_tensor *v4r_st_at(const v4r_safetensors *st, size_t i);
/* The tensor called name, else "bert." name, else name less a leading "bert."; NULL when none. */
const v4r_st_tensor *v4r_st_find(const v4r_safetensors *st, const char *name);
/* v4r_st_find that must succeed, with a float dtype (F32, F16, BF16) and exactly shape (ndim
 * dims): else V4R_EINPUT naming the tensor and the file. */
int v4r_st_get(const v4r_safetensors *st, const char *name, int ndim, const size_t *shape, const v4r_st_tensor **t,
               v4r_err *err);
/* Elements [first, first + n) of a float tensor as float32. */
void v4r_st_to_f32(const v4r_st_tensor *t, size_t first, size_t n, float *out);
/* v4r_st_get, then the whole tensor as float32 in a fresh buffer (caller frees). */
int v4r_st_load(const v4r_safetensors *st, const char *name, int ndim, const size_t *shape, float **out, v4r_err *err);
/* v4r_st_load of a vector of n, or of a rows x cols matrix. */
int v4r_st_load_vec(const v4r_safetensors *st, const char *name, size_t n, float **out, v4r_err *err);
int v4r_st_load_mat(const v4r_safetensors *st, const char *name, size_t rows, size_t cols, float **out, v4r_err *err);

/* ---- vector parts: one shard's rows of a per-item vector file (docs/cluster.md) ---- */

#define V4R_VECPART_FORMAT "vlm4rec.vectors-part/1"

/* A part: PART.npy holds the rows (float32, rows x dim), its manifest PART.part.json the rest. */
typedef struct {
    char *command;                /* the command that wrote it: "encode" or "embed-images" */
    int shard_index, shard_count; /* shard I of N, 1-based */
    size_t n_items;               /* the dataset's item count */
    char items_sha256[65];        /* hex sha256 of the dataset's items.tsv */
    char *model_id;               /* --model as given (informational) */
    char model_sha256[65];        /* v4r_model_fingerprint of the model directory */
    json_t *options;              /* the options that change the numbers (an object, compared whole) */
    json_t *input;                /* what was read besides the dataset, or NULL (informational) */
    size_t rows, dim;
    char **item;                  /* per row: the item id, in dataset order */
    uint8_t *covered;             /* per row: 1 when the row holds the item's vector */
    char **reason;                /* per row: why it has none, or NULL (may be NULL as a whole) */
    char vectors_sha256[65];      /* hex sha256 of PART.npy */
} v4r_vecpart;

/* Writes the manifest atomically for the vectors file already written (its shape must be rows x
 * dim); fills p->vectors_sha256. Write the vectors first and the manifest last: a part whose
 * manifest is missing or names other bytes is unfinished. */
int v4r_vecpart_write(const char *manifest, const char *vectors, v4r_vecpart *p, v4r_err *err);
/* Reads a manifest with every field checked, then checks the vectors file against it (sha256,
 * shape). Errors name the file and the field (V4R_EINPUT), or say the shard did not finish. */
int v4r_vecpart_read(const char *manifest, const char *vectors, v4r_vecpart *p, v4r_err *err);
void v4r_vecpart_free(v4r_vecpart *p);
/* The identity of a model directory's contents: the sha256 of the lines "SHA256  RELPATH\n" of
 * its *.json, *.txt and *.safetensors files (subfolders too, hidden ones skipped) in path order.
 * Where the directory lies and the files' times do not enter. */
int v4r_model_fingerprint(const char *dir, char hex[65], v4r_err *err);

#endif
