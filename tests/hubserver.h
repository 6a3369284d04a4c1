/* hubserver: a Hugging Face hub look-alike for tests, on 127.0.0.1 (ephemeral ports), serving
 * local directories as repositories in the hub's URL layout, with fault injection and counters;
 * also a package index (PEP 691 JSON or PEP 503 HTML under /simple/, files under /files/). */
#ifndef V4R_HUBSERVER_H
#define V4R_HUBSERVER_H

#include <stddef.h>
#include <stdint.h>

/* Files over this size are served as LFS files (302 to the CDN, X-Linked-Etag = sha256). */
#define HS_LFS_THRESHOLD ((uint64_t)1 << 20)

typedef struct hubserver hubserver;

/* A repository: its id (ORG/NAME), the directory whose files it holds, its commit (40 hex). */
typedef struct {
    const char *repo, *dir, *commit;
} hs_repo;

typedef struct {
    int total;          /* every request, both ports */
    int api;            /* GET /api/models/... */
    int resolve;        /* /ORG/NAME/resolve/... */
    int cdn;            /* requests on the CDN port */
    int ranged;         /* requests with a Range header */
    char last_range[64];
    int with_auth;      /* requests to the hub port with an Authorization header */
    int cdn_with_auth;  /* requests to the CDN with an Authorization header (must stay 0) */
    int unauthorized;   /* 401 answers */
    int cut;            /* bodies cut short */
    int pypi_index;     /* GET /simple/... */
    int pypi_files;     /* GET /files/... */
} hs_counts;

/* Starts the hub (and its CDN on a second port) for n repositories; NULL on failure. The server
 * answers 503 after 5000 requests and drops connections idle for 10 s. */
hubserver *hs_start(const hs_repo *repos, size_t n);
void hs_stop(hubserver *s);
/* http://127.0.0.1:PORT (the endpoint, for HF_ENDPOINT). */
const char *hs_url(const hubserver *s);
/* Requires "Authorization: Bearer TOKEN" on the hub port (NULL: open). Without it: 401. */
void hs_require_token(hubserver *s, const char *token);
/* Cuts the next `times` bodies of files whose path ends with `file` after `after` bytes. */
void hs_cut(hubserver *s, const char *file, uint64_t after, int times);
/* Serves files whose path ends with `file` with one byte flipped (NULL: none). */
void hs_corrupt(hubserver *s, const char *file);
/* The package index serves one project: package (normalized name) with the wheel at path, listed
 * under filename with sha256 `listed` (NULL: the file's own). package NULL: an empty index (404).
 * html: answer with the PEP 503 page instead of PEP 691 JSON. */
void hs_pypi(hubserver *s, const char *package, const char *filename, const char *path, const char *listed, int html);
/* http://127.0.0.1:PORT/simple (for VLM4REC_PYPI_URL). */
const char *hs_pypi_url(const hubserver *s);
void hs_counts_get(hubserver *s, hs_counts *c);
void hs_counts_reset(hubserver *s);

#endif
