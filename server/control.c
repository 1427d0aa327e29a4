/* The control socket: a UNIX stream socket (mode 0660), one request per
 * connection. The client sends one line holding a JSON array of strings
 * (control-proto.c parses it); the server answers "ok" or "error", a body
 * (human text, or one JSON value after "--json") and closes. docs/control.md
 * documents every command and its output; tests assert on that text, so
 * change both together.
 *
 * A request is a MagpieControlReply: it owns the connection from the first
 * byte read to the last byte written. Core commands and module commands
 * share one calling convention (MagpieControlFunc): return FALSE + error,
 * or TRUE having written the body, or TRUE after magpie_control_reply_ref()
 * and answer later with magpie_control_reply_finish(). */
#include "control.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <magpie/magpie.h>

#include "accounts.h"
#include "control-proto.h"
#include "module-host.h"
#include "pg-pool.h"
#include "server.h"
#include "session-private.h"
#include "stats.h"

/* A client that has not sent its line by then is dropped. */
#define CONTROL_READ_TIMEOUT_S 30
#define CONTROL_READ_CHUNK     4096

struct _MagpieControlReply {
	guint ref_count;
	GSocketConnection *connection; /* NULL once closed */
	GCancellable *cancellable;
	GByteArray *input;
	guint8 chunk[CONTROL_READ_CHUNK];
	GSource *timeout;
	gboolean is_json;
	gboolean finished;
	GString *body;
	GBytes *response; /* being written */
};

static GSocketService *control_service;
static char *control_path;
/* Requests with an open connection, so stop can close them. */
static GHashTable *control_requests;

static void control_reply_unref(MagpieControlReply *reply);
static char *control_word(const char *word);

/* Reply objects. */

static MagpieControlReply *
control_reply_new(GSocketConnection *connection)
{
	MagpieControlReply *reply = g_new0(MagpieControlReply, 1);

	reply->ref_count = 1;
	reply->connection = g_object_ref(connection);
	reply->cancellable = g_cancellable_new();
	reply->input = g_byte_array_new();
	reply->body = g_string_new(NULL);
	if (control_requests == NULL)
		control_requests = g_hash_table_new(NULL, NULL);
	g_hash_table_add(control_requests, reply);
	return reply;
}

static void
control_reply_close(MagpieControlReply *reply)
{
	if (reply->timeout != NULL) {
		g_source_destroy(reply->timeout);
		g_clear_pointer(&reply->timeout, g_source_unref);
	}
	if (reply->connection == NULL)
		return;
	g_cancellable_cancel(reply->cancellable);
	/* A UNIX socket closes at once; nothing to wait for. */
	g_io_stream_close(G_IO_STREAM(reply->connection), NULL, NULL);
	g_clear_object(&reply->connection);
	if (control_requests != NULL)
		g_hash_table_remove(control_requests, reply);
}

static void
control_reply_unref(MagpieControlReply *reply)
{
	g_return_if_fail(reply != NULL && reply->ref_count > 0);

	if (--reply->ref_count > 0)
		return;
	if (!reply->finished)
		g_warning("control: request dropped without a reply");
	control_reply_close(reply);
	g_clear_object(&reply->cancellable);
	g_byte_array_unref(reply->input);
	g_string_free(reply->body, TRUE);
	g_clear_pointer(&reply->response, g_bytes_unref);
	g_free(reply);
}

gboolean
magpie_control_reply_is_json(MagpieControlReply *reply)
{
	g_return_val_if_fail(reply != NULL, FALSE);
	return reply->is_json;
}

void
magpie_control_reply_printf(MagpieControlReply *reply, const char *fmt, ...)
{
	va_list ap;

	g_return_if_fail(reply != NULL);
	g_return_if_fail(fmt != NULL);
	g_return_if_fail(!reply->finished);

	va_start(ap, fmt);
	g_string_append_vprintf(reply->body, fmt, ap);
	va_end(ap);
	if (!reply->is_json &&
	    (reply->body->len == 0 || reply->body->str[reply->body->len - 1] != '\n'))
		g_string_append_c(reply->body, '\n');
}

MagpieControlReply *
magpie_control_reply_ref(MagpieControlReply *reply)
{
	g_return_val_if_fail(reply != NULL && reply->ref_count > 0, NULL);
	reply->ref_count++;
	return reply;
}

static void
control_write_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	MagpieControlReply *reply = user_data;
	g_autoptr(GError) error = NULL;

	if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), result, NULL, &error) &&
	    !g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
		g_debug("control: client went away before the reply: %s", error->message);
	control_reply_close(reply);
	control_reply_unref(reply);
}

