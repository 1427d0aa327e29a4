/* Tests for server/pg.c and server/migrate.c against a real PostgreSQL.
 *
 * Environment (set by the test runner):
 *   MAGPIE_TEST_PGHOST      socket directory of a throwaway cluster
 *   MAGPIE_TEST_PGDATABASE  database to use (a fresh schema is made in it)
 *   MAGPIE_TEST_PGPORT, MAGPIE_TEST_PGUSER  optional (libpq's PGPORT/PGUSER
 *                           work too)
 *   MAGPIE_TEST_PGCTL_RESTART  optional shell command that restarts the
 *                           cluster (pg_ctl restart -m fast); enables the
 *                           outage test
 * Without MAGPIE_TEST_PGHOST every test is skipped.
 */
#include "pg-pool.h"

#include <glib/gstdio.h>
#include <libpq-fe.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *base_conninfo; /* without the search_path option */
static char *conninfo;      /* with search_path set to our schema */
static char *schema;

static gboolean
need_db(void)
{
	if (!conninfo) {
		g_test_skip("MAGPIE_TEST_PGHOST not set");
		return FALSE;
	}
	return TRUE;
}

/* ---- synchronous helpers (test side only) ---- */

static PGconn *
sync_connect(void)
{
	PGconn *pg = PQconnectdb(conninfo);

	g_assert_cmpint(PQstatus(pg), ==, CONNECTION_OK);
	return pg;
}

static char *
sync_value(const char *sql)
{
	PGconn *pg = sync_connect();
	PGresult *res = PQexec(pg, sql);
	char *value = NULL;

	g_assert_cmpint(PQresultStatus(res), ==, PGRES_TUPLES_OK);
	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		value = g_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(pg);
	return value;
}

static void
sync_exec(const char *sql)
{
	PGconn *pg = sync_connect();
	PGresult *res = PQexec(pg, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		g_error("%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(pg);
}

/* ---- async helpers ---- */

typedef struct {
	gboolean returned; /* the _async call has returned */
	gboolean done;
	MagpiePgResult *result;
	GError *error;
	gint64 finished_at;
} Wait;

static void
wait_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wait *w = user_data;

	/* Callbacks never run inside the call that started them. */
	g_assert_true(w->returned);
	g_assert_false(w->done);
	w->result = magpie_pg_query_finish(res, &w->error);
	g_assert_true((w->result == NULL) != (w->error == NULL));
	w->done = TRUE;
	w->finished_at = g_get_monotonic_time();
}

static void
wait_clear(Wait *w)
{
	g_clear_pointer(&w->result, magpie_pg_result_free);
	g_clear_error(&w->error);
	memset(w, 0, sizeof(*w));
}

static void
iterate_until(gboolean *flag, guint timeout_ms)
{
	gint64 end = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

	while (!*flag) {
		if (g_get_monotonic_time() > end)
			g_error("timed out after %u ms", timeout_ms);
		g_main_context_iteration(NULL, TRUE);
	}
}

static void
query(Wait *w, const char *sql, guint n_params, const char *const *params)
{
	memset(w, 0, sizeof(*w));
	magpie_pg_query_async(sql, n_params, params, NULL, wait_cb, w);
	w->returned = TRUE;
	iterate_until(&w->done, 30000);
}

static void
query_ok(Wait *w, const char *sql, guint n_params, const char *const *params)
{
	query(w, sql, n_params, params);
	g_assert_no_error(w->error);
}

static gboolean
timeout_flag_cb(gpointer user_data)
{
	*(gboolean *) user_data = TRUE;
	return G_SOURCE_REMOVE;
}

static void
sleep_in_loop(guint ms)
{
	gboolean fired = FALSE;

	g_timeout_add(ms, timeout_flag_cb, &fired);
	iterate_until(&fired, ms + 10000);
}

static void
pool_start(guint pool_size, guint query_timeout_ms)
{
	MagpiePgSettings settings = {
		.conninfo = conninfo,
		.pool_size = pool_size,
		.query_timeout_ms = query_timeout_ms,
		.reconnect_max_ms = 2000,
	};
	gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
	MagpiePgStats stats;

	magpie_pg_start(&settings);
	/* Wait for every query connection, so load spreads as in steady state. */
	for (;;) {
		magpie_pg_get_stats(&stats);
		if (stats.connections_up == pool_size)
			break;
		g_assert_cmpint(g_get_monotonic_time(), <, end);
		g_main_context_iteration(NULL, TRUE);
	}
	g_assert_true(magpie_pg_is_available());
}

static void
pool_stop(void)
{
	magpie_pg_stop();
	/* Let pending deliveries run. */
	while (g_main_context_iteration(NULL, FALSE))
		;
}

/* ---- migrations ---- */

static char *
write_migrations(const char *owner, const char *const *files)
{
	g_autoptr(GError) error = NULL;
	char *dir = g_dir_make_tmp("magpie-sql-XXXXXX", &error);
	g_autofree char *owner_dir = NULL;

	g_assert_no_error(error);
	owner_dir = g_build_filename(dir, owner, NULL);
	g_assert_cmpint(g_mkdir(owner_dir, 0700), ==, 0);
	for (guint i = 0; files[i]; i += 2) {
		g_autofree char *path = g_build_filename(owner_dir, files[i], NULL);

		g_file_set_contents(path, files[i + 1], -1, &error);
		g_assert_no_error(error);
	}
	return dir;
}

static void
remove_tree(const char *dir)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);

	g_assert_cmpint(system(cmd), ==, 0);
}

