/* Error values: status codes with a message that carries file/line/field context. */
#include "vlm4rec/base.h"

#include <stdio.h>
#include <string.h>

int v4r_fail(v4r_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int v4r_err_prefix(v4r_err *err, const char *fmt, ...)
{
    if (!err)
        return V4R_EINTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t plen = strlen(prefix);
    if (plen >= sizeof err->msg)
        plen = sizeof err->msg - 1;
    memcpy(err->msg, prefix, plen);
    size_t rest = strnlen(old, sizeof old - 1);
    if (rest > sizeof err->msg - 1 - plen)
        rest = sizeof err->msg - 1 - plen;
    memcpy(err->msg + plen, old, rest);
    err->msg[plen + rest] = 0;
    return err->code;
}

const char *v4r_code_name(int code)
{
    switch (code) {
    case V4R_OK: return "ok";
    case V4R_EUSAGE: return "usage error";
    case V4R_EINPUT: return "bad input";
    case V4R_EIO: return "i/o error";
    case V4R_ENOMEM: return "out of memory";
    default: return "internal error";
    }
}