/* Send "ok"/"error" and the body; the one and only answer to the request. */
static void
control_reply_send(MagpieControlReply *reply, const GError *error)
{
	GString *response;

	if (reply->finished) {
		g_warning("control: a request was answered twice; ignoring the second answer");
		return;
	}
	reply->finished = TRUE;
	if (reply->timeout != NULL) {
		g_source_destroy(reply->timeout);
		g_clear_pointer(&reply->timeout, g_source_unref);
	}
	if (reply->connection == NULL)
		return; /* the server is stopping; drop it */

	response = g_string_new(error == NULL ? "ok\n" : "error\n");
	if (error != NULL) {
		if (reply->is_json) {
			g_string_append(response, "{\"error\":");
			magpie_json_append_string(response, error->message);
			g_string_append(response, "}\n");
		} else {
			g_string_append(response, error->message);
			g_string_append_c(response, '\n');
		}
	} else if (reply->is_json) {
		if (reply->body->len == 0)
			g_string_append(response, "{}");
		else
			g_string_append_len(response, reply->body->str, reply->body->len);
		if (response->str[response->len - 1] != '\n')
			g_string_append_c(response, '\n');
	} else {
		g_string_append_len(response, reply->body->str, reply->body->len);
		if (reply->body->len > 0 && response->str[response->len - 1] != '\n')
			g_string_append_c(response, '\n');
	}
	reply->response = g_string_free_to_bytes(response);

	g_output_stream_write_all_async(
	        g_io_stream_get_output_stream(G_IO_STREAM(reply->connection)),
	        g_bytes_get_data(reply->response, NULL), g_bytes_get_size(reply->response),
	        G_PRIORITY_DEFAULT, reply->cancellable, control_write_done,
	        magpie_control_reply_ref(reply));
}

void
magpie_control_reply_finish(MagpieControlReply *reply, const GError *error)
{
	g_return_if_fail(reply != NULL && reply->ref_count > 0);

	control_reply_send(reply, error);
	control_reply_unref(reply);
}

static void G_GNUC_PRINTF(2, 3) control_reply_fail(MagpieControlReply *reply, const char *fmt, ...)
{
	g_autoptr(GError) error = NULL;
	va_list ap;

	va_start(ap, fmt);
	error = g_error_new_valist(MAGPIE_CONTROL_ERROR, MAGPIE_CONTROL_ERROR_FAILED, fmt, ap);
	va_end(ap);
	control_reply_send(reply, error);
}

/* JSON building helpers (bodies are built by hand: no JSON library). */

static void
json_key(GString *out, gboolean *first, const char *key)
{
	if (!*first)
		g_string_append_c(out, ',');
	*first = FALSE;
	magpie_json_append_string(out, key);
	g_string_append_c(out, ':');
}

static void
json_string_member(GString *out, gboolean *first, const char *key, const char *value)
{
	json_key(out, first, key);
	if (value == NULL)
		g_string_append(out, "null");
	else
		magpie_json_append_string(out, value);
}

static void
json_int_member(GString *out, gboolean *first, const char *key, gint64 value)
{
	json_key(out, first, key);
	g_string_append_printf(out, "%" G_GINT64_FORMAT, value);
}

static void
json_uint_member(GString *out, gboolean *first, const char *key, guint64 value)
{
	json_key(out, first, key);
	g_string_append_printf(out, "%" G_GUINT64_FORMAT, value);
}

static void
json_bool_member(GString *out, gboolean *first, const char *key, gboolean value)
{
	json_key(out, first, key);
	g_string_append(out, value ? "true" : "false");
}

/* Core commands. */

typedef struct {
	const char *group;   /* first word */
	const char *command; /* second word, or NULL for one-word commands */
	guint min_args;      /* after the command words */
	guint max_args;
	const char *usage; /* arguments */
	const char *doc;
	MagpieControlFunc func;
} ControlCommand;

static const ControlCommand control_commands[];

/* account add|passwd|disable|enable|delete */

typedef struct {
	MagpieControlReply *reply;
	MagpieAccountOp op;
	char *jid;
} AccountOpData;

static void
account_op_data_free(AccountOpData *data)
{
	g_free(data->jid);
	g_free(data);
}

static void
account_op_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	AccountOpData *data = user_data;
	MagpieControlReply *reply = data->reply;
	g_autoptr(GError) error = NULL;
	const char *status = NULL;
	guint closed = 0;

	if (!magpie_account_op_finish(result, &error)) {
		g_autofree char *subject = control_word(data->jid);

		g_info("control: account operation on %s failed: %s", subject, error->message);
		magpie_control_reply_finish(reply, error);
		account_op_data_free(data);
		return;
	}

	switch (data->op) {
	case MAGPIE_ACCOUNT_ADD:
		status = "created";
		break;
	case MAGPIE_ACCOUNT_PASSWD:
		status = "password changed";
		break;
	case MAGPIE_ACCOUNT_DISABLE:
		status = "disabled";
		closed = magpie_sessions_kick(data->jid, "not-authorized", "Account disabled");
		break;
	case MAGPIE_ACCOUNT_ENABLE:
		status = "enabled";
		break;
	case MAGPIE_ACCOUNT_DELETE:
		status = "deleted";
		closed = magpie_sessions_kick(data->jid, "not-authorized", "Account deleted");
		break;
	}

	if (reply->is_json) {
		gboolean first = TRUE;

		g_string_append_c(reply->body, '{');
		json_string_member(reply->body, &first, "jid", data->jid);
		json_string_member(reply->body, &first, "status", status);
		if (data->op == MAGPIE_ACCOUNT_DISABLE || data->op == MAGPIE_ACCOUNT_DELETE)
			json_uint_member(reply->body, &first, "sessions_closed", closed);
		g_string_append_c(reply->body, '}');
	} else if (data->op == MAGPIE_ACCOUNT_PASSWD) {
		g_string_append_printf(reply->body, "password of %s changed\n", data->jid);
	} else {
		g_string_append_printf(reply->body, "account %s %s", data->jid, status);
		if (closed > 0)
			g_string_append_printf(reply->body, " (%u session%s closed)", closed,
			                       closed == 1 ? "" : "s");
		g_string_append_c(reply->body, '\n');
	}
	magpie_control_reply_finish(reply, NULL);
	account_op_data_free(data);
}