static void
test_migrate_apply_and_skip(void)
{
	static const char *const files[] = {
		"0002_second.sql",
		"INSERT INTO mig_a (v) VALUES ('two');",
		"0001_first.sql",
		"CREATE TABLE mig_a (v text); INSERT INTO mig_a VALUES ('one');",
		"0010_tenth.sql",
		"CREATE TABLE mig_b (x int);",
		"README",
		"not a migration",
		NULL,
	};
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = NULL;
	g_autofree char *count = NULL;
	g_autofree char *order = NULL;
	const char *owners[] = { "first", NULL };

	if (!need_db())
		return;
	dir = write_migrations("first", files);
	g_assert_true(magpie_pg_migrate(conninfo, dir, owners, &error));
	g_assert_no_error(error);
	order = sync_value("SELECT string_agg(v, ',') FROM mig_a");
	g_assert_cmpstr(order, ==, "one,two");
	count = sync_value("SELECT count(*) FROM schema_migrations WHERE owner = 'first'");
	g_assert_cmpstr(count, ==, "3");

	/* Second run: everything is recorded, nothing runs again (CREATE
	 * TABLE would fail, INSERT would duplicate). */
	g_assert_true(magpie_pg_migrate(conninfo, dir, NULL, &error));
	g_assert_no_error(error);
	g_free(order);
	order = sync_value("SELECT string_agg(v, ',') FROM mig_a");
	g_assert_cmpstr(order, ==, "one,two");
	g_free(count);
	count = sync_value(
	        "SELECT name FROM schema_migrations WHERE owner = 'first' AND version = 10");
	g_assert_cmpstr(count, ==, "tenth");
	remove_tree(dir);
}

static void
test_migrate_failure(void)
{
	static const char *const files[] = {
		"0001_ok.sql",
		"CREATE TABLE mig_ok (v int);",
		"0002_bad.sql",
		"CREATE TABLE mig_half (v int);\nINSERT INTO mig_nope VALUES (1);",
		"0003_after.sql",
		"CREATE TABLE mig_after (v int);",
		NULL,
	};
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = NULL;
	g_autofree char *half = NULL;
	g_autofree char *versions = NULL;
	const char *owners[] = { "failing", NULL };

	if (!need_db())
		return;
	dir = write_migrations("failing", files);
	g_assert_false(magpie_pg_migrate(conninfo, dir, owners, &error));
	g_assert_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY);
	g_test_message("error: %s", error->message);
	g_assert_nonnull(strstr(error->message, "0002_bad.sql failed at line 2"));
	g_assert_nonnull(strstr(error->message, "relation \"mig_nope\" does not exist"));

	half = sync_value("SELECT to_regclass('mig_half')::text");
	g_assert_null(half);
	g_free(half);
	half = sync_value("SELECT to_regclass('mig_after')::text");
	g_assert_null(half);
	versions = sync_value("SELECT string_agg(version::text, ',') FROM schema_migrations WHERE "
	                      "owner = 'failing'");
	g_assert_cmpstr(versions, ==, "1");

	/* A bad conninfo names the problem. */
	g_clear_error(&error);
	g_assert_false(magpie_pg_migrate("host=/nonexistent-magpie-dir", dir, owners, &error));
	g_assert_error(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_UNAVAILABLE);
	remove_tree(dir);
}

typedef struct {
	const char *dir;
	gboolean ok;
	char *message;
} MigrateThread;

