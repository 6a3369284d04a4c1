/* sha256 in hex (OpenSSL's EVP) of bytes in memory and of a file's bytes. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/base.h"

static void to_hex(const unsigned char *md, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = 0;
}

void v4r_sha256_hex(const void *data, size_t n, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
        fprintf(stderr, "vlm4rec: sha256 failed in libcrypto\n");
        abort();
    }
    to_hex(md, hex);
}

int v4r_sha256_file(const char *path, char hex[65], v4r_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    unsigned char *buf = v4r_malloc(1 << 20), md[EVP_MAX_MD_SIZE];
    size_t got;
    while (ok && (got = fread(buf, 1, 1 << 20, fp)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, got) == 1;
    int read_error = ferror(fp);
    unsigned int len = 0;
    ok = ok && !read_error && EVP_DigestFinal_ex(ctx, md, &len) == 1 && len == 32;
    EVP_MD_CTX_free(ctx);
    fclose(fp);
    free(buf);
    if (!ok)
        return v4r_fail(err, read_error ? V4R_EIO : V4R_EINTERNAL, "%s: cannot compute its sha256%s", path,
                        read_error ? " (read error)" : "");
    to_hex(md, hex);
    return V4R_OK;
}
