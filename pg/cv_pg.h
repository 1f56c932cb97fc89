/* cv_pg.h: PostgreSQL facts shared by the source (ingest/) and the store (sink/): which
 * failures are worth retrying and what the user should do about the others, libpq messages
 * as one log line, quoted identifiers, and the notice processor.
 *
 * Classification happens once, where a libpq failure enters cdcvec: the caller logs one line
 * with kind=, retriable= and fix= and turns the fault into a cv_err (retriable: back off and
 * call again; permanent: stop and print the fix). Library: cv_pgcommon (links libpq). */
#ifndef CV_PG_H
#define CV_PG_H

#include <libpq-fe.h>

#include "../common/cv_buf.h"
#include "../common/cv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A failure as libpq reports it, classified (cv_fault, cv_err.h): the classifiers below fill it. */
typedef cv_fault cv_pg_fault;

/* Classifies a failed statement: by the connection's status first (a lost connection is
 * retriable whatever the result says), then by SQLSTATE (PG_DIAG_SQLSTATE; none: retriable).
 * c and r may be NULL (PQexec returns NULL when out of memory or unable to send); neither is
 * kept. The primary message only chooses between fix sentences and kinds within one SQLSTATE
 * (e.g. "must be owner of table" vs "permission denied"): retriability never depends on
 * message text, which the server may translate. A unique violation (23505) on an index of the
 * system catalogs (constraint pg_*: two sessions ran the same CREATE ... IF NOT EXISTS at once)
 * is a retriable conflict: the retry finds the object. */
void cv_pg_classify_result(const PGconn *c, const PGresult *r, cv_pg_fault *f);

/* The SQLSTATE part of cv_pg_classify_result: sqlstate (5 characters, or NULL when the
 * server sent none) and the primary message (PG_DIAG_MESSAGE_PRIMARY, may be NULL). */
void cv_pg_classify_sqlstate(const char *sqlstate, const char *primary, cv_pg_fault *f);

/* Classifies a failed PQconnectdb/PQconnectStart (status CONNECTION_BAD; c may be NULL, which
 * libpq returns when out of memory). libpq keeps no SQLSTATE for a failed connection, so this
 * reads PQerrorMessage(c) with cv_pg_classify_message. */
void cv_pg_classify_connect(const PGconn *c, cv_pg_fault *f);

/* The text part of cv_pg_classify_connect: the whole libpq message (all hosts tried, in
 * English: libpq's and the server's translations are not recognised and fall to
 * "retriable"). NULL or unrecognised: retriable, kind "connection". */
void cv_pg_classify_message(const char *libpq_message, cv_pg_fault *f);

/* Appends the one-line form of a libpq (or server) message for key=value logs: trailing
 * newlines and spaces removed, each inner line break (with the indentation after it) becomes
 * "; ", other control characters become ' ', double quotes become single quotes. NULL reads as
 * "". Returns a pointer to the appended text inside out (valid until out is written again;
 * equal to out->p when out was empty), or "" when out ran out of memory. out stays the
 * caller's. */
const char *cv_pg_errtext(const char *libpq_message, cv_buf *out);

/* Appends name as a double-quoted SQL identifier ("a""b"), whatever its length. */
void cv_pg_ident(cv_buf *out, const char *name);

/* Appends one element of a PostgreSQL array literal ("value" with \ and " escaped), preceded
 * by a comma unless first. */
void cv_pg_array_elem(cv_buf *out, const char *value, int first);

/* libpq notice processor (PQsetNoticeProcessor(c, cv_pg_notice, NULL)): logs the notice at
 * debug level as event=postgres_notice message="...". arg is unused. Same signature and
 * behaviour as the copy in sink/pgvector.c, which must be deleted in the commit that links
 * cv_pgcommon into cv_sink (both copies in one link are a multiple definition). */
void cv_pg_notice(void *arg, const char *message);

/* Logs one classified failure at error level: `event=EVENT [step=STEP] [sqlstate=S] kind=K
 * retriable=R error="one-line libpq message" [fix="..."]`. step, sqlstate may be NULL. */
void cv_pg_log_fault(const char *event, const char *step, const char *sqlstate, const cv_pg_fault *f,
                     const char *libpq_message);

/* The one-line message of the last cv_pg_log_fault on this thread ("" after _clear): what a
 * retry line says happened. */
const char *cv_pg_last_message(void);
void cv_pg_last_message_clear(void);

/* Connects to conninfo (a libpq connection string or URI) with the session settings the
 * value conversions rely on (DateStyle ISO, TimeZone UTC, IntervalStyle postgres,
 * extra_float_digits 1, bytea_output hex, client_encoding UTF8: they override the same settings
 * given in conninfo's options; a SQL_ASCII database: client_encoding SQL_ASCII, values as stored,
 * not checked, so one that is not UTF-8 fails its row alone, where it is read) and application_name "cdcvec
 * <role>" unless conninfo names one. replication: a logical replication connection. Never NULL (check
 * PQstatus). */
PGconn *cv_pg_connect(const char *conninfo, int replication, const char *role);

#ifdef __cplusplus
}
#endif

#endif