static gboolean
account_op_start(MagpieControlReply *reply, MagpieAccountOp op, const char *const *argv)
{
	AccountOpData *data = g_new0(AccountOpData, 1);
	const char *password =
	        (op == MAGPIE_ACCOUNT_ADD || op == MAGPIE_ACCOUNT_PASSWD) ? argv[1] : NULL;

	data->reply = magpie_control_reply_ref(reply);
	data->op = op;
	data->jid = g_strdup(argv[0]);
	magpie_account_op_async(op, data->jid, password, account_op_done, data);
	return TRUE;
}

static gboolean
cmd_account_add(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                GError **error)
{
	return account_op_start(reply, MAGPIE_ACCOUNT_ADD, argv);
}

static gboolean
cmd_account_passwd(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                   GError **error)
{
	return account_op_start(reply, MAGPIE_ACCOUNT_PASSWD, argv);
}

static gboolean
cmd_account_disable(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                    GError **error)
{
	return account_op_start(reply, MAGPIE_ACCOUNT_DISABLE, argv);
}

static gboolean
cmd_account_enable(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                   GError **error)
{
	return account_op_start(reply, MAGPIE_ACCOUNT_ENABLE, argv);
}

static gboolean
cmd_account_delete(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                   GError **error)
{
	return account_op_start(reply, MAGPIE_ACCOUNT_DELETE, argv);
}

static void
account_list_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	MagpieControlReply *reply = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) accounts = magpie_account_list_finish(result, &error);

	if (accounts == NULL) {
		magpie_control_reply_finish(reply, error);
		return;
	}

	if (reply->is_json) {
		g_string_append_c(reply->body, '[');
		for (guint i = 0; i < accounts->len; i++) {
			MagpieAccountInfo *info = g_ptr_array_index(accounts, i);
			gboolean first = TRUE;

			if (i > 0)
				g_string_append_c(reply->body, ',');
			g_string_append_c(reply->body, '{');
			json_string_member(reply->body, &first, "jid", info->jid);
			json_bool_member(reply->body, &first, "disabled", info->disabled);
			json_int_member(reply->body, &first, "created", info->created);
			g_string_append_c(reply->body, '}');
		}
		g_string_append_c(reply->body, ']');
	} else if (accounts->len == 0) {
		g_string_append(reply->body, "no accounts\n");
	} else {
		g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func(g_free);

		g_ptr_array_add(cells, g_strdup("JID"));
		g_ptr_array_add(cells, g_strdup("STATUS"));
		g_ptr_array_add(cells, g_strdup("CREATED"));
		for (guint i = 0; i < accounts->len; i++) {
			MagpieAccountInfo *info = g_ptr_array_index(accounts, i);

			g_ptr_array_add(cells, g_strdup(info->jid));
			g_ptr_array_add(cells, g_strdup(info->disabled ? "disabled" : "enabled"));
			g_ptr_array_add(cells, magpie_control_format_time(info->created));
		}
		magpie_control_format_table(reply->body, 3, (const char *const *) cells->pdata,
		                            cells->len);
	}
	magpie_control_reply_finish(reply, NULL);
}

static gboolean
cmd_account_list(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                 GError **error)
{
	magpie_account_list_async(argv[0], account_list_done, magpie_control_reply_ref(reply));
	return TRUE;
}

/* session list|kick */