static gpointer
migrate_thread(gpointer data)
{
	MigrateThread *t = data;
	const char *owners[] = { "conc", NULL };
	GError *error = NULL;

	t->ok = magpie_pg_migrate(conninfo, t->dir, owners, &error);
	if (error)
		t->message = g_strdup(error->message);
	g_clear_error(&error);
	return NULL;
}

static void
test_migrate_concurrent(void)
{
	static const char *const files[] = {
		"0001_slow.sql",
		"CREATE TABLE mig_conc (v int); SELECT pg_sleep(0.3);",
		"0002_more.sql",
		"INSERT INTO mig_conc VALUES (1);",
		NULL,
	};
	g_autofree char *dir = NULL;
	g_autofree char *rows = NULL;
	MigrateThread t[2] = { 0 };
	GThread *th[2];

	if (!need_db())
		return;
	dir = write_migrations("conc", files);
	for (int i = 0; i < 2; i++) {
		t[i].dir = dir;
		th[i] = g_thread_new("migrate", migrate_thread, &t[i]);
	}
	for (int i = 0; i < 2; i++) {
		g_thread_join(th[i]);
		g_assert_cmpstr(t[i].message, ==, NULL);
		g_assert_true(t[i].ok);
	}
	rows = sync_value("SELECT count(*) FROM mig_conc");
	g_assert_cmpstr(rows, ==, "1");
	remove_tree(dir);
}

/* ---- queries ---- */

static void
test_query_basic(void)
{
	const char *p[] = { "41", NULL };
	Wait w;

	if (!need_db())
		return;
	pool_start(2, 2000);
	query_ok(&w, "SELECT $1::int + 1, $2::text IS NULL, 'x'", 2, p);
	g_assert_cmpint(magpie_pg_result_rows(w.result), ==, 1);
	g_assert_cmpint(magpie_pg_result_columns(w.result), ==, 3);
	g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "42");
	g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 1), ==, "t");
	wait_clear(&w);

	query_ok(&w, "SELECT NULL::text", 0, NULL);
	g_assert_null(magpie_pg_result_get(w.result, 0, 0));
	wait_clear(&w);

	query_ok(&w, "CREATE TABLE q_basic (id int PRIMARY KEY, v text)", 0, NULL);
	wait_clear(&w);
	query_ok(&w, "INSERT INTO q_basic SELECT g, g::text FROM generate_series(1, 7) g", 0, NULL);
	g_assert_cmpint(magpie_pg_result_affected(w.result), ==, 7);
	g_assert_cmpint(magpie_pg_result_rows(w.result), ==, 0);
	wait_clear(&w);

	/* A syntax error is a QUERY error, and the connection goes on. */
	query(&w, "SELEC nonsense", 0, NULL);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY);
	g_assert_nonnull(strstr(w.error->message, "syntax error"));
	wait_clear(&w);
	/* Same bad text again: prepared again, same error, not "does not exist". */
	query(&w, "SELEC nonsense", 0, NULL);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY);
	g_assert_nonnull(strstr(w.error->message, "syntax error"));
	wait_clear(&w);
	/* Stacked statements are refused: one statement per call. */
	query(&w, "SELECT 1; DROP TABLE q_basic", 0, NULL);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY);
	wait_clear(&w);
	/* More placeholders than parameters. */
	query(&w, "SELECT $1::int, $2::int", 1, p);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY);
	wait_clear(&w);
	query_ok(&w, "SELECT count(*) FROM q_basic", 0, NULL);
	g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "7");
	wait_clear(&w);

	/* A parameter far bigger than the socket buffers: the nonblocking
	 * flush path (G_IO_OUT) carries it. */
	{
		g_autofree char *big = g_strnfill(8 * 1024 * 1024, 'q');
		const char *pb[] = { big };

		query_ok(&w, "SELECT length($1::text), md5($1::text) = md5(repeat('q', 8388608))",
		         1, pb);
		g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "8388608");
		g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 1), ==, "t");
		wait_clear(&w);
		query_ok(&w, "SELECT repeat('r', 8388608)", 0, NULL);
		g_assert_cmpint(strlen(magpie_pg_result_get(w.result, 0, 0)), ==, 8388608);
		wait_clear(&w);
	}
	pool_stop();
}

