/* Asynchronous PostgreSQL for the core and modules.
 *
 * Queries are parameterized ($1, $2...) and prepared automatically on first
 * use per connection; parameters and results are text. Nothing blocks the
 * main loop; callbacks run in a later main-loop iteration. Each call is its
 * own implicit transaction (one pipeline sync per call); use
 * magpie_pg_transaction_async() for several statements that must commit
 * together.
 */
#pragma once

#include <gio/gio.h>
#include <magpie/version.h>

G_BEGIN_DECLS

#define MAGPIE_PG_ERROR (magpie_pg_error_quark())
MAGPIE_API GQuark magpie_pg_error_quark(void);
typedef enum {
	MAGPIE_PG_ERROR_UNAVAILABLE, /* no connection to the database right now */
	MAGPIE_PG_ERROR_QUERY,       /* the server rejected the statement */
	MAGPIE_PG_ERROR_CONSTRAINT,  /* SQLSTATE class 23: unique, foreign key... */
	MAGPIE_PG_ERROR_CANCELLED,
} MagpiePgError;

typedef struct _MagpiePgResult MagpiePgResult;

/* @params: @n_params strings (NULL = SQL NULL). Copied: the caller may free
 * them on return. */
MAGPIE_API void magpie_pg_query_async(const char *sql, guint n_params, const char *const *params,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data);
/* (transfer full) the result of the last statement, or NULL + @error. */
MAGPIE_API MagpiePgResult *magpie_pg_query_finish(GAsyncResult *result, GError **error);

/* Several statements in one transaction (one sync group); the result is the
 * last statement's. @sqls NULL-terminated; @params[i] has @n_params[i]
 * values. */
MAGPIE_API void magpie_pg_transaction_async(const char *const *sqls, const guint *n_params,
                                            const char *const *const *params,
                                            GCancellable *cancellable, GAsyncReadyCallback callback,
                                            gpointer user_data);
MAGPIE_API MagpiePgResult *magpie_pg_transaction_finish(GAsyncResult *result, GError **error);

MAGPIE_API void magpie_pg_result_free(MagpiePgResult *result);
MAGPIE_API int magpie_pg_result_rows(const MagpiePgResult *result);
MAGPIE_API int magpie_pg_result_columns(const MagpiePgResult *result);
/* (transfer none) NULL for SQL NULL. */
MAGPIE_API const char *magpie_pg_result_get(const MagpiePgResult *result, int row, int column);
/* Rows affected by INSERT/UPDATE/DELETE. */
MAGPIE_API gint64 magpie_pg_result_affected(const MagpiePgResult *result);

/* LISTEN on @channel; @callback(channel, payload, user_data) runs in the main
 * loop for each NOTIFY. Survives reconnects. Returns an id for unlisten. */
typedef void (*MagpiePgNotifyFunc)(const char *channel, const char *payload, gpointer user_data);
MAGPIE_API guint magpie_pg_listen(const char *channel, MagpiePgNotifyFunc callback,
                                  gpointer user_data, GDestroyNotify destroy);
MAGPIE_API void magpie_pg_unlisten(guint id);

/* Is at least one connection up? */
MAGPIE_API gboolean magpie_pg_is_available(void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpiePgResult, magpie_pg_result_free)

G_END_DECLS