static gboolean
cmd_session_list(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                 GError **error)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_list();

	if (reply->is_json) {
		g_string_append_c(reply->body, '[');
		for (guint i = 0; sessions != NULL && i < sessions->len; i++) {
			MagpieSessionInfo *info = g_ptr_array_index(sessions, i);
			gboolean first = TRUE;

			if (i > 0)
				g_string_append_c(reply->body, ',');
			g_string_append_c(reply->body, '{');
			json_string_member(reply->body, &first, "jid", info->jid);
			json_string_member(reply->body, &first, "address", info->peer);
			json_string_member(reply->body, &first, "tls", info->tls);
			json_string_member(reply->body, &first, "mechanism", info->mechanism);
			json_int_member(reply->body, &first, "connected", info->connected);
			json_bool_member(reply->body, &first, "available", info->available);
			json_int_member(reply->body, &first, "priority", info->priority);
			g_string_append_c(reply->body, '}');
		}
		g_string_append_c(reply->body, ']');
	} else if (sessions == NULL || sessions->len == 0) {
		g_string_append(reply->body, "no sessions\n");
	} else {
		g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func(g_free);
		const char *const header[] = {
			"JID", "ADDRESS", "TLS", "AUTH", "STATE", "PRIORITY", "CONNECTED",
		};

		for (guint i = 0; i < G_N_ELEMENTS(header); i++)
			g_ptr_array_add(cells, g_strdup(header[i]));
		for (guint i = 0; i < sessions->len; i++) {
			MagpieSessionInfo *info = g_ptr_array_index(sessions, i);

			g_ptr_array_add(cells, g_strdup(info->jid));
			g_ptr_array_add(cells, g_strdup(info->peer));
			g_ptr_array_add(cells, g_strdup(info->tls));
			g_ptr_array_add(cells, g_strdup(info->mechanism));
			g_ptr_array_add(cells,
			                g_strdup(info->available ? "available" : "unavailable"));
			g_ptr_array_add(cells, g_strdup_printf("%d", info->priority));
			g_ptr_array_add(cells, magpie_control_format_time(info->connected));
		}
		magpie_control_format_table(reply->body, G_N_ELEMENTS(header),
		                            (const char *const *) cells->pdata, cells->len);
	}
	return TRUE;
}

static gboolean
cmd_session_kick(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                 GError **error)
{
	guint closed =
	        magpie_sessions_kick(argv[0], "policy-violation", "Kicked by an administrator");

	if (closed == 0) {
		g_set_error(error, MAGPIE_CONTROL_ERROR, MAGPIE_CONTROL_ERROR_FAILED,
		            "no session of %s", argv[0]);
		return FALSE;
	}
	if (reply->is_json) {
		gboolean first = TRUE;

		g_string_append_c(reply->body, '{');
		json_string_member(reply->body, &first, "jid", argv[0]);
		json_uint_member(reply->body, &first, "sessions_closed", closed);
		g_string_append_c(reply->body, '}');
	} else {
		g_string_append_printf(reply->body, "%u session%s of %s closed\n", closed,
		                       closed == 1 ? "" : "s", argv[0]);
	}
	return TRUE;
}

/* module list|load|unload|reload */

static gboolean
cmd_module_list(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                GError **error)
{
	g_autoptr(GPtrArray) names = magpie_modules_loaded();
	g_autoptr(GPtrArray) cells = g_ptr_array_new();

	if (reply->is_json)
		g_string_append_c(reply->body, '[');
	g_ptr_array_add(cells, (gpointer) "NAME");
	g_ptr_array_add(cells, (gpointer) "DESCRIPTION");
	for (guint i = 0; names != NULL && i < names->len; i++) {
		const char *name = g_ptr_array_index(names, i);
		MagpieModule *module = magpie_modules_find(name);
		const MagpieModuleInfo *info = module != NULL ? magpie_module_info(module) : NULL;
		const char *description = info != NULL ? info->description : NULL;

		if (reply->is_json) {
			gboolean first = TRUE;

			if (i > 0)
				g_string_append_c(reply->body, ',');
			g_string_append_c(reply->body, '{');
			json_string_member(reply->body, &first, "name", name);
			json_string_member(reply->body, &first, "description", description);
			json_key(reply->body, &first, "commands");
			g_string_append_c(reply->body, '[');
			for (guint j = 0; info != NULL && info->commands != NULL &&
			                  info->commands[j].name != NULL;
			     j++) {
				if (j > 0)
					g_string_append_c(reply->body, ',');
				magpie_json_append_string(reply->body, info->commands[j].name);
			}
			g_string_append(reply->body, "]}");
		}
		g_ptr_array_add(cells, (gpointer) name);
		g_ptr_array_add(cells, (gpointer) description);
	}
	if (reply->is_json)
		g_string_append_c(reply->body, ']');
	else if (cells->len == 2)
		g_string_append(reply->body, "no modules loaded\n");
	else
		magpie_control_format_table(reply->body, 2, (const char *const *) cells->pdata,
		                            cells->len);
	return TRUE;
}

static void
module_done(MagpieControlReply *reply, const char *name, const char *status)
{
	if (reply->is_json) {
		gboolean first = TRUE;

		g_string_append_c(reply->body, '{');
		json_string_member(reply->body, &first, "module", name);
		json_string_member(reply->body, &first, "status", status);
		g_string_append_c(reply->body, '}');
	} else {
		g_string_append_printf(reply->body, "module %s %s\n", name, status);
	}
}

static gboolean
cmd_module_load(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                GError **error)
{
	if (!magpie_modules_load(argv[0], error))
		return FALSE;
	module_done(reply, argv[0], "loaded");
	return TRUE;
}

static gboolean
cmd_module_unload(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                  GError **error)
{
	if (!magpie_modules_unload(argv[0], FALSE, error))
		return FALSE;
	module_done(reply, argv[0], "unloaded");
	return TRUE;
}

static gboolean
cmd_module_reload(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply,
                  GError **error)
{
	if (!magpie_modules_reload(argv[0], error))
		return FALSE;
	module_done(reply, argv[0], "reloaded");
	return TRUE;
}

/* reload, stats, help */

