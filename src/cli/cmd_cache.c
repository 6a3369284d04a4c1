/* `vlm4rec cache`: stats, export, import and merge of the semantic cache. */
#include <stdio.h>

#include "vlm4rec/cli.h"

int v4r_cmd_cache(int argc, char **argv)
{
    fprintf(stderr, "vlm4rec: cache is not built yet\n");
    return V4R_EINTERNAL;
}