static void
test_query_params_verbatim(void)
{
	static const char *const values[] = {
		"'; DROP TABLE q_params; --",
		"Robert'); DROP TABLE students;--",
		"\"double\" 'single' \\backslash\\ $1 $$dollar$$",
		"\x01\x02\x03\t\r\n\x1f\x7f",
		"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xa6",
		"",
		"E'\\x41'",
		NULL,
	};
	Wait w;

	if (!need_db())
		return;
	pool_start(2, 2000);
	query_ok(&w, "CREATE TABLE q_params (id int PRIMARY KEY, v text)", 0, NULL);
	wait_clear(&w);
	for (guint i = 0; values[i]; i++) {
		g_autofree char *id = g_strdup_printf("%u", i);
		const char *p[] = { id, values[i] };

		query_ok(&w, "INSERT INTO q_params (id, v) VALUES ($1, $2)", 2, p);
		g_assert_cmpint(magpie_pg_result_affected(w.result), ==, 1);
		wait_clear(&w);
	}
	for (guint i = 0; values[i]; i++) {
		g_autofree char *id = g_strdup_printf("%u", i);
		const char *p[] = { id };

		query_ok(&w, "SELECT v, length(v) FROM q_params WHERE id = $1", 1, p);
		g_assert_cmpint(magpie_pg_result_rows(w.result), ==, 1);
		g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, values[i]);
		wait_clear(&w);
	}
	/* The parameter is data, never SQL: the table is still there. */
	query_ok(&w, "SELECT count(*) FROM q_params", 0, NULL);
	g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "7");
	wait_clear(&w);
	pool_stop();
}

typedef struct {
	guint next_expected;
	guint completed;
	guint total;
	gboolean all_done;
	gboolean check_order;
} Many;

typedef struct {
	Many *many;
	guint index;
} ManyCall;

static void
many_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	ManyCall *call = user_data;
	Many *m = call->many;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) result = magpie_pg_query_finish(res, &error);
	g_autofree char *expect = g_strdup_printf("%u", call->index * 2);

	g_assert_no_error(error);
	g_assert_cmpstr(magpie_pg_result_get(result, 0, 0), ==, expect);
	if (m->check_order)
		g_assert_cmpuint(call->index, ==, m->next_expected);
	m->next_expected = call->index + 1;
	if (++m->completed == m->total)
		m->all_done = TRUE;
	g_free(call);
}

static void
run_many(guint total, gboolean check_order)
{
	Many m = { .total = total, .check_order = check_order };

	for (guint i = 0; i < total; i++) {
		ManyCall *call = g_new0(ManyCall, 1);
		g_autofree char *v = g_strdup_printf("%u", i);
		const char *p[] = { v };

		call->many = &m;
		call->index = i;
		magpie_pg_query_async("SELECT $1::int * 2", 1, p, NULL, many_cb, call);
	}
	iterate_until(&m.all_done, 120000);
	g_assert_cmpuint(m.completed, ==, total);
}

static void
test_query_many(void)
{
	MagpiePgStats before, after;

	if (!need_db())
		return;
	/* One connection: callbacks complete in exactly the call order. */
	pool_start(1, 5000);
	magpie_pg_get_stats(&before);
	run_many(10000, TRUE);
	magpie_pg_get_stats(&after);
	g_assert_cmpuint(after.queries - before.queries, ==, 10000);
	pool_stop();
	/* Several connections: all complete with the right result. */
	pool_start(4, 5000);
	run_many(10000, FALSE);
	pool_stop();
}