static gboolean
cmd_reload(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply, GError **error)
{
	if (!magpie_server_reload(error))
		return FALSE;
	if (reply->is_json)
		g_string_append(reply->body, "{\"status\":\"reloaded\"}");
	else
		g_string_append(reply->body, "configuration reloaded\n");
	return TRUE;
}

static gboolean
cmd_stats(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply, GError **error)
{
	MagpiePgStats pg = { 0 };
	gsize rss_kib = 0, heap_kib = 0;
	gint64 started = magpie_server_start_time();
	gint64 uptime = started > 0 ? (g_get_real_time() - started) / G_USEC_PER_SEC : 0;

	magpie_pg_get_stats(&pg);
	magpie_stats_memory(&rss_kib, &heap_kib);

	if (reply->is_json) {
		GString *b = reply->body;
		gboolean first = TRUE;

		g_string_append_c(b, '{');
		json_uint_member(b, &first, "connections_open", magpie_stats.connections_open);
		json_uint_member(b, &first, "connections_total", magpie_stats.connections_total);
		json_uint_member(b, &first, "sessions_bound", magpie_stats.sessions_bound);
		json_uint_member(b, &first, "stanzas_in", magpie_stats.stanzas_in);
		json_uint_member(b, &first, "stanzas_out", magpie_stats.stanzas_out);
		json_uint_member(b, &first, "bytes_in", magpie_stats.bytes_in);
		json_uint_member(b, &first, "bytes_out", magpie_stats.bytes_out);
		json_uint_member(b, &first, "auth_failures", magpie_stats.auth_failures);
		json_uint_member(b, &first, "db_connections_up", pg.connections_up);
		json_uint_member(b, &first, "db_queued", pg.queued);
		json_uint_member(b, &first, "db_queries", pg.queries);
		json_uint_member(b, &first, "db_errors", pg.errors);
		json_uint_member(b, &first, "memory_rss_kib", rss_kib);
		json_uint_member(b, &first, "memory_heap_kib", heap_kib);
		json_int_member(b, &first, "uptime_seconds", uptime);
		g_string_append_c(b, '}');
	} else {
		g_autofree char *duration = magpie_control_format_duration(uptime);
		g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func(g_free);

#define ROW(name, ...)                                                                             \
	do {                                                                                       \
		g_ptr_array_add(cells, g_strdup(name));                                            \
		g_ptr_array_add(cells, g_strdup_printf(__VA_ARGS__));                              \
	} while (0)
		ROW("connections open", "%u", magpie_stats.connections_open);
		ROW("connections total", "%" G_GUINT64_FORMAT, magpie_stats.connections_total);
		ROW("sessions bound", "%u", magpie_stats.sessions_bound);
		ROW("stanzas in", "%" G_GUINT64_FORMAT, magpie_stats.stanzas_in);
		ROW("stanzas out", "%" G_GUINT64_FORMAT, magpie_stats.stanzas_out);
		ROW("bytes in", "%" G_GUINT64_FORMAT, magpie_stats.bytes_in);
		ROW("bytes out", "%" G_GUINT64_FORMAT, magpie_stats.bytes_out);
		ROW("auth failures", "%" G_GUINT64_FORMAT, magpie_stats.auth_failures);
		ROW("database connections", "%u", pg.connections_up);
		ROW("database queued", "%u", pg.queued);
		ROW("database queries", "%" G_GUINT64_FORMAT, pg.queries);
		ROW("database errors", "%" G_GUINT64_FORMAT, pg.errors);
		ROW("memory rss", "%" G_GSIZE_FORMAT " KiB", rss_kib);
		ROW("memory heap", "%" G_GSIZE_FORMAT " KiB", heap_kib);
		ROW("uptime", "%s", duration);
#undef ROW
		magpie_control_format_table(reply->body, 2, (const char *const *) cells->pdata,
		                            cells->len);
	}
	return TRUE;
}

static char *
command_usage(const ControlCommand *cmd)
{
	return g_strjoin(" ", cmd->group, cmd->command != NULL ? cmd->command : "",
	                 cmd->usage != NULL ? cmd->usage : "", NULL);
}

/* "a  b  " -> "a b" */
static char *
squeeze(char *s)
{
	g_auto(GStrv) parts = g_strsplit(g_strstrip(s), " ", -1);
	GString *out = g_string_new(NULL);

	for (guint i = 0; parts[i] != NULL; i++) {
		if (parts[i][0] == '\0')
			continue;
		if (out->len > 0)
			g_string_append_c(out, ' ');
		g_string_append(out, parts[i]);
	}
	g_free(s);
	return g_string_free(out, FALSE);
}

