/* placeholder */
#include "vlm4rec/cli.h"
int v4r_cmd_demo(int argc, char **argv) { (void)argc; (void)argv; return 1; }
