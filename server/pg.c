/* Asynchronous PostgreSQL: a pool of nonblocking libpq connections driven
 * by the GLib main loop (research/crux.md §4).
 *
 * Each query connection runs in pipeline mode with a FIFO of operations.
 * An operation is its statements followed by one PQpipelineSync, so it is
 * exactly one implicit transaction: a failing statement aborts the rest of
 * its own group and rolls back the group's earlier statements, and the next
 * group runs normally. Statements are prepared per connection on first use
 * of a given SQL text; the prepare travels in its own sync group so that an
 * aborted transaction cannot leave a later operation without its
 * statement.
 *
 * One more connection is kept for LISTEN. Every user callback (query
 * completion, notification) runs from one idle source, never from inside
 * the connection's dispatch, so callbacks may call back into this file
 * (even magpie_pg_stop()).
 *
 * The pool and its callbacks belong to the main thread: call these
 * functions, and cancel their GCancellables, from the main loop only.
 */
#include "pg-pool.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK(magpie - pg - error - quark, magpie_pg_error)

#define PG_BACKOFF_START_MS         250
#define PG_DEFAULT_POOL_SIZE        2
#define PG_DEFAULT_QUERY_TIMEOUT_MS 5000
#define PG_DEFAULT_RECONNECT_MAX_MS 10000

struct _MagpiePgResult {
	PGresult *res;
};

typedef struct {
	char *sql;
	guint n_params;
	char **params; /* n_params entries, NULL = SQL NULL */
} PgStatement;

typedef enum {
	PG_PREPARED_PENDING,
	PG_PREPARED_OK,
	PG_PREPARED_FAILED,
} PgPreparedState;

/* One server-side prepared statement of one connection (g_rc_box). */
typedef struct {
	char *name;
	PgPreparedState state;
	char *error_message;
	char *sqlstate;
} PgPrepared;

typedef enum {
	PG_OP_USER,    /* a query or transaction with a GTask */
	PG_OP_PREPARE, /* internal: PQsendPrepare for the statement cache */
	PG_OP_LISTEN,  /* internal: LISTEN/UNLISTEN on the listener */
} PgOpKind;

typedef struct _PgConn PgConn;

typedef struct {
	gint ref_count;
	PgOpKind kind;
	GTask *task; /* NULL once returned (or for internal ops) */
	GCancellable *cancellable;
	gulong cancel_id;
	PgStatement *statements;
	guint n_statements;
	/* Waiting for a connection. */
	GList *wait_link;
	gint64 deadline;
	/* In flight. */
	PgPrepared **prepared; /* per statement (user ops), or [0] for PG_OP_PREPARE */
	PGresult *last;
	GError *error;
} PgOp;

typedef enum {
	PG_CONN_DOWN,       /* waiting for the next attempt */
	PG_CONN_CONNECTING, /* PQconnectPoll in progress */
	PG_CONN_READY,
} PgConnState;

struct _PgConn {
	guint index;
	gboolean is_listener;
	PgConnState state;
	PGconn *pg;
	GSource *source; /* PgSource while connecting or ready */
	gpointer fd_tag;
	int fd;
	GIOCondition cond;
	gboolean want_write;
	GSource *retry;
	guint backoff_ms;
	GQueue inflight;      /* PgOp, in the order their results will come */
	GHashTable *prepared; /* SQL text -> PgPrepared */
	guint next_statement;
	char *fatal; /* the server's last FATAL notice: why it hung up */
};

typedef struct {
	GSource base;
	PgConn *conn;
} PgSource;

typedef struct {
	guint id;
	char *channel;
	MagpiePgNotifyFunc callback;
	gpointer user_data;
	GDestroyNotify destroy;
	gboolean removed;
} PgListener;

/* Something to hand to user code from the idle source. */
typedef struct {
	GTask *task;
	PGresult *res;
	GError *error;
	char *channel; /* notification when non-NULL */
	char *payload;
} PgDelivery;

static struct {
	gboolean started;
	char *conninfo;
	guint pool_size;
	guint query_timeout_ms;
	guint reconnect_max_ms;
	GPtrArray *conns; /* PgConn, query connections */
	PgConn *listener;
	GQueue waiting; /* PgOp waiting for a connection, oldest first */
	GSource *wait_timer;
	GQueue deliveries; /* PgDelivery */
	GQueue cancelled;  /* PgOp (a ref each) */
	GSource *delivery_idle;
	gboolean outage;
	guint64 queries;
	guint64 errors;
	GPtrArray *listeners; /* PgListener */
	GHashTable *channels; /* channel -> GUINT_TO_POINTER(listener count) */
	guint next_listener_id;
	guint notify_depth;
} pool = {
	.waiting = G_QUEUE_INIT,
	.deliveries = G_QUEUE_INIT,
	.cancelled = G_QUEUE_INIT,
};

static void conn_send(PgConn *conn, PgOp *op);
static void conn_reset(PgConn *conn, const char *reason);
static void conn_connect(PgConn *conn);