static gboolean
cmd_help(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply, GError **error)
{
	g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) names = magpie_modules_loaded();

	for (const ControlCommand *cmd = control_commands; cmd->group != NULL; cmd++) {
		g_ptr_array_add(cells, squeeze(command_usage(cmd)));
		g_ptr_array_add(cells, g_strdup(cmd->doc));
	}
	for (guint i = 0; names != NULL && i < names->len; i++) {
		const char *name = g_ptr_array_index(names, i);
		MagpieModule *module = magpie_modules_find(name);
		const MagpieModuleInfo *info = module != NULL ? magpie_module_info(module) : NULL;

		for (guint j = 0;
		     info != NULL && info->commands != NULL && info->commands[j].name != NULL;
		     j++) {
			const MagpieControlSpec *spec = &info->commands[j];

			g_ptr_array_add(
			        cells,
			        squeeze(g_strjoin(" ", name, spec->name,
			                          spec->usage != NULL ? spec->usage : "", NULL)));
			g_ptr_array_add(cells, g_strdup(spec->doc));
		}
	}

	if (reply->is_json) {
		g_string_append_c(reply->body, '[');
		for (guint i = 0; i + 1 < cells->len; i += 2) {
			gboolean first = TRUE;

			if (i > 0)
				g_string_append_c(reply->body, ',');
			g_string_append_c(reply->body, '{');
			json_string_member(reply->body, &first, "usage",
			                   g_ptr_array_index(cells, i));
			json_string_member(reply->body, &first, "doc",
			                   g_ptr_array_index(cells, i + 1));
			g_string_append_c(reply->body, '}');
		}
		g_string_append_c(reply->body, ']');
	} else {
		magpie_control_format_table(reply->body, 2, (const char *const *) cells->pdata,
		                            cells->len);
	}
	return TRUE;
}

static const ControlCommand control_commands[] = {
	{ "account", "add", 2, 2, "JID PASSWORD", "Create an account", cmd_account_add },
	{ "account", "passwd", 2, 2, "JID PASSWORD", "Change an account's password",
	  cmd_account_passwd },
	{ "account", "disable", 1, 1, "JID", "Disable an account and close its sessions",
	  cmd_account_disable },
	{ "account", "enable", 1, 1, "JID", "Enable a disabled account", cmd_account_enable },
	{ "account", "delete", 1, 1, "JID", "Delete an account and close its sessions",
	  cmd_account_delete },
	{ "account", "list", 0, 1, "[HOST]", "List accounts (of one host)", cmd_account_list },
	{ "session", "list", 0, 0, NULL, "List client sessions", cmd_session_list },
	{ "session", "kick", 1, 1, "JID", "Close a session (full JID) or all of an account's",
	  cmd_session_kick },
	{ "module", "list", 0, 0, NULL, "List loaded modules", cmd_module_list },
	{ "module", "load", 1, 1, "NAME", "Load a module", cmd_module_load },
	{ "module", "unload", 1, 1, "NAME", "Unload a module", cmd_module_unload },
	{ "module", "reload", 1, 1, "NAME", "Unload and load a module again", cmd_module_reload },
	{ "reload", NULL, 0, 0, NULL, "Re-read the configuration and certificates", cmd_reload },
	{ "stats", NULL, 0, 0, NULL, "Show server statistics", cmd_stats },
	{ "help", NULL, 0, 0, NULL, "List commands, including those of loaded modules", cmd_help },
	{ NULL }
};

/* Dispatch. */

/* Run @func; finish the reply now unless the handler took a ref to answer
 * later. */
static void
control_run(MagpieControlFunc func, MagpieModule *mod, const char *const *args,
            MagpieControlReply *reply, const char *usage)
{
	g_autoptr(GError) error = NULL;
	guint refs = reply->ref_count;
	gboolean ok = func(mod, args, reply, &error);

	if (!ok) {
		if (error == NULL)
			error = g_error_new(MAGPIE_CONTROL_ERROR, MAGPIE_CONTROL_ERROR_USAGE,
			                    "usage: %s", usage);
		control_reply_send(reply, error);
	} else if (reply->ref_count == refs && !reply->finished) {
		control_reply_send(reply, NULL);
	}
}

/* A word from the request, shortened and escaped for a message or the log
 * (words are valid UTF-8: the parser checked). */
static char *
control_word(const char *word)
{
	GString *out = g_string_new(NULL);
	glong n = 0;

	for (const char *p = word; *p != '\0'; p = g_utf8_next_char(p), n++) {
		guchar ch = (guchar) *p;

		if (n == 40) {
			g_string_append(out, "...");
			break;
		}
		if (ch < 0x20 || ch == 0x7f)
			g_string_append_printf(out, "\\x%02x", ch);
		else if (ch == '"' || ch == '\\')
			g_string_append_printf(out, "\\%c", ch);
		else
			g_string_append_len(out, p, g_utf8_next_char(p) - p);
	}
	return g_string_free(out, FALSE);
}

