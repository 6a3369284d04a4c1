/* The stand-in server's fault kinds: names for options, logs and docs. */
#include <string.h>

#include "vlm4rec/ground.h"

static const char *const fault_names[V4R_NFAULTS] = {"429", "500", "400", "malformed", "empty", "drip", "drop"};

const char *v4r_fault_name(int fault)
{
    return fault >= 0 && fault < V4R_NFAULTS ? fault_names[fault] : "unknown";
}

int v4r_fault_parse(const char *name)
{
    for (int i = 0; name && i < V4R_NFAULTS; i++)
        if (!strcmp(name, fault_names[i]))
            return i;
    return -1;
}