/* ---- small helpers ---- */

static guint
query_timeout_ms(void)
{
	return pool.query_timeout_ms ? pool.query_timeout_ms : PG_DEFAULT_QUERY_TIMEOUT_MS;
}

/* libpq messages end with a newline and may span lines. */
static char *
tidy_message(const char *message)
{
	char *s = g_strdup(message ? message : "unknown error");

	g_strstrip(s);
	for (char *p = s; *p; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	}
	return s;
}

static void
prepared_clear(PgPrepared *prepared)
{
	g_free(prepared->name);
	g_free(prepared->error_message);
	g_free(prepared->sqlstate);
}

static void
prepared_release(gpointer prepared)
{
	if (prepared)
		g_rc_box_release_full(prepared, (GDestroyNotify) prepared_clear);
}

static PgOp *
op_new(PgOpKind kind, guint n_statements)
{
	PgOp *op = g_new0(PgOp, 1);

	op->ref_count = 1;
	op->kind = kind;
	op->n_statements = n_statements;
	op->statements = g_new0(PgStatement, n_statements);
	op->prepared = g_new0(PgPrepared *, MAX(n_statements, 1));
	return op;
}

static void
op_set_statement(PgOp *op, guint i, const char *sql, guint n_params, const char *const *params)
{
	PgStatement *st = &op->statements[i];

	st->sql = g_strdup(sql);
	st->n_params = n_params;
	st->params = g_new0(char *, MAX(n_params, 1));
	for (guint p = 0; p < n_params; p++)
		st->params[p] = g_strdup(params[p]);
}

static PgOp *
op_ref(PgOp *op)
{
	op->ref_count++;
	return op;
}

static void
op_unref(PgOp *op)
{
	if (--op->ref_count > 0)
		return;
	g_assert(op->task == NULL);
	g_assert(op->wait_link == NULL);
	for (guint i = 0; i < op->n_statements; i++) {
		PgStatement *st = &op->statements[i];

		g_free(st->sql);
		for (guint p = 0; p < st->n_params; p++)
			g_free(st->params[p]);
		g_free(st->params);
	}
	g_free(op->statements);
	for (guint i = 0; i < MAX(op->n_statements, 1); i++)
		prepared_release(op->prepared[i]);
	g_free(op->prepared);
	g_clear_pointer(&op->last, PQclear);
	g_clear_error(&op->error);
	g_clear_object(&op->cancellable);
	g_free(op);
}

/* ---- delivering results to user code, always from an idle source ---- */

static void delivery_free(PgDelivery *d);
static gboolean deliveries_dispatch(gpointer user_data);

static void
deliveries_schedule(void)
{
	if (pool.delivery_idle)
		return;
	pool.delivery_idle = g_idle_source_new();
	g_source_set_priority(pool.delivery_idle, G_PRIORITY_DEFAULT);
	g_source_set_callback(pool.delivery_idle, deliveries_dispatch, NULL, NULL);
	g_source_set_static_name(pool.delivery_idle, "magpie-pg-deliveries");
	g_source_attach(pool.delivery_idle, NULL);
}

static void
delivery_free(PgDelivery *d)
{
	g_clear_object(&d->task);
	g_clear_pointer(&d->res, PQclear);
	g_clear_error(&d->error);
	g_free(d->channel);
	g_free(d->payload);
	g_free(d);
}

static void
result_free_pointer(gpointer data)
{
	magpie_pg_result_free(data);
}

/* Hand @op's outcome (@res or @error, both taken) to its task. */
static void
op_return(PgOp *op, PGresult *res, GError *error)
{
	PgDelivery *d;

	if (!op->task) {
		g_clear_pointer(&res, PQclear);
		g_clear_error(&error);
		return;
	}
	if (op->cancel_id) {
		g_cancellable_disconnect(op->cancellable, op->cancel_id);
		op->cancel_id = 0;
	}
	if (error)
		pool.errors++;
	else
		pool.queries++;
	d = g_new0(PgDelivery, 1);
	d->task = g_steal_pointer(&op->task);
	d->res = res;
	d->error = error;
	g_queue_push_tail(&pool.deliveries, d);
	deliveries_schedule();
}

static void
op_fail(PgOp *op, MagpiePgError code, const char *message)
{
	op_return(op, NULL, g_error_new_literal(MAGPIE_PG_ERROR, code, message));
}

static void
waiting_remove(PgOp *op)
{
	g_queue_unlink(&pool.waiting, op->wait_link);
	g_list_free_1(op->wait_link);
	op->wait_link = NULL;
}

static void
listeners_compact(void)
{
	if (!pool.listeners || pool.notify_depth > 0)
		return;
	for (guint i = 0; i < pool.listeners->len;) {
		PgListener *l = g_ptr_array_index(pool.listeners, i);

		if (l->removed)
			g_ptr_array_remove_index(pool.listeners, i);
		else
			i++;
	}
}