static void
control_dispatch(MagpieControlReply *reply, char **argv)
{
	guint argc = g_strv_length(argv);
	const char *group;
	gboolean group_known = FALSE;
	const MagpieControlSpec *spec;
	MagpieModule *mod = NULL;
	g_autofree char *word0 = NULL;
	g_autofree char *word1 = NULL;

	if (argc == 0) {
		control_reply_fail(reply, "no command; try \"help\"");
		return;
	}
	group = strcmp(argv[0], "sessions") == 0 ? "session" : argv[0];
	word0 = control_word(argv[0]);
	word1 = argc >= 2 ? control_word(argv[1]) : NULL;

	for (const ControlCommand *cmd = control_commands; cmd->group != NULL; cmd++) {
		guint words = cmd->command != NULL ? 2 : 1;
		g_autofree char *usage = NULL;

		if (strcmp(cmd->group, group) != 0)
			continue;
		group_known = TRUE;
		if (cmd->command != NULL && (argc < 2 || strcmp(cmd->command, argv[1]) != 0))
			continue;
		usage = squeeze(command_usage(cmd));
		if (argc - words < cmd->min_args || argc - words > cmd->max_args) {
			control_reply_fail(reply, "usage: %s", usage);
			return;
		}
		/* Log the command and the JID or host, never a password. */
		if (cmd->command != NULL && argc > words) {
			g_autofree char *subject = control_word(argv[words]);

			g_info("control: %s %s %s", group, cmd->command, subject);
		} else {
			g_info("control: %s%s%s", group, cmd->command != NULL ? " " : "",
			       cmd->command != NULL ? cmd->command : "");
		}
		control_run(cmd->func, NULL, (const char *const *) argv + words, reply, usage);
		return;
	}
	if (group_known) {
		g_autoptr(GString) text = g_string_new(NULL);

		if (argc < 2)
			g_string_append_printf(text, "%s: missing command", group);
		else
			g_string_append_printf(text, "%s: unknown command \"%s\"", group, word1);
		for (const ControlCommand *cmd = control_commands; cmd->group != NULL; cmd++) {
			g_autofree char *usage = NULL;

			if (strcmp(cmd->group, group) != 0)
				continue;
			usage = squeeze(command_usage(cmd));
			g_string_append_printf(text, "\nusage: %s", usage);
		}
		control_reply_fail(reply, "%s", text->str);
		return;
	}

	if (argc >= 2) {
		spec = magpie_modules_find_command(argv[0], argv[1], &mod);
		if (spec != NULL && spec->func != NULL) {
			g_autofree char *usage =
			        squeeze(g_strjoin(" ", argv[0], argv[1],
			                          spec->usage != NULL ? spec->usage : "", NULL));

			/* Arguments may be secrets: log only the command words. */
			g_info("control: %s %s", argv[0], argv[1]);
			control_run(spec->func, mod, (const char *const *) argv + 2, reply, usage);
			return;
		}
	}
	if (magpie_modules_find(argv[0]) != NULL) {
		if (argc >= 2)
			control_reply_fail(reply, "%s: unknown command \"%s\"; try \"help\"", word0,
			                   word1);
		else
			control_reply_fail(reply, "%s: missing command; try \"help\"", word0);
		return;
	}
	control_reply_fail(reply, "unknown command \"%s\"; try \"help\"", word0);
}

static void
control_handle_line(MagpieControlReply *reply, const char *line, gsize len)
{
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) argv = NULL;

	/* The line is complete; a slow handler may take as long as it needs. */
	if (reply->timeout != NULL) {
		g_source_destroy(reply->timeout);
		g_clear_pointer(&reply->timeout, g_source_unref);
	}
	/* Even a bad request may ask for a JSON error. */
	if (len >= 9 && memcmp(line, "[\"--json\"", 9) == 0)
		reply->is_json = TRUE;
	argv = magpie_control_parse_request(line, len, &reply->is_json, &error);
	if (argv == NULL) {
		g_info("control: bad request: %s", error->message);
		control_reply_send(reply, error);
		return;
	}
	control_dispatch(reply, argv);
}

static void control_read_next(MagpieControlReply *reply);

static void
control_read_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	MagpieControlReply *reply = user_data;
	g_autoptr(GError) error = NULL;
	gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), result, &error);
	const guint8 *newline;

	if (n < 0) {
		if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
			g_debug("control: read failed: %s", error->message);
		reply->finished = TRUE; /* nobody to answer */
		control_reply_close(reply);
		control_reply_unref(reply);
		return;
	}
	if (n == 0 && reply->input->len == 0) {
		reply->finished = TRUE;
		control_reply_close(reply);
		control_reply_unref(reply);
		return;
	}

	g_byte_array_append(reply->input, reply->chunk, (guint) n);
	newline = memchr(reply->input->data, '\n', reply->input->len);
	if (newline != NULL) {
		control_handle_line(reply, (const char *) reply->input->data,
		                    newline - reply->input->data);
	} else if (reply->input->len > MAGPIE_CONTROL_MAX_LINE) {
		g_autoptr(GError) too_long =
		        g_error_new(MAGPIE_CONTROL_ERROR, MAGPIE_CONTROL_ERROR_TOO_LONG,
		                    "request longer than %d bytes", MAGPIE_CONTROL_MAX_LINE);

		g_info("control: bad request: %s", too_long->message);
		control_reply_send(reply, too_long);
	} else if (n == 0) {
		/* EOF without a newline: take what came as the line. */
		control_handle_line(reply, (const char *) reply->input->data, reply->input->len);
	} else {
		control_read_next(reply);
		return;
	}
	control_reply_unref(reply);
}

