/* http_conf.c: what `cdcvec serve` and `cdcvec sync` share about their HTTP port: the limits'
 * options (CV_CLI_HTTP_PROPS in cli.h) and the API key, read from the environment or a file,
 * never from argv. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cv_cli_http_opts(const cv_cli_http *c, cv_http_opts *o) {
    *o = (cv_http_opts){.max_body_bytes = c->max_body_bytes,
                        .body_memory_bytes = c->body_memory_bytes,
                        .max_parses = (int)c->max_parses,
                        .max_connections = (int)c->max_connections,
                        .max_per_client = (int)c->max_per_client,
                        .header_timeout_s = (int)c->header_timeout_s,
                        .body_timeout_s = (int)c->body_timeout_s,
                        .idle_timeout_s = (int)c->idle_timeout_s,
                        .max_header_bytes = (int)c->max_header_bytes,
                        .threads = (int)c->threads,
                        .metrics_auth = (int)c->metrics_auth,
                        .min_body_rate = c->min_body_rate,
                        .trusted_proxies = c->trusted_proxies,
                        .allowed_hosts = c->allowed_hosts,
                        .cors_origins = c->cors_origins};
}

int cv_cli_api_key(const char *cmd, char **key) {
    const char *env = getenv("CDCVEC_API_KEY"), *file = getenv("CDCVEC_API_KEY_FILE");
    *key = NULL;
    if (env && *env && file && *file) {
        fprintf(stderr, "cdcvec %s: CDCVEC_API_KEY and CDCVEC_API_KEY_FILE are both set; keep one\n", cmd);
        return -1;
    }
    if (env && *env) {
        *key = strdup(env);
        return *key ? 0 : -1;
    }
    if (!file || !*file) return 0;
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "cdcvec %s: CDCVEC_API_KEY_FILE=%s: %s\n", cmd, file, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    if (n <= 0) {
        free(line);
        fprintf(stderr, "cdcvec %s: CDCVEC_API_KEY_FILE=%s: the first line is empty; write the key there\n",
                cmd, file);
        return -1;
    }
    *key = line;
    return 0;
}

void cv_cli_api_key_markdown(FILE *f) {
    fputs(
        "| (environment only) | `CDCVEC_API_KEY` | string | unset | | API key: when set, every endpoint that "
        "embeds or searches needs `Authorization: Bearer <key>` (docs/CONFIG.md, Authentication) |\n"
        "| (environment only) | `CDCVEC_API_KEY_FILE` | string | unset | | or a file whose first line is the "
        "API key |\n",
        f);
}
