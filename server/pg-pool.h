/* The daemon side of include/magpie/pg.h: the connection pool. */
#pragma once

#include <magpie/pg.h>

G_BEGIN_DECLS

typedef struct {
	char *conninfo;         /* libpq conninfo; use host=/socket/dir or hostaddr= */
	guint pool_size;        /* connections for queries; default 2 (+1 for LISTEN) */
	guint query_timeout_ms; /* how long a query waits for a connection; default 5000 */
	guint reconnect_max_ms; /* back-off cap; default 10000 */
} MagpiePgSettings;

/* Apply migrations synchronously (start-up only, before the loop runs):
 * every sql/<owner>/NNNN_*.sql under @sql_dir not yet recorded in
 * schema_migrations(owner, version, name, applied_at), in order, each in
 * its own transaction. Owners: "core" first, then @owners in order (modules
 * enabled in config), or all subdirectories when @owners is NULL. */
gboolean magpie_pg_migrate(const char *conninfo, const char *sql_dir, const char *const *owners,
                           GError **error);

/* Start the pool (connections are made asynchronously, with back-off). */
void magpie_pg_start(const MagpiePgSettings *settings);
void magpie_pg_stop(void);

typedef struct {
	guint connections_up;
	guint64 queries;
	guint64 errors;
	guint queued;
} MagpiePgStats;
void magpie_pg_get_stats(MagpiePgStats *stats_out);

/* Installed by the module host (magpie_module_guard_callback): wraps a
 * callback that lives in a module so it is dropped if the module unloads
 * first. NULL (tests without modules): callbacks are used as given. Used by
 * every asynchronous API that takes a callback from modules. */
extern void (*magpie_async_callback_guard)(GAsyncReadyCallback *callback, gpointer *user_data);

G_END_DECLS