static void
notify_deliver(const char *channel, const char *payload)
{
	if (!pool.listeners)
		return;
	pool.notify_depth++;
	/* Index loop: a callback may add listeners (the array may grow). */
	for (guint i = 0; i < pool.listeners->len; i++) {
		PgListener *l = g_ptr_array_index(pool.listeners, i);

		if (!l->removed && strcmp(l->channel, channel) == 0)
			l->callback(channel, payload, l->user_data);
	}
	pool.notify_depth--;
	listeners_compact();
}

static gboolean
deliveries_dispatch(gpointer user_data)
{
	GQueue batch = G_QUEUE_INIT;
	GQueue cancelled = G_QUEUE_INIT;
	PgDelivery *d;
	PgOp *op;

	/* Work on a snapshot: callbacks may queue more, for a later iteration. */
	g_source_unref(g_steal_pointer(&pool.delivery_idle));
	cancelled = pool.cancelled;
	g_queue_init(&pool.cancelled);

	while ((op = g_queue_pop_head(&cancelled))) {
		if (op->task) {
			if (op->wait_link) {
				waiting_remove(op);
				op_unref(op); /* the waiting queue's reference */
			}
			op_fail(op, MAGPIE_PG_ERROR_CANCELLED, "operation cancelled");
		}
		op_unref(op);
	}

	batch = pool.deliveries;
	g_queue_init(&pool.deliveries);
	while ((d = g_queue_pop_head(&batch))) {
		if (d->channel) {
			notify_deliver(d->channel, d->payload);
		} else if (d->error) {
			g_task_return_error(d->task, g_steal_pointer(&d->error));
		} else if (g_cancellable_is_cancelled(g_task_get_cancellable(d->task))) {
			g_task_return_new_error(d->task, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CANCELLED,
			                        "operation cancelled");
		} else {
			MagpiePgResult *result = g_new0(MagpiePgResult, 1);

			result->res = g_steal_pointer(&d->res);
			g_task_return_pointer(d->task, result, result_free_pointer);
		}
		delivery_free(d);
	}
	return G_SOURCE_REMOVE;
}

static void
op_cancelled_cb(GCancellable *cancellable, gpointer user_data)
{
	/* Only note it: the real work runs from the idle source, where
	 * g_cancellable_disconnect() is allowed. */
	g_queue_push_tail(&pool.cancelled, op_ref(user_data));
	deliveries_schedule();
}

/* ---- errors ---- */

static GError *
error_from_result(const PGresult *res)
{
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	g_autofree char *message = tidy_message(primary ? primary : PQresultErrorMessage(res));
	MagpiePgError code = MAGPIE_PG_ERROR_QUERY;

	if (sqlstate && g_str_has_prefix(sqlstate, "23"))
		code = MAGPIE_PG_ERROR_CONSTRAINT;
	else if (sqlstate &&
	         ((g_str_has_prefix(sqlstate, "08") && strcmp(sqlstate, "08P01") != 0) ||
	          g_str_has_prefix(sqlstate, "57P")))
		code = MAGPIE_PG_ERROR_UNAVAILABLE; /* connection failure, shutdown; not
		                                       08P01, a bad bind */
	return g_error_new_literal(MAGPIE_PG_ERROR, code, message);
}

/* ---- the pool's waiting queue ---- */

static gboolean wait_timer_cb(gpointer user_data);

static void
wait_timer_arm(void)
{
	PgOp *head = g_queue_peek_head(&pool.waiting);
	gint64 delay_ms;

	if (pool.wait_timer || !head)
		return;
	delay_ms = (head->deadline - g_get_monotonic_time()) / 1000 + 1;
	pool.wait_timer = g_timeout_source_new(CLAMP(delay_ms, 0, G_MAXUINT));
	g_source_set_callback(pool.wait_timer, wait_timer_cb, NULL, NULL);
	g_source_set_static_name(pool.wait_timer, "magpie-pg-wait-timeout");
	g_source_attach(pool.wait_timer, NULL);
}

static void
wait_timer_clear(void)
{
	if (pool.wait_timer) {
		g_source_destroy(pool.wait_timer);
		g_clear_pointer(&pool.wait_timer, g_source_unref);
	}
}

static gboolean
wait_timer_cb(gpointer user_data)
{
	gint64 now = g_get_monotonic_time();
	PgOp *op;

	g_clear_pointer(&pool.wait_timer, g_source_unref);
	while ((op = g_queue_peek_head(&pool.waiting)) && op->deadline <= now) {
		waiting_remove(op);
		op_fail(op, MAGPIE_PG_ERROR_UNAVAILABLE, "database unavailable");
		op_unref(op);
	}
	wait_timer_arm();
	return G_SOURCE_REMOVE;
}

/* The live query connection with the fewest operations in flight. */
static PgConn *
pool_pick(void)
{
	PgConn *best = NULL;

	if (!pool.conns)
		return NULL;
	for (guint i = 0; i < pool.conns->len; i++) {
		PgConn *c = g_ptr_array_index(pool.conns, i);

		if (c->state != PG_CONN_READY)
			continue;
		if (!best || c->inflight.length < best->inflight.length)
			best = c;
	}
	return best;
}

