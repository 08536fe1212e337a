/* tern serve (being written). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tern: error: serve is not implemented yet\n");
    return 1;
}
