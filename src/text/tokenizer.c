/* placeholder: the WordPiece tokenizer is being written */
#include "vlm4rec/text.h"

int v4r_tokenizer_load(const char *model_dir, v4r_tokenizer **out, v4r_err *err)
{
    (void)model_dir;
    *out = NULL;
    return v4r_fail(err, V4R_EINTERNAL, "tokenizer not available in this build");
}
void v4r_tokenizer_free(v4r_tokenizer *t) { (void)t; }
int v4r_tokenize(const v4r_tokenizer *t, const char *text, size_t max_len, int32_t **ids, size_t *n, v4r_err *err)
{
    (void)t, (void)text, (void)max_len, (void)ids, (void)n;
    return v4r_fail(err, V4R_EINTERNAL, "tokenizer not available in this build");
}
const char *v4r_tokenizer_token(const v4r_tokenizer *t, int32_t id) { (void)t, (void)id; return NULL; }
size_t v4r_tokenizer_vocab_size(const v4r_tokenizer *t) { (void)t; return 0; }
