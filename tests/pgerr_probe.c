/* pgerr_probe.c: drives the cv_pg classifier against a real server, for test_pgerr_live.sh.
 *   usage: pgerr_probe CONNINFO [SQL ...]
 * Connects, runs each statement in turn (replication commands too, on a replication=database
 * connection) and prints one line: "ok" (exit 0), or, for the first failure (exit 1),
 *   stage=connect|query step=N retriable=0|1 kind=K sqlstate=S fix="F" error="E"
 * where S and F are "-" when absent. */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>

#include "../pg/cv_pg.h"

static void report(const char *stage, int step, const cv_pg_fault *f, const char *state, const char *msg) {
    cv_buf b = {0};
    printf("stage=%s step=%d retriable=%d kind=%s sqlstate=%s fix=\"%s\" error=\"%s\"\n", stage, step,
           f->retriable, f->kind, state ? state : "-", f->fix ? f->fix : "-", cv_pg_errtext(msg, &b));
    cv_buf_free(&b);
}

static void quiet(void *arg, const char *message) { (void)arg, (void)message; }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: pgerr_probe CONNINFO [SQL ...]\n");
        return 2;
    }
    cv_pg_fault f;
    PGconn *c = PQconnectdb(argv[1]);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        cv_pg_classify_connect(c, &f);
        report("connect", 0, &f, NULL, c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return 1;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    for (int i = 2; i < argc; i++) {
        PGresult *r = PQexec(c, argv[i]);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_BOTH ||
            st == PGRES_COPY_OUT) {
            PQclear(r);
            if (st == PGRES_COPY_BOTH || st == PGRES_COPY_OUT) break; /* streaming started: done */
            continue;
        }
        cv_pg_classify_result(c, r, &f);
        report("query", i - 1, &f, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL,
               r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        return 1;
    }
    printf("ok\n");
    PQfinish(c);
    return 0;
}
