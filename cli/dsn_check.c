/* dsn_check.c: a --source, --sink or --state that cannot name a database or store is refused
 * before anything starts (exit 2): libpq would read a malformed string as a database name and
 * cdcvec would retry a connection to the default socket for ever. */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define PG_FORMS                                                                                             \
    "postgres://user@host:5432/db (or postgresql://), key=value pairs such as 'host=db.example "             \
    "dbname=shop', or a database name alone"

int cv_cli_check_pg(const char *cmd, const char *opt, const char *v) {
    /* (libpq reads a string with no '=' and no postgres:// prefix as a database name) */
    if (!v || !*v) return 0;
    const char *sep = strstr(v, "://");
    if (sep && strncmp(v, "postgres://", 11) && strncmp(v, "postgresql://", 13) &&
        !memchr(v, '=', (size_t)(sep - v))) {
        fprintf(stderr,
                "cdcvec %s: --%s: unknown scheme '%.*s://': expected a PostgreSQL connection string: %s\n",
                cmd, opt, (int)(sep - v), v, PG_FORMS);
        return -1;
    }
    if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(v))
        return 0; /* a database name alone: libpq takes it as dbname */
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(v, &err);
    if (!o) {
        size_t n = err ? strlen(err) : 0;
        while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
            n--;
        fprintf(stderr, "cdcvec %s: --%s: not a PostgreSQL connection string (%.*s): expected %s\n", cmd, opt,
                (int)n, err ? err : "out of memory", PG_FORMS);
        PQfreemem(err);
        return -1;
    }
    PQconninfoFree(o);
    return 0;
}

int cv_cli_check_sink(const char *cmd, const char *v) {
    if (!v || !*v) return 0;
    if (!strncmp(v, "qdrant://", 9) || !strncmp(v, "qdrants://", 10) || !strncmp(v, "upstash://", 10))
        return 0;
    const char *sep = strstr(v, "://");
    if (sep && strncmp(v, "postgres://", 11) && strncmp(v, "postgresql://", 13) &&
        !memchr(v, '=', (size_t)(sep - v))) {
        fprintf(
            stderr,
            "cdcvec %s: --sink: unknown scheme '%.*s://': expected a PostgreSQL database with pgvector (%s; "
            "empty: the source database), qdrant://HOST:PORT/COLLECTION (qdrants:// for TLS) or upstash://\n",
            cmd, (int)(sep - v), v, PG_FORMS);
        return -1;
    }
    return cv_cli_check_pg(cmd, "sink", v);
}
