/* `vlm4rec standin`: the stand-in chat-completions server (not a vision-language model). */
#include <stdio.h>

#include "vlm4rec/cli.h"

int v4r_cmd_standin(int argc, char **argv)
{
    fprintf(stderr, "vlm4rec: standin is not built yet\n");
    return V4R_EINTERNAL;
}
