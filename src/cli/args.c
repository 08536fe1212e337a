/* The conventions every tern subcommand follows, see args.h. */
#include "cli/args.h"

#include <stdio.h>
#include <string.h>

#include "cli/npy.h"

int cli_fail(tern_status *st)
{
    fflush(stdout);
    fprintf(stderr, "tern: error: %s\n", tern_status_message(st));
    tern_status_free(st);
    return 1;
}

void cli_bad_argument(const char *s, const char *const *valued, size_t n)
{
    bool wants = false;
    for (size_t k = 0; k < n; k++) wants |= !strcmp(s, valued[k]);
    if (wants)
        fprintf(stderr, "tern: error: %s wants a value\n", s);
    else
        fprintf(stderr, "tern: error: unexpected argument '%s'\n", s);
}

int cli_read_input(char *spec, const char **name, tern_tensor **t)
{
    char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) {
        fprintf(stderr, "tern: error: --input wants NAME=FILE.npy, got '%s'\n", spec);
        return 2;
    }
    *eq = 0;
    *name = spec;
    tern_status *st = npy_read(eq + 1, t);
    if (st) return cli_fail(tern_error_wrap(st, "input '%s'", spec));
    return 0;
}

tern_status *cli_curl_result(CURLcode rc, const char *url, const char *errbuf, bool no_memory)
{
    if (no_memory) return tern_error(TERN_ERR_NO_MEMORY, "%s: response too large for memory", url);
    if (rc != CURLE_OK)
        return tern_error(TERN_ERR_IO, "%s: %s", url, *errbuf ? errbuf : curl_easy_strerror(rc));
    return NULL;
}
