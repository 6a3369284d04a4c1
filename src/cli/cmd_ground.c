/* `vlm4rec ground`: describe item images with a vision-language model server. */
#include <stdio.h>

#include "vlm4rec/cli.h"

int v4r_cmd_ground(int argc, char **argv)
{
    fprintf(stderr, "vlm4rec: ground is not built yet\n");
    return V4R_EINTERNAL;
}
