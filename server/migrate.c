/* Schema migrations: sql/<owner>/NNNN_name.sql, applied in order at start.
 *
 * Synchronous libpq on purpose: this runs once, before the main loop. Each
 * file runs in its own transaction together with its schema_migrations row,
 * so a failing file leaves nothing behind. A session advisory lock
 * serializes daemons that start at the same time.
 */
#include "pg-pool.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

/* "Magpie" in ASCII, then 1: the advisory lock key for migrations. */
#define MIGRATE_LOCK_KEY "92767268792065"

typedef struct {
	guint version;
	char *name; /* without the number and ".sql" */
	char *path;
} Migration;

static void
migration_free(gpointer data)
{
	Migration *m = data;

	g_free(m->name);
	g_free(m->path);
	g_free(m);
}

static gint
migration_compare(gconstpointer a, gconstpointer b)
{
	const Migration *ma = *(const Migration *const *) a;
	const Migration *mb = *(const Migration *const *) b;

	return (ma->version > mb->version) - (ma->version < mb->version);
}

static char *
tidy(const char *message)
{
	char *s = g_strdup(message ? message : "unknown error");

	g_strstrip(s);
	for (char *p = s; *p; p++) {
		if (*p == '\n')
			*p = ' ';
	}
	return s;
}

/* Run a statement; on failure set @error with @what and the server's
 * message. Returns the result (transfer full) or NULL. */
static PGresult *
run(PGconn *pg, const char *sql, int n_params, const char *const *params, const char *what,
    GError **error)
{
	PGresult *res = PQexecParams(pg, sql, n_params, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	{
		g_autofree char *msg = tidy(PQresultErrorMessage(res));

		g_set_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY, "%s: %s", what, msg);
	}
	PQclear(res);
	return NULL;
}

static gboolean
exec_ok(PGconn *pg, const char *sql, int n_params, const char *const *params, const char *what,
        GError **error)
{
	PGresult *res = run(pg, sql, n_params, params, what, error);

	if (!res)
		return FALSE;
	PQclear(res);
	return TRUE;
}

/* Only NNNN_name.sql: digits, an underscore, a name. */
static gboolean
parse_file_name(const char *file, guint *version_out, char **name_out)
{
	const char *p = file;
	guint64 v = 0;
	gsize len = strlen(file);

	if (!g_str_has_suffix(file, ".sql"))
		return FALSE;
	while (g_ascii_isdigit(*p)) {
		v = v * 10 + (guint64) (*p - '0');
		if (v > G_MAXINT)
			return FALSE;
		p++;
	}
	if (p == file || *p != '_' || (gsize) (p + 1 - file) >= len - 4)
		return FALSE;
	*version_out = (guint) v;
	*name_out = g_strndup(p + 1, len - 4 - (gsize) (p + 1 - file));
	return TRUE;
}

static GPtrArray *
list_migrations(const char *dir, GError **error)
{
	g_autoptr(GDir) d = NULL;
	g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(migration_free);
	const char *file;

	d = g_dir_open(dir, 0, error);
	if (!d)
		return NULL;
	while ((file = g_dir_read_name(d))) {
		Migration *m;
		guint version;
		char *name;

		if (!parse_file_name(file, &version, &name)) {
			if (g_str_has_suffix(file, ".sql"))
				g_message("ignoring %s/%s: not named NNNN_name.sql", dir, file);
			continue;
		}
		m = g_new0(Migration, 1);
		m->version = version;
		m->name = name;
		m->path = g_build_filename(dir, file, NULL);
		g_ptr_array_add(list, m);
	}
	g_ptr_array_sort(list, migration_compare);
	for (guint i = 1; i < list->len; i++) {
		Migration *a = g_ptr_array_index(list, i - 1);
		Migration *b = g_ptr_array_index(list, i);

		if (a->version == b->version) {
			g_set_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY,
			            "migrations %s and %s have the same number", a->path, b->path);
			return NULL;
		}
	}
	return g_steal_pointer(&list);
}

static GHashTable *
applied_versions(PGconn *pg, const char *owner, GError **error)
{
	const char *params[] = { owner };
	PGresult *res = run(pg, "SELECT version FROM schema_migrations WHERE owner = $1", 1, params,
	                    "reading schema_migrations", error);
	GHashTable *set;

	if (!res)
		return NULL;
	set = g_hash_table_new(g_direct_hash, g_direct_equal);
	for (int i = 0; i < PQntuples(res); i++) {
		guint v = (guint) strtoul(PQgetvalue(res, i, 0), NULL, 10);

		g_hash_table_add(set, GUINT_TO_POINTER(v));
	}
	PQclear(res);
	return set;
}

/* The line of the @position-th character (1-based, as PostgreSQL counts). */
static guint
line_of(const char *sql, gulong position)
{
	gboolean utf8 = g_utf8_validate(sql, -1, NULL);
	const char *p = sql;
	guint line = 1;

	for (gulong i = 1; i < position && *p; i++) {
		if (*p == '\n')
			line++;
		p = utf8 ? g_utf8_next_char(p) : p + 1;
	}
	return line;
}

