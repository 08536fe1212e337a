/* tern infer: a KServe v2 client over libcurl (implementation to come). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_infer(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tern: error: infer is not implemented yet\n");
    return 1;
}