static void
pool_submit(PgOp *op)
{
	PgConn *conn = pool_pick();

	if (conn) {
		conn_send(conn, op);
		return;
	}
	op->deadline = g_get_monotonic_time() + (gint64) query_timeout_ms() * 1000;
	op->wait_link = g_list_alloc();
	op->wait_link->data = op;
	g_queue_push_tail_link(&pool.waiting, op->wait_link);
	wait_timer_arm();
}

static void
pool_drain_waiting(void)
{
	PgConn *conn;
	PgOp *op;

	while ((op = g_queue_peek_head(&pool.waiting)) && (conn = pool_pick())) {
		waiting_remove(op);
		conn_send(conn, op);
	}
	if (g_queue_is_empty(&pool.waiting))
		wait_timer_clear();
}

static gboolean
pool_all_up(void)
{
	if (!pool.started)
		return FALSE;
	for (guint i = 0; i < pool.conns->len; i++) {
		PgConn *c = g_ptr_array_index(pool.conns, i);

		if (c->state != PG_CONN_READY)
			return FALSE;
	}
	return pool.listener->state == PG_CONN_READY;
}

/* ---- one connection ---- */

static gboolean pg_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data);

static GSourceFuncs pg_source_funcs = {
	.dispatch = pg_source_dispatch,
};

static void
conn_watch(PgConn *conn, GIOCondition cond)
{
	/* The socket may change between PQconnectPoll calls (multi-host
	 * conninfo, SSL retry): read it again every time. */
	int fd = PQsocket(conn->pg);

	if (fd != conn->fd || !conn->fd_tag) {
		if (conn->fd_tag)
			g_source_remove_unix_fd(conn->source, conn->fd_tag);
		conn->fd_tag = NULL;
		conn->fd = fd;
		if (fd >= 0)
			conn->fd_tag = g_source_add_unix_fd(conn->source, fd, cond);
	} else if (cond != conn->cond) {
		g_source_modify_unix_fd(conn->source, conn->fd_tag, cond);
	}
	conn->cond = cond;
}

static void
conn_update_watch(PgConn *conn)
{
	conn_watch(conn, G_IO_IN | (conn->want_write ? G_IO_OUT : 0));
}

static void
conn_flush(PgConn *conn)
{
	int r = PQflush(conn->pg);

	if (r < 0) {
		g_autofree char *msg = tidy_message(PQerrorMessage(conn->pg));

		conn_reset(conn, msg);
		return;
	}
	conn->want_write = r == 1;
	conn_update_watch(conn);
}

static gboolean
conn_retry_cb(gpointer user_data)
{
	PgConn *conn = user_data;

	g_clear_pointer(&conn->retry, g_source_unref);
	conn_connect(conn);
	return G_SOURCE_REMOVE;
}

static void
conn_close(PgConn *conn)
{
	if (conn->source) {
		g_source_destroy(conn->source);
		g_clear_pointer(&conn->source, g_source_unref);
	}
	conn->fd_tag = NULL;
	conn->fd = -1;
	conn->want_write = FALSE;
	g_clear_pointer(&conn->pg, PQfinish);
	g_hash_table_remove_all(conn->prepared);
	conn->next_statement = 0;
}

static void
conn_fail_inflight(PgConn *conn, const char *message)
{
	PgOp *op;

	/* Never re-run: a write may or may not have been committed. */
	while ((op = g_queue_pop_head(&conn->inflight))) {
		op_fail(op, MAGPIE_PG_ERROR_UNAVAILABLE, message);
		op_unref(op);
	}
}

/* The connection failed or was lost: fail what it carried and retry later. */
static void
conn_reset(PgConn *conn, const char *reason)
{
	gboolean was_ready = conn->state == PG_CONN_READY;
	g_autofree char *fatal = g_steal_pointer(&conn->fatal);

	if (fatal)
		reason = fatal;
	conn_fail_inflight(conn, "database connection lost");
	conn_close(conn);
	conn->state = PG_CONN_DOWN;
	if (!pool.outage) {
		pool.outage = TRUE;
		g_message("database connection lost: %s; retrying", reason);
	} else {
		g_debug("database connection %u %s: %s", conn->index, was_ready ? "lost" : "failed",
		        reason);
	}
	conn->retry = g_timeout_source_new(conn->backoff_ms);
	g_source_set_callback(conn->retry, conn_retry_cb, conn, NULL);
	g_source_set_static_name(conn->retry, "magpie-pg-reconnect");
	g_source_attach(conn->retry, NULL);
	conn->backoff_ms =
	        MIN(conn->backoff_ms * 2, MAX(pool.reconnect_max_ms, PG_BACKOFF_START_MS));
}

