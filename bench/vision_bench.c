/* The vlm4rec side of bench/vision.sh: decodes and preprocesses a list of image files (timed), writes
 * the pixel values for PyTorch, then runs the CLIP vision model over them (timed apart) and writes
 * the image_embeds. Model time: the better of two passes after a warm-up batch. Prints one JSON object.
 * Usage: vision_bench MODEL_DIR LIST OUT_DIR BATCH   (LIST: one image path a line) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"
#include "vlm4rec/vision.h"

static char **read_list(const char *path, size_t *n)
{
    v4r_lines r;
    char **list = NULL;
    size_t cap = 0;
    *n = 0;
    if (v4r_lines_open(&r, path, NULL))
        return NULL;
    while (v4r_lines_next(&r, NULL) == 1)
        if (r.line[0]) {
            v4r_grow((void **)&list, &cap, *n + 1, sizeof *list);
            list[(*n)++] = v4r_strdup(r.line);
        }
    v4r_lines_close(&r);
    return list;
}

/* Decodes and preprocesses every file in parallel; 0 when all succeeded. */
static int prepare(const v4r_vision *v, char **paths, size_t n, float *pixels)
{
    size_t pc = v4r_vision_pixel_count(v);
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : bad)
    for (size_t i = 0; i < n; i++) {
        v4r_image img;
        v4r_err err = {0};
        int rc = v4r_image_load(paths[i], &img, &err);
        if (!rc)
            rc = v4r_vision_preprocess(v, &img, pixels + i * pc, &err);
        if (rc)
            fprintf(stderr, "vision_bench: %s\n", err.msg);
        bad |= rc != 0;
        v4r_image_free(&img);
    }
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: vision_bench MODEL_DIR LIST OUT_DIR BATCH\n");
        return 2;
    }
    size_t n, batch = strtoul(argv[4], NULL, 10);
    char **paths = read_list(argv[2], &n);
    v4r_vision *v;
    v4r_err err = {0};
    if (!paths || !n || v4r_vision_load(argv[1], &v, &err)) {
        fprintf(stderr, "vision_bench: %s\n", paths ? err.msg : "cannot read the list");
        return 1;
    }
    size_t pc = v4r_vision_pixel_count(v), dim = v4r_vision_dim(v);
    float *pixels = malloc(n * pc * sizeof *pixels), *emb = malloc(n * dim * sizeof *emb);
    double t0 = v4r_now();
    if (prepare(v, paths, n, pixels))
        return 1;
    double prep_s = v4r_now() - t0;
    char *px_path = v4r_sprintf("%s/pixels.npy", argv[3]), *emb_path = v4r_sprintf("%s/embeds-vlm4rec.npy", argv[3]);
    v4r_vision_forward(v, pixels, batch < n ? batch : n, batch, emb, NULL); /* warm-up: one batch */
    double model_s = 0;
    for (int pass = 0; pass < 2; pass++) { /* the better of two passes */
        t0 = v4r_now();
        v4r_vision_forward(v, pixels, n, batch, emb, NULL);
        double s = v4r_now() - t0;
        model_s = pass == 0 || s < model_s ? s : model_s;
    }
    if (v4r_npy_write(px_path, pixels, n, pc, &err) || v4r_npy_write(emb_path, emb, n, dim, &err)) {
        fprintf(stderr, "vision_bench: %s\n", err.msg);
        return 1;
    }
    printf("{\"images\": %zu, \"threads\": %d, \"prep_s\": %.4f, \"model_s\": %.4f, \"prep_per_s\": %.2f, "
           "\"model_per_s\": %.2f}\n",
           n, omp_get_max_threads(), prep_s, model_s, n / prep_s, n / model_s);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths), free(pixels), free(emb), free(px_path), free(emb_path);
    v4r_vision_free(v);
    return 0;
}
