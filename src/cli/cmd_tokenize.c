/* placeholder: `vlm4rec tokenize` is being written */
#include <stdio.h>

#include "vlm4rec/cli.h"

int v4r_cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "vlm4rec tokenize: not available in this build\n");
    return V4R_EINTERNAL;
}