static void
listener_send(const char *channel, gboolean listen)
{
	PgConn *conn = pool.listener;
	char *ident;
	g_autofree char *sql = NULL;
	PgOp *op;

	if (!conn || conn->state != PG_CONN_READY)
		return; /* issued on (re)connection */
	ident = PQescapeIdentifier(conn->pg, channel, strlen(channel));
	if (!ident) {
		g_message("cannot LISTEN on database channel: %s", PQerrorMessage(conn->pg));
		return;
	}
	sql = g_strdup_printf("%s %s", listen ? "LISTEN" : "UNLISTEN", ident);
	PQfreemem(ident);
	op = op_new(PG_OP_LISTEN, 1);
	op_set_statement(op, 0, sql, 0, NULL);
	conn_send(conn, op);
}

static void
conn_ready(PgConn *conn)
{
	if (PQsetnonblocking(conn->pg, 1) != 0 || !PQenterPipelineMode(conn->pg)) {
		g_autofree char *msg = tidy_message(PQerrorMessage(conn->pg));

		conn_reset(conn, msg);
		return;
	}
	conn->state = PG_CONN_READY;
	conn->backoff_ms = PG_BACKOFF_START_MS;
	conn_update_watch(conn);
	g_debug("database connection %u up", conn->index);
	if (pool.outage && pool_all_up()) {
		pool.outage = FALSE;
		g_message("database connection restored");
	}
	if (conn->is_listener) {
		GHashTableIter iter;
		gpointer channel;

		g_hash_table_iter_init(&iter, pool.channels);
		while (g_hash_table_iter_next(&iter, &channel, NULL))
			listener_send(channel, TRUE);
	} else {
		pool_drain_waiting();
	}
}

static void
conn_notice(void *arg, const char *message)
{
	PgConn *conn = arg;

	/* An idle connection's "terminating connection due to administrator
	 * command" arrives as a notice just before the socket closes. */
	if (g_str_has_prefix(message, "FATAL:")) {
		g_free(conn->fatal);
		conn->fatal = tidy_message(message + strlen("FATAL:"));
	}
	g_debug("database notice: %s", message);
}

static void
conn_connect(PgConn *conn)
{
	PgSource *ps;

	conn->pg = PQconnectStart(pool.conninfo);
	if (!conn->pg || PQstatus(conn->pg) == CONNECTION_BAD) {
		g_autofree char *msg =
		        tidy_message(conn->pg ? PQerrorMessage(conn->pg) : "out of memory");

		conn_reset(conn, msg);
		return;
	}
	PQsetNoticeProcessor(conn->pg, conn_notice, conn);
	conn->state = PG_CONN_CONNECTING;
	conn->source = g_source_new(&pg_source_funcs, sizeof(PgSource));
	ps = (PgSource *) conn->source;
	ps->conn = conn;
	g_source_set_static_name(conn->source, "magpie-pg");
	g_source_attach(conn->source, NULL);
	/* libpq: after PQconnectStart, behave as if PGRES_POLLING_WRITING. */
	conn_watch(conn, G_IO_OUT);
}

static void
conn_drain_notifies(PgConn *conn)
{
	PGnotify *n;

	while ((n = PQnotifies(conn->pg))) {
		PgDelivery *d = g_new0(PgDelivery, 1);

		d->channel = g_strdup(n->relname);
		d->payload = g_strdup(n->extra ? n->extra : "");
		g_queue_push_tail(&pool.deliveries, d);
		deliveries_schedule();
		PQfreemem(n);
	}
}

static void
op_finish(PgOp *op)
{
	switch (op->kind) {
	case PG_OP_PREPARE: {
		PgPrepared *p = op->prepared[0];

		if (op->error) {
			p->state = PG_PREPARED_FAILED;
			p->error_message = g_strdup(op->error->message);
		} else {
			p->state = PG_PREPARED_OK;
		}
		break;
	}
	case PG_OP_LISTEN:
		if (op->error)
			g_message("database %s failed: %s", op->statements[0].sql,
			          op->error->message);
		break;
	case PG_OP_USER:
		if (op->error) {
			/* A statement whose prepare failed reports the prepare's
			 * error, not "prepared statement does not exist". */
			for (guint i = 0; i < op->n_statements; i++) {
				PgPrepared *p = op->prepared[i];

				if (p && p->state == PG_PREPARED_FAILED) {
					g_clear_error(&op->error);
					op->error = g_error_new_literal(MAGPIE_PG_ERROR,
					                                MAGPIE_PG_ERROR_QUERY,
					                                p->error_message);
					break;
				}
			}
			op_return(op, NULL, g_steal_pointer(&op->error));
		} else {
			op_return(op, g_steal_pointer(&op->last), NULL);
		}
		break;
	}
}