static void
test_query_constraint(void)
{
	const char *p1[] = { "1", "a" };
	const char *p2[] = { "2", "b" };
	Wait w;

	if (!need_db())
		return;
	pool_start(1, 2000);
	query_ok(&w, "CREATE TABLE q_unique (id int PRIMARY KEY, v text NOT NULL)", 0, NULL);
	wait_clear(&w);
	query_ok(&w, "INSERT INTO q_unique VALUES ($1, $2)", 2, p1);
	wait_clear(&w);
	query(&w, "INSERT INTO q_unique VALUES ($1, $2)", 2, p1);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CONSTRAINT);
	wait_clear(&w);
	/* NOT NULL is class 23 too. */
	{
		const char *pn[] = { "3", NULL };

		query(&w, "INSERT INTO q_unique VALUES ($1, $2)", 2, pn);
		g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CONSTRAINT);
		wait_clear(&w);
	}
	/* The pipeline recovered: the next op on the (only) connection works. */
	query_ok(&w, "INSERT INTO q_unique VALUES ($1, $2)", 2, p2);
	wait_clear(&w);

	/* Pipelined without waiting: failure in the middle does not touch the
	 * neighbours (each op is its own sync group). */
	{
		Wait a = { 0 }, b = { 0 }, c = { 0 };
		const char *pa[] = { "10", "x" };
		const char *pc[] = { "11", "y" };

		magpie_pg_query_async("INSERT INTO q_unique VALUES ($1, $2)", 2, pa, NULL, wait_cb,
		                      &a);
		a.returned = TRUE;
		magpie_pg_query_async("INSERT INTO q_unique VALUES ($1, $2)", 2, p1, NULL, wait_cb,
		                      &b);
		b.returned = TRUE;
		magpie_pg_query_async("INSERT INTO q_unique VALUES ($1, $2)", 2, pc, NULL, wait_cb,
		                      &c);
		c.returned = TRUE;
		iterate_until(&c.done, 10000);
		g_assert_true(a.done && b.done);
		g_assert_no_error(a.error);
		g_assert_error(b.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CONSTRAINT);
		g_assert_no_error(c.error);
		wait_clear(&a);
		wait_clear(&b);
		wait_clear(&c);
	}
	query_ok(&w, "SELECT string_agg(id::text, ',' ORDER BY id) FROM q_unique", 0, NULL);
	g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "1,2,10,11");
	wait_clear(&w);
	pool_stop();
}

static void
tx_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wait *w = user_data;

	g_assert_true(w->returned);
	w->result = magpie_pg_transaction_finish(res, &w->error);
	w->done = TRUE;
}

static void
transaction(Wait *w, const char *const *sqls, const guint *n, const char *const *const *params)
{
	memset(w, 0, sizeof(*w));
	magpie_pg_transaction_async(sqls, n, params, NULL, tx_cb, w);
	w->returned = TRUE;
	iterate_until(&w->done, 10000);
}

static void
test_transaction(void)
{
	const char *sqls[] = {
		"INSERT INTO q_tx VALUES ($1)",
		"INSERT INTO q_tx VALUES ($1)",
		"SELECT count(*) FROM q_tx",
		NULL,
	};
	const guint n[] = { 1, 1, 0 };
	const char *ok1[] = { "1" }, *ok2[] = { "2" }, *dup[] = { "1" }, *p3[] = { "3" };
	const char *const *good[] = { ok1, ok2, NULL };
	const char *const *bad[] = { p3, dup, NULL };
	Wait w;

	if (!need_db())
		return;
	pool_start(2, 2000);
	query_ok(&w, "CREATE TABLE q_tx (id int PRIMARY KEY)", 0, NULL);
	wait_clear(&w);

	transaction(&w, sqls, n, good);
	g_assert_no_error(w.error);
	/* The result is the last statement's. */
	g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "2");
	wait_clear(&w);

	/* The 2nd statement fails: the 1st (id 3) is rolled back. */
	transaction(&w, sqls, n, bad);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CONSTRAINT);
	wait_clear(&w);
	query_ok(&w, "SELECT string_agg(id::text, ',' ORDER BY id) FROM q_tx", 0, NULL);
	g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "1,2");
	wait_clear(&w);

	/* A failing prepare (bad SQL) in the middle rolls back too. */
	{
		const char *bad_sqls[] = { "INSERT INTO q_tx VALUES (4)", "SELEC 1", NULL };

		transaction(&w, bad_sqls, NULL, NULL);
		g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY);
		wait_clear(&w);
		query_ok(&w, "SELECT count(*) FROM q_tx WHERE id = 4", 0, NULL);
		g_assert_cmpstr(magpie_pg_result_get(w.result, 0, 0), ==, "0");
		wait_clear(&w);
	}
	pool_stop();
}

static void
test_cancel(void)
{
	g_autoptr(GCancellable) cancel = g_cancellable_new();
	g_autoptr(GCancellable) pre = g_cancellable_new();
	Wait w = { 0 }, after = { 0 };
	gint64 start;

	if (!need_db())
		return;
	pool_start(1, 2000);
	/* In flight: the callback gets CANCELLED without waiting for the end. */
	start = g_get_monotonic_time();
	magpie_pg_query_async("SELECT pg_sleep(1)", 0, NULL, cancel, wait_cb, &w);
	w.returned = TRUE;
	g_cancellable_cancel(cancel);
	iterate_until(&w.done, 5000);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CANCELLED);
	g_assert_cmpint(g_get_monotonic_time() - start, <, 500000);
	wait_clear(&w);
	/* The connection still works afterwards (the sleep finishes first). */
	query_ok(&after, "SELECT 'after'", 0, NULL);
	g_assert_cmpstr(magpie_pg_result_get(after.result, 0, 0), ==, "after");
	wait_clear(&after);

	/* Already cancelled before the call. */
	g_cancellable_cancel(pre);
	magpie_pg_query_async("SELECT 1", 0, NULL, pre, wait_cb, &w);
	w.returned = TRUE;
	iterate_until(&w.done, 5000);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CANCELLED);
	wait_clear(&w);
	pool_stop();
}