/* Continues the reading ref. */
static void
control_read_next(MagpieControlReply *reply)
{
	g_input_stream_read_async(g_io_stream_get_input_stream(G_IO_STREAM(reply->connection)),
	                          reply->chunk, sizeof(reply->chunk), G_PRIORITY_DEFAULT,
	                          reply->cancellable, control_read_done, reply);
}

static gboolean
control_read_timeout(gpointer user_data)
{
	MagpieControlReply *reply = user_data;

	g_debug("control: client sent no request in %d s", CONTROL_READ_TIMEOUT_S);
	g_clear_pointer(&reply->timeout, g_source_unref);
	g_cancellable_cancel(reply->cancellable);
	return G_SOURCE_REMOVE;
}

static gboolean
control_incoming(GSocketService *service, GSocketConnection *connection, GObject *source_object,
                 gpointer user_data)
{
	MagpieControlReply *reply = control_reply_new(connection);

	reply->timeout = g_timeout_source_new_seconds(CONTROL_READ_TIMEOUT_S);
	g_source_set_callback(reply->timeout, control_read_timeout, reply, NULL);
	g_source_attach(reply->timeout, g_main_context_get_thread_default());
	control_read_next(reply);
	return TRUE;
}

/* Start and stop. */

/* Is a server answering on @address? */
static gboolean
control_socket_in_use(GSocketAddress *address)
{
	g_autoptr(GSocket) probe = NULL;
	g_autoptr(GError) error = NULL;

	probe = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
	                     NULL);
	if (probe == NULL)
		return FALSE;
	g_socket_set_blocking(probe, FALSE);
	if (g_socket_connect(probe, address, NULL, &error))
		return TRUE;
	/* A full backlog means someone is listening. */
	return g_error_matches(error, G_IO_ERROR, G_IO_ERROR_PENDING) ||
	       g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
}

gboolean
magpie_control_start(const char *path, GError **error)
{
	g_autoptr(GSocketAddress) address = NULL;
	g_autoptr(GSocket) socket = NULL;
	g_autofree char *dir = NULL;
	struct stat st;
	mode_t old_umask;
	gboolean bound;

	g_return_val_if_fail(path != NULL && *path != '\0', FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	g_return_val_if_fail(control_service == NULL, FALSE);

	if (strlen(path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path)) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
		            "control socket path %s is too long", path);
		return FALSE;
	}
	dir = g_path_get_dirname(path);
	if (g_mkdir_with_parents(dir, 0750) < 0) {
		int saved_errno = errno;

		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved_errno),
		            "cannot create directory %s for the control socket: %s", dir,
		            g_strerror(saved_errno));
		return FALSE;
	}

	address = g_unix_socket_address_new(path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
			            "%s exists and is not a socket; not replacing it", path);
			return FALSE;
		}
		if (control_socket_in_use(address)) {
			g_set_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
			            "another server is answering on the control socket %s", path);
			return FALSE;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			int saved_errno = errno;

			g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved_errno),
			            "cannot remove stale control socket %s: %s", path,
			            g_strerror(saved_errno));
			return FALSE;
		}
		g_info("control: removed stale socket %s", path);
	}

	socket = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
	                      error);
	if (socket == NULL)
		return FALSE;
	/* No window in which the socket is wider open than 0660. */
	old_umask = umask(0117);
	bound = g_socket_bind(socket, address, FALSE, error);
	umask(old_umask);
	if (!bound) {
		g_prefix_error(error, "cannot bind the control socket %s: ", path);
		return FALSE;
	}
	if (chmod(path, 0660) < 0) {
		int saved_errno = errno;

		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved_errno),
		            "cannot chmod the control socket %s: %s", path,
		            g_strerror(saved_errno));
		unlink(path);
		return FALSE;
	}
	g_socket_set_listen_backlog(socket, 16);
	if (!g_socket_listen(socket, error)) {
		g_prefix_error(error, "cannot listen on the control socket %s: ", path);
		unlink(path);
		return FALSE;
	}

	control_service = g_socket_service_new();
	if (!g_socket_listener_add_socket(G_SOCKET_LISTENER(control_service), socket, NULL,
	                                  error)) {
		g_clear_object(&control_service);
		unlink(path);
		return FALSE;
	}
	g_signal_connect(control_service, "incoming", G_CALLBACK(control_incoming), NULL);
	g_socket_service_start(control_service);
	control_path = g_strdup(path);
	g_info("control: listening on %s", path);
	return TRUE;
}

void
magpie_control_stop(void)
{
	if (control_service == NULL)
		return;
	g_socket_service_stop(control_service);
	g_socket_listener_close(G_SOCKET_LISTENER(control_service));
	g_clear_object(&control_service);

	if (control_requests != NULL) {
		GList *open = g_hash_table_get_keys(control_requests);

		/* Pending handlers keep their refs and answer into the void. */
		for (GList *l = open; l != NULL; l = l->next)
			control_reply_close(l->data);
		g_list_free(open);
		g_clear_pointer(&control_requests, g_hash_table_unref);
	}
	if (control_path != NULL && unlink(control_path) < 0 && errno != ENOENT)
		g_message("control: cannot remove %s: %s", control_path, g_strerror(errno));
	g_clear_pointer(&control_path, g_free);
}
