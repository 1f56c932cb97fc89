/* cv_names.h: names cdcvec gives to PostgreSQL objects for a source table schema.table.
 *
 * PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1), so two long table names may
 * silently share one object; these names never exceed CV_NAME_MAX and carry a hash of the exact
 * source names whenever a readable part alone could collide. The hash is the first 4 bytes of
 * SHA-256 over schema '\0' table, as 8 lowercase hex digits. Library: cv_pgcommon.
 *
 * Every function appends the name to out (normally empty) and writes nothing else; out stays
 * the caller's (cv_buf_free). */
#ifndef CV_NAMES_H
#define CV_NAMES_H

#include "../common/cv_buf.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CV_NAME_MAX 63 /* bytes in a PostgreSQL identifier */

/* Replication slot and publication name: "cdcvec_" + readable part + "_" + hash. The readable
 * part is schema "_" table lowercased, every byte outside [a-z0-9_] replaced by '_', cut to
 * fit. Only [a-z0-9_] (what slot names allow), at most CV_NAME_MAX bytes, always hashed: two
 * tables differing only in case or punctuation ("Notes"/"notes", "a_b"."c"/"a"."b_c") differ. */
void cv_name_slot(const char *schema, const char *table, cv_buf *out);
/* The same for `cdcvec capture` (its own slot: a sync and a capture of one table may run side
 * by side): "cdcvec_capture_" + readable part (cut to 39 bytes) + "_" + hash. */
void cv_name_capture_slot(const char *schema, const char *table, cv_buf *out);

/* The default slot (and publication) of `cdcvec sync` (capture 1: of `cdcvec capture`) since
 * slots became unique per database and store: slots are cluster-wide, so the same schema.table
 * in two databases, or one table mirrored into two stores, must not share one. "cdcvec_" (or
 * "cdcvec_capture_") + readable part (database "_" schema "_" table, mapped as above, cut to
 * fit) + "_" + hash of database '\0' schema '\0' table '\0' store; store: what identifies
 * the destination (sink/sink.h cv_sink_store_id; capture: its topic URL). cv_name_slot and
 * cv_name_capture_slot are the names of earlier versions, which a sync adopts (ingest/session.c). */
void cv_name_slot_in(const char *database, const char *schema, const char *table, const char *store,
                     int capture, cv_buf *out);

/* Name (unquoted) of the pgvector table in schema cdcvec: schema "_" table byte for byte when
 * that fits in CV_NAME_MAX bytes (the name earlier versions used, so existing installations
 * keep their table); otherwise its first bytes (never splitting a UTF-8 character) + "_" +
 * hash, at most CV_NAME_MAX bytes. */
void cv_name_sink_table(const char *schema, const char *table, cv_buf *out);

/* Index name sink_table + suffix (e.g. "_embedding_hnsw") when it fits in CV_NAME_MAX bytes;
 * otherwise sink_table cut (UTF-8 safe) so that it + suffix + "_" + hash fits, the hash being
 * over sink_table '\0' suffix (a suffix longer than 40 bytes is cut too). */
void cv_name_index(const char *sink_table, const char *suffix, cv_buf *out);

#ifdef __cplusplus
}
#endif

#endif