typedef struct {
	guint count;
	char *last_payload;
	gboolean got;
} Notes;

static void
notify_cb(const char *channel, const char *payload, gpointer user_data)
{
	Notes *n = user_data;

	g_assert_cmpstr(channel, ==, "Magpie Test Channel");
	g_free(n->last_payload);
	n->last_payload = g_strdup(payload);
	n->count++;
	n->got = TRUE;
}

static void
notes_destroy(gpointer data)
{
	Notes *n = data;

	g_clear_pointer(&n->last_payload, g_free);
}

static void
send_notify(const char *payload)
{
	const char *p[] = { "Magpie Test Channel", payload };
	Wait w;

	query_ok(&w, "SELECT pg_notify($1, $2)", 2, p);
	wait_clear(&w);
}

/* Notify until it arrives: the LISTEN itself is asynchronous. */
static void
notify_until_received(Notes *n, const char *payload, guint timeout_ms)
{
	gint64 end = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

	n->got = FALSE;
	while (!n->got) {
		g_assert_cmpint(g_get_monotonic_time(), <, end);
		send_notify(payload);
		sleep_in_loop(50);
	}
	g_assert_cmpstr(n->last_payload, ==, payload);
}

static void
test_listen(void)
{
	Notes n = { 0 };
	guint id;

	if (!need_db())
		return;
	pool_start(1, 2000);
	id = magpie_pg_listen("Magpie Test Channel", notify_cb, &n, notes_destroy);
	g_assert_cmpuint(id, >, 0);
	notify_until_received(&n, "first", 5000);

	/* From a separate, synchronous connection. */
	n.got = FALSE;
	sync_exec("NOTIFY \"Magpie Test Channel\", 'from outside ''quoted'''");
	iterate_until(&n.got, 5000);
	g_assert_cmpstr(n.last_payload, ==, "from outside 'quoted'");

	magpie_pg_unlisten(id);
	g_assert_null(n.last_payload); /* destroy ran */
	pool_stop();
}

static void
test_no_server(void)
{
	MagpiePgSettings settings = {
		.conninfo = "host=/nonexistent-magpie-socket-dir dbname=x",
		.pool_size = 2,
		.query_timeout_ms = 300,
		.reconnect_max_ms = 1000,
	};
	Wait w;
	gint64 start;
	MagpiePgStats stats;

	if (!need_db())
		return;
	magpie_pg_start(&settings);
	g_assert_false(magpie_pg_is_available());
	start = g_get_monotonic_time();
	memset(&w, 0, sizeof(w));
	magpie_pg_query_async("SELECT 1", 0, NULL, NULL, wait_cb, &w);
	w.returned = TRUE;
	magpie_pg_get_stats(&stats);
	g_assert_cmpuint(stats.queued, ==, 1);
	g_assert_cmpuint(stats.connections_up, ==, 0);
	iterate_until(&w.done, 5000);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_UNAVAILABLE);
	g_assert_cmpstr(w.error->message, ==, "database unavailable");
	g_assert_cmpint(g_get_monotonic_time() - start, >=, 300000);
	g_assert_cmpint(g_get_monotonic_time() - start, <, 1500000);
	wait_clear(&w);

	/* Stopping fails what is still waiting. */
	memset(&w, 0, sizeof(w));
	magpie_pg_query_async("SELECT 1", 0, NULL, NULL, wait_cb, &w);
	w.returned = TRUE;
	magpie_pg_stop();
	iterate_until(&w.done, 1000);
	g_assert_error(w.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_UNAVAILABLE);
	wait_clear(&w);
}

/* ---- outage ---- */

typedef struct {
	gboolean exited;
	int status;
} Child;

static void
child_cb(GPid pid, gint status, gpointer user_data)
{
	Child *c = user_data;

	c->status = status;
	c->exited = TRUE;
	g_spawn_close_pid(pid);
}

typedef struct {
	gint64 started_at;
	guint *outstanding;
	guint *ok;
	guint *unavailable;
	gint64 *max_latency;
} Probe;

