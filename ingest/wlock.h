/* wlock.h: one writer per store table (ingest/wlock.c). */
#ifndef CV_WLOCK_H
#define CV_WLOCK_H

#include <libpq-fe.h>

#include "../common/cv_buf.h"
#include "../common/cv_err.h"
#include "../pg/cv_pg.h"
#include "../sink/sink.h"

typedef struct cv_wlock {
    PGconn *db; /* the connection holding the lock; NULL: none held */
    int own;    /* db is the lock's own connection (closed by cv_wlock_release) */
} cv_wlock;

/* Where the writer lock of table t in store `sink` (cv_sink_open's string) lives, and its key:
 * pgvector: the sink database (source when sink is empty or NULL), key "cdcvec writer pgvector
 * cdcvec.<sink table>"; Qdrant / Upstash: the state database state_db (NULL or "": none: *home
 * NULL, there is no lock), key "cdcvec writer <store id> <schema>.<table>". key appended. */
void cv_wlock_place(const char *sink, const char *source, const char *state_db, const cv_sink_table *t,
                    const char **home, cv_buf *key);

/* Takes the lock named key in database home, on reuse (a connection to home that the caller
 * keeps) or, reuse NULL, on a connection of its own named "cdcvec <role>". CV_OK: held.
 * CV_ERR_BUSY: another process holds it; holder gets "pid=N application=... client=...
 * since=..." (what pg_stat_activity shows of it). Otherwise the failure is logged, classified
 * into *f, and CV_ERR_TIMEOUT (retriable) or CV_ERR_UNSUPPORTED returned. */
cv_err cv_wlock_take(cv_wlock *l, const char *home, PGconn *reuse, const char *key, const char *role,
                     cv_buf *holder, cv_pg_fault *f);

/* 0 when the lock's own connection was closed by the server (the lock is gone with it); a
 * reused connection is the caller's to watch (1). Never blocks. */
int cv_wlock_alive(cv_wlock *l);

/* Releases the lock (closing its own connection); l is then empty. */
void cv_wlock_release(cv_wlock *l);

#endif
