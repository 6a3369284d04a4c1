/* placeholder: `vlm4rec encode` is being written */
#include <stdio.h>

#include "vlm4rec/cli.h"

int v4r_cmd_encode(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "vlm4rec encode: not available in this build\n");
    return V4R_EINTERNAL;
}