static void
probe_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	Probe *p = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) result = magpie_pg_query_finish(res, &error);
	gint64 latency = g_get_monotonic_time() - p->started_at;

	if (result) {
		(*p->ok)++;
	} else {
		/* Only UNAVAILABLE is acceptable while the server restarts. */
		if (!g_error_matches(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_UNAVAILABLE))
			g_error("unexpected error during restart: %s", error->message);
		(*p->unavailable)++;
	}
	*p->max_latency = MAX(*p->max_latency, latency);
	(*p->outstanding)--;
	g_free(p);
}

static void
test_restart(void)
{
	const char *cmd = g_getenv("MAGPIE_TEST_PGCTL_RESTART");
	const guint timeout_ms = 500;
	g_autoptr(GError) error = NULL;
	char *argv[] = { "/bin/sh", "-c", NULL, NULL };
	Child child = { 0 };
	Wait sleeper = { 0 };
	Notes n = { 0 };
	guint outstanding = 0, ok = 0, unavailable = 0, ok_after = 0;
	gint64 max_latency = 0, end;
	GPid pid;
	guint id;

	if (!need_db())
		return;
	if (!cmd || !*cmd) {
		g_test_skip("MAGPIE_TEST_PGCTL_RESTART not set");
		return;
	}
	pool_start(2, timeout_ms);
	id = magpie_pg_listen("Magpie Test Channel", notify_cb, &n, notes_destroy);
	notify_until_received(&n, "before", 5000);

	/* In flight when the server goes down: fails, is not re-run. */
	magpie_pg_query_async("SELECT pg_sleep(30)", 0, NULL, NULL, wait_cb, &sleeper);
	sleeper.returned = TRUE;
	sleep_in_loop(100);

	argv[2] = (char *) cmd;
	g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, &error);
	g_assert_no_error(error);
	g_child_watch_add(pid, child_cb, &child);

	end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
	/* Probe every 50 ms until the restart is over and queries work again. */
	while (!child.exited || ok_after == 0) {
		Probe *p = g_new0(Probe, 1);
		guint ok_before = ok;

		g_assert_cmpint(g_get_monotonic_time(), <, end);
		p->started_at = g_get_monotonic_time();
		p->outstanding = &outstanding;
		p->ok = &ok;
		p->unavailable = &unavailable;
		p->max_latency = &max_latency;
		outstanding++;
		magpie_pg_query_async("SELECT 1", 0, NULL, NULL, probe_cb, p);
		sleep_in_loop(50);
		if (child.exited && ok > ok_before)
			ok_after++;
	}
	while (outstanding > 0)
		g_main_context_iteration(NULL, TRUE);
	g_assert_true(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0);
	g_assert_true(sleeper.done);
	g_assert_error(sleeper.error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_UNAVAILABLE);
	wait_clear(&sleeper);
	g_test_message("restart: %u ok, %u unavailable, max latency %" G_GINT64_FORMAT " ms", ok,
	               unavailable, max_latency / 1000);
	/* Nothing hung: each probe finished within the queue timeout plus
	 * a query's worth of slack. */
	g_assert_cmpint(max_latency, <, (gint64) (timeout_ms + 1000) * 1000);

	/* LISTEN was re-issued on the new connection. */
	notify_until_received(&n, "after restart", 15000);
	magpie_pg_unlisten(id);
	pool_stop();
}

/* ---- throughput ---- */

typedef struct {
	guint sent;
	guint done;
	guint total;
	guint window;
	gboolean finished;
} Bench;

static void bench_send(Bench *b);

static void
bench_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	Bench *b = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) result = magpie_pg_query_finish(res, &error);

	g_assert_no_error(error);
	g_assert_cmpint(magpie_pg_result_rows(result), ==, 1);
	if (++b->done == b->total)
		b->finished = TRUE;
	else
		bench_send(b);
}

static void
bench_send(Bench *b)
{
	while (b->sent < b->total && b->sent - b->done < b->window) {
		g_autofree char *key = g_strdup_printf("%u", g_random_int_range(1, 1001));
		const char *p[] = { key };

		b->sent++;
		magpie_pg_query_async("SELECT id, v FROM q_bench WHERE id = $1", 1, p, NULL,
		                      bench_cb, b);
	}
}

static double
bench_run(guint total, guint window)
{
	Bench b = { .total = total, .window = window };
	gint64 start = g_get_monotonic_time();

	bench_send(&b);
	iterate_until(&b.finished, 300000);
	return total / ((g_get_monotonic_time() - start) / 1e6);
}