static void
conn_process_results(PgConn *conn)
{
	int nulls = 0;
	PgOp *op;

	while ((op = g_queue_peek_head(&conn->inflight)) && !PQisBusy(conn->pg)) {
		PGresult *res = PQgetResult(conn->pg);

		if (!res) {
			/* NULL ends one statement's results; two in a row means
			 * libpq has nothing more for now. */
			if (++nulls >= 2)
				break;
			continue;
		}
		nulls = 0;
		switch (PQresultStatus(res)) {
		case PGRES_PIPELINE_SYNC:
			PQclear(res);
			g_queue_pop_head(&conn->inflight);
			op_finish(op);
			op_unref(op);
			break;
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
		case PGRES_EMPTY_QUERY:
			if (op->kind == PG_OP_USER && !op->error) {
				g_clear_pointer(&op->last, PQclear);
				op->last = res;
			} else {
				PQclear(res);
			}
			break;
		case PGRES_PIPELINE_ABORTED:
			if (!op->error)
				op->error =
				        g_error_new_literal(MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY,
				                            "statement aborted");
			PQclear(res);
			break;
		case PGRES_FATAL_ERROR:
			if (!op->error)
				op->error = error_from_result(res);
			PQclear(res);
			break;
		default:
			if (!op->error)
				op->error = g_error_new(MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY,
				                        "unsupported result: %s",
				                        PQresStatus(PQresultStatus(res)));
			PQclear(res);
			break;
		}
	}
}

static void
conn_dispatch(PgConn *conn, GIOCondition revents)
{
	if (conn->state == PG_CONN_CONNECTING) {
		switch (PQconnectPoll(conn->pg)) {
		case PGRES_POLLING_READING:
			conn_watch(conn, G_IO_IN);
			break;
		case PGRES_POLLING_WRITING:
			conn_watch(conn, G_IO_OUT);
			break;
		case PGRES_POLLING_OK:
			conn_ready(conn);
			break;
		case PGRES_POLLING_FAILED:
		default: {
			g_autofree char *msg = tidy_message(PQerrorMessage(conn->pg));

			conn_reset(conn, msg);
			break;
		}
		}
		return;
	}
	if (conn->state != PG_CONN_READY)
		return;
	if (revents & G_IO_OUT) {
		conn_flush(conn);
		if (conn->state != PG_CONN_READY)
			return;
	}
	if (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
		if (!PQconsumeInput(conn->pg)) {
			g_autofree char *msg = tidy_message(PQerrorMessage(conn->pg));

			/* Deliver what did arrive (notifications) before failing. */
			conn_drain_notifies(conn);
			conn_reset(conn, msg);
			return;
		}
		conn_process_results(conn);
		conn_drain_notifies(conn);
		if (PQstatus(conn->pg) == CONNECTION_BAD) {
			g_autofree char *msg = tidy_message(PQerrorMessage(conn->pg));

			conn_reset(conn, msg);
		}
	}
}

static gboolean
pg_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	PgSource *ps = (PgSource *) source;
	PgConn *conn = ps->conn;

	conn_dispatch(conn, conn->fd_tag ? g_source_query_unix_fd(source, conn->fd_tag) : 0);
	return G_SOURCE_CONTINUE;
}

static void
conn_send_failed(PgConn *conn)
{
	g_autofree char *msg = tidy_message(PQerrorMessage(conn->pg));

	conn_reset(conn, msg);
}

static void
conn_send(PgConn *conn, PgOp *op)
{
	/* First the prepares this op needs, each in its own sync group, so the
	 * op's statements stay one group (one implicit transaction). */
	if (op->kind == PG_OP_USER) {
		for (guint i = 0; i < op->n_statements; i++) {
			PgStatement *st = &op->statements[i];
			PgPrepared *p = g_hash_table_lookup(conn->prepared, st->sql);
			PgOp *prep;

			if (p && p->state != PG_PREPARED_FAILED) {
				op->prepared[i] = g_rc_box_acquire(p);
				continue;
			}
			p = g_rc_box_new0(PgPrepared);
			p->name = g_strdup_printf("magpie_%u", ++conn->next_statement);
			g_hash_table_replace(conn->prepared, g_strdup(st->sql), p);
			op->prepared[i] = g_rc_box_acquire(p);
			prep = op_new(PG_OP_PREPARE, 0);
			prep->prepared[0] = g_rc_box_acquire(p);
			g_queue_push_tail(&conn->inflight, prep);
			if (!PQsendPrepare(conn->pg, p->name, st->sql, (int) st->n_params, NULL) ||
			    !PQpipelineSync(conn->pg)) {
				g_queue_push_tail(&conn->inflight, op);
				conn_send_failed(conn);
				return;
			}
		}
	}
	g_queue_push_tail(&conn->inflight, op);
	for (guint i = 0; i < op->n_statements; i++) {
		PgStatement *st = &op->statements[i];
		const char *const *values = (const char *const *) st->params;
		int ok;

		if (op->kind == PG_OP_USER)
			ok = PQsendQueryPrepared(conn->pg, op->prepared[i]->name,
			                         (int) st->n_params, values, NULL, NULL, 0);
		else
			ok = PQsendQueryParams(conn->pg, st->sql, (int) st->n_params, NULL, values,
			                       NULL, NULL, 0);
		if (!ok) {
			conn_send_failed(conn);
			return;
		}
	}
	if (!PQpipelineSync(conn->pg)) {
		conn_send_failed(conn);
		return;
	}
	conn_flush(conn);
}

