/* cmd_wait.c: cdcvec wait --lsn X/Y: blocks until a running `cdcvec sync --http` has made every
 * change up to that LSN searchable (its GET /wait; ingest/wait.c). It asks the sync process, not
 * cdcvec.state: the state table moves only when a change of the table is applied, while the
 * process also knows that the stream passed transactions that did not touch the table.
 * Exit 0: covered; 1: timed out or the sync could not be asked; 2: bad options. */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_conf.h"
#include "cli.h"

typedef struct {
    const char *http, *lsn;
    long timeout_ms;
} wait_conf;

#define F(x) offsetof(wait_conf, x)
static const cv_conf_prop PROPS[] = {
    {"http", "CDCVEC_SYNC_HTTP", CV_CONF_STR, "127.0.0.1:9464", 0, 0, F(http),
     "host:port of the running cdcvec sync --http (the API key, when it has one, from CDCVEC_API_KEY or "
     "CDCVEC_API_KEY_FILE)"},
    {"lsn", NULL, CV_CONF_STR, "", 0, 0, F(lsn),
     "the position to wait for (required): SELECT pg_current_wal_insert_lsn() on the connection that "
     "committed, after the commit"},
    {"timeout-ms", NULL, CV_CONF_INT, "10000", 0, 60000, F(timeout_ms),
     "give up after this many milliseconds (exit 1, the answer's applied_lsn says how far the index is)"},
};
#undef F
#define NPROPS ((int)(sizeof PROPS / sizeof PROPS[0]))

/* libcurl's write callback: appends to a cv_buf. */
static size_t on_body(char *p, size_t sz, size_t n, void *arg) {
    cv_buf_put(arg, p, sz * n);
    return sz * n;
}

int cv_cmd_wait(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--config-markdown") == 0) {
        cv_conf_markdown(stdout, PROPS, NPROPS);
        return 0;
    }
    wait_conf c;
    int rc = cv_conf_parse(PROPS, NPROPS, &c, argc, argv,
                           "usage: cdcvec wait --lsn X/Y [--timeout-ms N] [--http HOST:PORT]\n\n"
                           "Waits until a running cdcvec sync --http has made every change up to the LSN "
                           "searchable.\nExit 0: covered; 1: timed out or unreachable.");
    if (rc) return rc == 1 ? 0 : 2;
    if (!*c.lsn) {
        fprintf(stderr, "cdcvec wait: --lsn is required, e.g. --lsn \"$(psql -qAtc 'SELECT "
                        "pg_current_wal_insert_lsn()')\"\n");
        return 2;
    }
    char *key = NULL;
    if (cv_cli_api_key("wait", &key)) return 2;
    CURL *h = curl_easy_init();
    cv_buf url = {0}, body = {0}, auth = {0};
    char *lsn = curl_easy_escape(h, c.lsn, 0);
    cv_buf_printf(&url, "http://%s/wait?lsn=%s&timeout_ms=%ld", c.http, lsn ? lsn : "", c.timeout_ms);
    curl_free(lsn);
    struct curl_slist *hdr = NULL;
    if (key) {
        cv_buf_printf(&auth, "Authorization: Bearer %s", key);
        hdr = curl_slist_append(hdr, auth.p);
    }
    curl_easy_setopt(h, CURLOPT_URL, url.p);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c.timeout_ms + 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK)
        fprintf(stderr,
                "cdcvec wait: cannot ask the sync at %s: %s (is cdcvec sync running with --http %s? the "
                "sync of docker/compose.yaml answers at 127.0.0.1:9465: pass --http 127.0.0.1:9465 or set "
                "CDCVEC_SYNC_HTTP)\n",
                c.http, curl_easy_strerror(cc), c.http);
    else if (body.p)
        printf("%s\n", body.p);
    rc = cc == CURLE_OK && status == 200 ? 0 : cc == CURLE_OK && status == 400 ? 2 : 1;
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    if (auth.p) memset(auth.p, 0, auth.len);
    free(url.p), free(body.p), free(auth.p), free(key);
    return rc;
}