static void
test_bench(void)
{
	Wait w;
	guint sizes[] = { 1, 2, 4 };

	if (!need_db())
		return;
	pool_start(1, 5000);
	query_ok(&w,
	         "CREATE TABLE q_bench AS SELECT g AS id, md5(g::text) AS v "
	         "FROM generate_series(1, 1000) g",
	         0, NULL);
	wait_clear(&w);
	query_ok(&w, "ALTER TABLE q_bench ADD PRIMARY KEY (id)", 0, NULL);
	wait_clear(&w);
	pool_stop();
	for (guint i = 0; i < G_N_ELEMENTS(sizes); i++) {
		double qps;

		pool_start(sizes[i], 5000);
		bench_run(2000, 256); /* warm up: statements prepared */
		qps = bench_run(50000, 512);
		g_test_message(
		        "SELECT by key, pipelined, pool_size %u, 512 in flight: %.0f queries/s",
		        sizes[i], qps);
		pool_stop();
	}
}

/* ---- setup ---- */

static void
quiet_notice(void *arg, const char *message)
{
}

static void
setup_database(void)
{
	const char *host = g_getenv("MAGPIE_TEST_PGHOST");
	const char *db = g_getenv("MAGPIE_TEST_PGDATABASE");
	const char *port = g_getenv("MAGPIE_TEST_PGPORT");
	const char *user = g_getenv("MAGPIE_TEST_PGUSER");
	GString *s;
	g_autofree char *create = NULL;

	if (!host || !*host)
		return;
	s = g_string_new(NULL);
	g_string_append_printf(s, "host='%s'", host);
	if (db && *db)
		g_string_append_printf(s, " dbname='%s'", db);
	if (port && *port)
		g_string_append_printf(s, " port='%s'", port);
	if (user && *user)
		g_string_append_printf(s, " user='%s'", user);
	base_conninfo = g_string_free(s, FALSE);
	schema = g_strdup_printf("magpie_test_pg_%d", (int) getpid());
	conninfo = g_strdup_printf("%s options='-csearch_path=%s'", base_conninfo, schema);

	{
		PGconn *pg = PQconnectdb(base_conninfo);
		PGresult *res;

		PQsetNoticeProcessor(pg, quiet_notice, NULL);
		if (PQstatus(pg) != CONNECTION_OK)
			g_error("cannot connect to the test database (%s): %s", base_conninfo,
			        PQerrorMessage(pg));
		create = g_strdup_printf("DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s",
		                         schema, schema);
		res = PQexec(pg, create);
		g_assert_cmpint(PQresultStatus(res), ==, PGRES_COMMAND_OK);
		PQclear(res);
		PQfinish(pg);
	}
}

static void
teardown_database(void)
{
	g_autofree char *drop = NULL;
	PGconn *pg;

	if (!base_conninfo)
		return;
	pg = PQconnectdb(base_conninfo);
	PQsetNoticeProcessor(pg, quiet_notice, NULL);
	if (PQstatus(pg) == CONNECTION_OK) {
		drop = g_strdup_printf("DROP SCHEMA IF EXISTS %s CASCADE", schema);
		PQclear(PQexec(pg, drop));
	}
	PQfinish(pg);
}

int
main(int argc, char **argv)
{
	int ret;

	g_test_init(&argc, &argv, NULL);
	setup_database();

	g_test_add_func("/pg/migrate/apply-and-skip", test_migrate_apply_and_skip);
	g_test_add_func("/pg/migrate/failure", test_migrate_failure);
	g_test_add_func("/pg/migrate/concurrent", test_migrate_concurrent);
	g_test_add_func("/pg/query/basic", test_query_basic);
	g_test_add_func("/pg/query/params-verbatim", test_query_params_verbatim);
	g_test_add_func("/pg/query/many", test_query_many);
	g_test_add_func("/pg/query/constraint", test_query_constraint);
	g_test_add_func("/pg/query/cancel", test_cancel);
	g_test_add_func("/pg/transaction/rollback", test_transaction);
	g_test_add_func("/pg/listen/notify", test_listen);
	g_test_add_func("/pg/pool/no-server", test_no_server);
	g_test_add_func("/pg/pool/restart", test_restart);
	g_test_add_func("/pg/bench/select-by-key", test_bench);

	ret = g_test_run();
	teardown_database();
	g_free(conninfo);
	g_free(base_conninfo);
	g_free(schema);
	return ret;
}