static PgConn *
conn_new(guint index, gboolean is_listener)
{
	PgConn *conn = g_new0(PgConn, 1);

	conn->index = index;
	conn->is_listener = is_listener;
	conn->fd = -1;
	conn->backoff_ms = PG_BACKOFF_START_MS;
	g_queue_init(&conn->inflight);
	conn->prepared = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, prepared_release);
	return conn;
}

static void
conn_free(gpointer data)
{
	PgConn *conn = data;

	conn_fail_inflight(conn, "database connection closed");
	conn_close(conn);
	if (conn->retry) {
		g_source_destroy(conn->retry);
		g_clear_pointer(&conn->retry, g_source_unref);
	}
	g_hash_table_unref(conn->prepared);
	g_free(conn->fatal);
	g_free(conn);
}

/* ---- pool lifetime ---- */

static void
listener_free(gpointer data)
{
	PgListener *l = data;

	g_free(l->channel);
	g_free(l);
}

static void
listeners_ensure(void)
{
	if (pool.listeners)
		return;
	pool.listeners = g_ptr_array_new_with_free_func(listener_free);
	pool.channels = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

void
magpie_pg_start(const MagpiePgSettings *settings)
{
	g_return_if_fail(settings != NULL);
	g_return_if_fail(settings->conninfo != NULL);
	g_return_if_fail(!pool.started);

	pool.started = TRUE;
	pool.conninfo = g_strdup(settings->conninfo);
	pool.pool_size = settings->pool_size ? settings->pool_size : PG_DEFAULT_POOL_SIZE;
	pool.query_timeout_ms = settings->query_timeout_ms ? settings->query_timeout_ms
	                                                   : PG_DEFAULT_QUERY_TIMEOUT_MS;
	pool.reconnect_max_ms = settings->reconnect_max_ms ? settings->reconnect_max_ms
	                                                   : PG_DEFAULT_RECONNECT_MAX_MS;
	pool.outage = FALSE;
	listeners_ensure();

	pool.conns = g_ptr_array_new_with_free_func(conn_free);
	for (guint i = 0; i < pool.pool_size; i++)
		g_ptr_array_add(pool.conns, conn_new(i, FALSE));
	pool.listener = conn_new(pool.pool_size, TRUE);
	for (guint i = 0; i < pool.conns->len; i++)
		conn_connect(g_ptr_array_index(pool.conns, i));
	conn_connect(pool.listener);
}

void
magpie_pg_stop(void)
{
	PgOp *op;

	if (!pool.started)
		return;
	pool.started = FALSE;
	g_clear_pointer(&pool.conns, g_ptr_array_unref);
	g_clear_pointer(&pool.listener, conn_free);
	wait_timer_clear();
	while ((op = g_queue_pop_head(&pool.waiting))) {
		/* g_queue_pop_head frees the link. */
		op->wait_link = NULL;
		op_fail(op, MAGPIE_PG_ERROR_UNAVAILABLE, "database unavailable");
		op_unref(op);
	}
	if (pool.listeners) {
		for (guint i = 0; i < pool.listeners->len; i++) {
			PgListener *l = g_ptr_array_index(pool.listeners, i);

			if (!l->removed && l->destroy)
				l->destroy(l->user_data);
			l->removed = TRUE;
		}
		g_hash_table_remove_all(pool.channels);
		listeners_compact();
	}
	g_clear_pointer(&pool.conninfo, g_free);
	pool.outage = FALSE;
}

void
magpie_pg_get_stats(MagpiePgStats *stats_out)
{
	g_return_if_fail(stats_out != NULL);

	memset(stats_out, 0, sizeof(*stats_out));
	for (guint i = 0; pool.conns && i < pool.conns->len; i++) {
		PgConn *c = g_ptr_array_index(pool.conns, i);

		if (c->state == PG_CONN_READY)
			stats_out->connections_up++;
	}
	stats_out->queries = pool.queries;
	stats_out->errors = pool.errors;
	stats_out->queued = g_queue_get_length(&pool.waiting);
}

gboolean
magpie_pg_is_available(void)
{
	return pool_pick() != NULL;
}

/* ---- the public API ---- */

void (*magpie_async_callback_guard)(GAsyncReadyCallback *callback, gpointer *user_data);

static void
op_start(PgOp *op, GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data,
         gpointer source_tag)
{
	/* A module may unload before the answer comes. */
	if (magpie_async_callback_guard)
		magpie_async_callback_guard(&callback, &user_data);
	op->task = g_task_new(NULL, cancellable, callback, user_data);
	g_task_set_source_tag(op->task, source_tag);
	/* We return MAGPIE_PG_ERROR_CANCELLED ourselves. */
	g_task_set_check_cancellable(op->task, FALSE);
	if (cancellable) {
		op->cancellable = g_object_ref(cancellable);
		op->cancel_id =
		        g_cancellable_connect(cancellable, G_CALLBACK(op_cancelled_cb), op, NULL);
		if (g_cancellable_is_cancelled(cancellable)) {
			op_unref(op); /* op_cancelled_cb holds one until the idle runs */
			return;
		}
	}
	pool_submit(op);
}

void
magpie_pg_query_async(const char *sql, guint n_params, const char *const *params,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
	PgOp *op;

	g_return_if_fail(sql != NULL);
	g_return_if_fail(n_params == 0 || params != NULL);

	op = op_new(PG_OP_USER, 1);
	op_set_statement(op, 0, sql, n_params, params);
	op_start(op, cancellable, callback, user_data, magpie_pg_query_async);
}

MagpiePgResult *
magpie_pg_query_finish(GAsyncResult *result, GError **error)
{
	g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);

	return g_task_propagate_pointer(G_TASK(result), error);
}

