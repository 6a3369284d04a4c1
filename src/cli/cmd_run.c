/* `vlm4rec run`: placeholder. */
#include "vlm4rec/cli.h"
int v4r_cmd_run(int argc, char **argv) { (void)argc; (void)argv; return 2; }