static gboolean
apply_one(PGconn *pg, const char *owner, const Migration *m, GError **error)
{
	g_autofree char *sql = NULL;
	g_autofree char *version = g_strdup_printf("%u", m->version);
	const char *params[] = { owner, version, m->name };
	g_autoptr(GError) local = NULL;
	PGresult *res;
	ExecStatusType st;

	if (!g_file_get_contents(m->path, &sql, NULL, &local)) {
		g_set_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY, "migration %s: %s",
		            m->path, local->message);
		return FALSE;
	}
	if (!exec_ok(pg, "BEGIN", 0, NULL, "BEGIN", error))
		return FALSE;
	/* The simple protocol, so a file may hold several statements. */
	res = PQexec(pg, sql);
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
		const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		const char *position = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
		g_autofree char *msg = tidy(primary ? primary : PQresultErrorMessage(res));

		if (position)
			g_set_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY,
			            "migration %s failed at line %u: %s", m->path,
			            line_of(sql, strtoul(position, NULL, 10)), msg);
		else
			g_set_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY,
			            "migration %s failed: %s", m->path, msg);
		PQclear(res);
		PQclear(PQexec(pg, "ROLLBACK"));
		return FALSE;
	}
	PQclear(res);
	if (PQtransactionStatus(pg) != PQTRANS_INTRANS) {
		g_set_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY,
		            "migration %s ended the transaction itself (COMMIT/ROLLBACK in the "
		            "file); it was not recorded",
		            m->path);
		PQclear(PQexec(pg, "ROLLBACK"));
		return FALSE;
	}
	if (!exec_ok(pg, "INSERT INTO schema_migrations (owner, version, name) VALUES ($1, $2, $3)",
	             3, params, "recording the migration", error) ||
	    !exec_ok(pg, "COMMIT", 0, NULL, "COMMIT", error)) {
		g_prefix_error(error, "migration %s: ", m->path);
		PQclear(PQexec(pg, "ROLLBACK"));
		return FALSE;
	}
	g_message("applied migration %s/%04u_%s", owner, m->version, m->name);
	return TRUE;
}

static gboolean
migrate_owner(PGconn *pg, const char *sql_dir, const char *owner, GError **error)
{
	g_autofree char *dir = g_build_filename(sql_dir, owner, NULL);
	g_autoptr(GPtrArray) list = NULL;
	g_autoptr(GHashTable) applied = NULL;

	if (!g_file_test(dir, G_FILE_TEST_IS_DIR))
		return TRUE; /* an owner without SQL */
	list = list_migrations(dir, error);
	if (!list)
		return FALSE;
	applied = applied_versions(pg, owner, error);
	if (!applied)
		return FALSE;
	for (guint i = 0; i < list->len; i++) {
		Migration *m = g_ptr_array_index(list, i);

		if (g_hash_table_contains(applied, GUINT_TO_POINTER(m->version))) {
			g_debug("migration %s/%04u_%s already applied", owner, m->version, m->name);
			continue;
		}
		if (!apply_one(pg, owner, m, error))
			return FALSE;
	}
	return TRUE;
}

static void
quiet_notice(void *arg, const char *message)
{
	g_debug("migrations: %s", message);
}

static gint
compare_strings(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* "core" first, then @owners in order, or every other subdirectory. */
static GPtrArray *
owner_list(const char *sql_dir, const char *const *owners, GError **error)
{
	g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(g_free);

	g_ptr_array_add(list, g_strdup("core"));
	if (owners) {
		for (guint i = 0; owners[i]; i++) {
			if (!g_ptr_array_find_with_equal_func(list, owners[i], g_str_equal, NULL))
				g_ptr_array_add(list, g_strdup(owners[i]));
		}
	} else {
		g_autoptr(GDir) d = g_dir_open(sql_dir, 0, error);
		g_autoptr(GPtrArray) others = g_ptr_array_new_with_free_func(g_free);
		const char *name;

		if (!d) {
			g_prefix_error(error, "migrations: ");
			return NULL;
		}
		while ((name = g_dir_read_name(d))) {
			g_autofree char *path = g_build_filename(sql_dir, name, NULL);

			if (strcmp(name, "core") != 0 && name[0] != '.' &&
			    g_file_test(path, G_FILE_TEST_IS_DIR))
				g_ptr_array_add(others, g_strdup(name));
		}
		g_ptr_array_sort(others, compare_strings);
		for (guint i = 0; i < others->len; i++)
			g_ptr_array_add(list, g_strdup(g_ptr_array_index(others, i)));
	}
	return g_steal_pointer(&list);
}

gboolean
magpie_pg_migrate(const char *conninfo, const char *sql_dir, const char *const *owners,
                  GError **error)
{
	g_autoptr(GPtrArray) list = NULL;
	PGconn *pg;
	gboolean ok = TRUE;

	g_return_val_if_fail(conninfo != NULL, FALSE);
	g_return_val_if_fail(sql_dir != NULL, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

	list = owner_list(sql_dir, owners, error);
	if (!list)
		return FALSE;

	pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK) {
		g_autofree char *msg = tidy(PQerrorMessage(pg));

		g_set_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_UNAVAILABLE,
		            "cannot connect to the database for migrations: %s", msg);
		PQfinish(pg);
		return FALSE;
	}
	/* Keep the server's notices (e.g. "relation already exists, skipping")
	 * out of stderr. */
	PQsetNoticeProcessor(pg, quiet_notice, NULL);

	/* Held for the session; released by PQfinish on every path. */
	if (!exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL,
	             "taking the migration lock", error) ||
	    !exec_ok(pg,
	             "CREATE TABLE IF NOT EXISTS schema_migrations ("
	             " owner text NOT NULL,"
	             " version integer NOT NULL,"
	             " name text NOT NULL,"
	             " applied_at timestamptz NOT NULL DEFAULT now(),"
	             " PRIMARY KEY (owner, version))",
	             0, NULL, "creating schema_migrations", error)) {
		PQfinish(pg);
		return FALSE;
	}
	for (guint i = 0; ok && i < list->len; i++)
		ok = migrate_owner(pg, sql_dir, g_ptr_array_index(list, i), error);
	PQfinish(pg);
	return ok;
}