void
magpie_pg_transaction_async(const char *const *sqls, const guint *n_params,
                            const char *const *const *params, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
	guint n = 0;
	PgOp *op;

	g_return_if_fail(sqls != NULL);

	while (sqls[n]) {
		g_return_if_fail(n_params == NULL || n_params[n] == 0 ||
		                 (params != NULL && params[n] != NULL));
		n++;
	}
	if (n == 0) {
		if (magpie_async_callback_guard)
			magpie_async_callback_guard(&callback, &user_data);
		g_task_report_new_error(NULL, callback, user_data, magpie_pg_transaction_async,
		                        MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY,
		                        "empty transaction");
		return;
	}
	op = op_new(PG_OP_USER, n);
	for (guint i = 0; i < n; i++) {
		guint np = n_params ? n_params[i] : 0;

		op_set_statement(op, i, sqls[i], np, np ? params[i] : NULL);
	}
	op_start(op, cancellable, callback, user_data, magpie_pg_transaction_async);
}

MagpiePgResult *
magpie_pg_transaction_finish(GAsyncResult *result, GError **error)
{
	g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);

	return g_task_propagate_pointer(G_TASK(result), error);
}

void
magpie_pg_result_free(MagpiePgResult *result)
{
	if (!result)
		return;
	g_clear_pointer(&result->res, PQclear);
	g_free(result);
}

int
magpie_pg_result_rows(const MagpiePgResult *result)
{
	g_return_val_if_fail(result != NULL, 0);

	return PQntuples(result->res);
}

int
magpie_pg_result_columns(const MagpiePgResult *result)
{
	g_return_val_if_fail(result != NULL, 0);

	return PQnfields(result->res);
}

const char *
magpie_pg_result_get(const MagpiePgResult *result, int row, int column)
{
	g_return_val_if_fail(result != NULL, NULL);
	g_return_val_if_fail(row >= 0 && row < PQntuples(result->res), NULL);
	g_return_val_if_fail(column >= 0 && column < PQnfields(result->res), NULL);

	if (PQgetisnull(result->res, row, column))
		return NULL;
	return PQgetvalue(result->res, row, column);
}

gint64
magpie_pg_result_affected(const MagpiePgResult *result)
{
	const char *n;

	g_return_val_if_fail(result != NULL, 0);

	n = PQcmdTuples(result->res);
	return (n && *n) ? g_ascii_strtoll(n, NULL, 10) : 0;
}

guint
magpie_pg_listen(const char *channel, MagpiePgNotifyFunc callback, gpointer user_data,
                 GDestroyNotify destroy)
{
	PgListener *l;
	guint count;

	g_return_val_if_fail(channel != NULL && *channel != '\0', 0);
	g_return_val_if_fail(callback != NULL, 0);

	listeners_ensure();
	l = g_new0(PgListener, 1);
	l->id = ++pool.next_listener_id;
	l->channel = g_strdup(channel);
	l->callback = callback;
	l->user_data = user_data;
	l->destroy = destroy;
	g_ptr_array_add(pool.listeners, l);

	count = GPOINTER_TO_UINT(g_hash_table_lookup(pool.channels, channel));
	g_hash_table_replace(pool.channels, g_strdup(channel), GUINT_TO_POINTER(count + 1));
	if (count == 0)
		listener_send(channel, TRUE);
	return l->id;
}

void
magpie_pg_unlisten(guint id)
{
	PgListener *l = NULL;
	guint count;

	g_return_if_fail(id != 0);

	for (guint i = 0; pool.listeners && i < pool.listeners->len; i++) {
		PgListener *candidate = g_ptr_array_index(pool.listeners, i);

		if (candidate->id == id && !candidate->removed) {
			l = candidate;
			break;
		}
	}
	g_return_if_fail(l != NULL);

	l->removed = TRUE;
	count = GPOINTER_TO_UINT(g_hash_table_lookup(pool.channels, l->channel));
	if (count <= 1) {
		g_hash_table_remove(pool.channels, l->channel);
		listener_send(l->channel, FALSE);
	} else {
		g_hash_table_replace(pool.channels, g_strdup(l->channel),
		                     GUINT_TO_POINTER(count - 1));
	}
	if (l->destroy)
		l->destroy(l->user_data);
	listeners_compact();
}
