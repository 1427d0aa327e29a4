/* Accounts in PostgreSQL (sql/core/0001_accounts.sql). The SCRAM records are
 * derived in a worker thread (PBKDF2 is too slow for the main loop at high
 * iteration counts); everything else is one parameterized statement. */
#include "accounts.h"
#include "pg-pool.h"

#include <string.h>

#include <magpie/jid.h>
#include <magpie/pg.h>

#include "config-file.h"
#include "scram.h"

GQuark
magpie_account_error_quark(void)
{
	return g_quark_from_static_string("magpie-account-error-quark");
}

static guint accounts_iterations = 4096;
static GThreadPool *accounts_pool;

void
magpie_accounts_set_iterations(guint iterations)
{
	accounts_iterations = iterations > 0 ? iterations : 4096;
}

typedef struct {
	MagpieAccountOp op;
	char *host;
	char *username;
	char *password;
	guint iterations;
	MagpieScramCredential *creds[2]; /* SHA-1, SHA-256 */
} AccountOp;

static void
account_op_free(gpointer data)
{
	AccountOp *op = data;

	g_free(op->host);
	g_free(op->username);
	if (op->password != NULL) {
		memset(op->password, 0, strlen(op->password));
		g_free(op->password);
	}
	for (guint i = 0; i < G_N_ELEMENTS(op->creds); i++)
		magpie_scram_credential_free(op->creds[i]);
	g_free(op);
}

static char *
account_hex(GBytes *bytes)
{
	static const char digits[] = "0123456789abcdef";
	gsize len;
	const guint8 *data = g_bytes_get_data(bytes, &len);
	char *out = g_malloc(2 * len + 1);

	for (gsize i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 0xf];
	}
	out[2 * len] = '\0';
	return out;
}

/* "user@host": prepared, bare, with a node, for a host we serve. */
static gboolean
account_parse_jid(const char *str, char **host_out, char **username_out, GError **error)
{
	g_autoptr(GError) local_error = NULL;
	g_autoptr(MagpieJid) jid = magpie_jid_parse(str, &local_error);
	MagpieConfigFile *cfg;

	if (jid == NULL) {
		g_set_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID,
		            "Invalid JID: %s", local_error->message);
		return FALSE;
	}
	if (magpie_jid_node(jid) == NULL || !magpie_jid_is_bare(jid)) {
		g_set_error_literal(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID,
		                    "An account is a bare JID user@host");
		return FALSE;
	}
	cfg = magpie_config_get_active();
	if (cfg != NULL) {
		const char *const *hosts = magpie_config_file_hosts(cfg);
		gboolean found = FALSE;

		for (guint i = 0; hosts != NULL && hosts[i] != NULL && !found; i++)
			found = g_ascii_strcasecmp(hosts[i], magpie_jid_domain(jid)) == 0;
		if (!found) {
			g_set_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID,
			            "%s is not a host served here", magpie_jid_domain(jid));
			return FALSE;
		}
	}
	*host_out = g_strdup(magpie_jid_domain(jid));
	*username_out = g_strdup(magpie_jid_node(jid));
	return TRUE;
}

static const char account_add_sql[] =
        "WITH a AS (INSERT INTO accounts (host, username) VALUES ($1, $2)"
        " RETURNING host, username)"
        " INSERT INTO scram_credentials"
        " (host, username, mechanism, iterations, salt, stored_key, server_key)"
        " SELECT a.host, a.username, v.mechanism, v.iterations::integer,"
        " decode(v.salt, 'hex'), decode(v.stored_key, 'hex'), decode(v.server_key, 'hex')"
        " FROM a, (VALUES ('SCRAM-SHA-1', $3::text, $4::text, $5::text, $6::text),"
        " ('SCRAM-SHA-256', $7::text, $8::text, $9::text, $10::text))"
        " AS v (mechanism, iterations, salt, stored_key, server_key)";

/* Upsert both rows; no row is written when the account does not exist
 * (0 rows affected). The trigger sends NOTIFY 'password user@host'. */
static const char account_passwd_sql[] =
        "INSERT INTO scram_credentials"
        " (host, username, mechanism, iterations, salt, stored_key, server_key)"
        " SELECT a.host, a.username, v.mechanism, v.iterations::integer,"
        " decode(v.salt, 'hex'), decode(v.stored_key, 'hex'), decode(v.server_key, 'hex')"
        " FROM accounts a, (VALUES ('SCRAM-SHA-1', $3::text, $4::text, $5::text, $6::text),"
        " ('SCRAM-SHA-256', $7::text, $8::text, $9::text, $10::text))"
        " AS v (mechanism, iterations, salt, stored_key, server_key)"
        " WHERE a.host = $1 AND a.username = $2"
        " ON CONFLICT (host, username, mechanism) DO UPDATE SET"
        " iterations = EXCLUDED.iterations, salt = EXCLUDED.salt,"
        " stored_key = EXCLUDED.stored_key, server_key = EXCLUDED.server_key";

static const char account_set_disabled_sql[] =
        "UPDATE accounts SET disabled = $3::boolean WHERE host = $1 AND username = $2";

static const char account_delete_sql[] = "DELETE FROM accounts WHERE host = $1 AND username = $2";

static void
account_query_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	AccountOp *op = g_task_get_task_data(task);
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (res == NULL) {
		if (op->op == MAGPIE_ACCOUNT_ADD &&
		    g_error_matches(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CONSTRAINT))
			g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR,
			                        MAGPIE_ACCOUNT_ERROR_EXISTS, "%s@%s already exists",
			                        op->username, op->host);
		else
			g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR,
			                        MAGPIE_ACCOUNT_ERROR_DATABASE, "Database: %s",
			                        error->message);
		return;
	}
	if (magpie_pg_result_affected(res) == 0) {
		g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_NOT_FOUND,
		                        "No account %s@%s", op->username, op->host);
		return;
	}
	g_task_return_boolean(task, TRUE);
}

/* Runs the statement for @task's op; the credentials are ready if needed. */
static void
account_run(GTask *task)
{
	AccountOp *op = g_task_get_task_data(task);
	const char *sql = NULL;
	const char *params[10] = { op->host, op->username };
	g_autofree char *it1 = NULL, *it256 = NULL;
	g_autofree char *salt1 = NULL, *stored1 = NULL, *server1 = NULL;
	g_autofree char *salt256 = NULL, *stored256 = NULL, *server256 = NULL;
	guint n = 2;

	switch (op->op) {
	case MAGPIE_ACCOUNT_ADD:
	case MAGPIE_ACCOUNT_PASSWD:
		sql = op->op == MAGPIE_ACCOUNT_ADD ? account_add_sql : account_passwd_sql;
		it1 = g_strdup_printf("%u", op->creds[0]->iterations);
		salt1 = account_hex(op->creds[0]->salt);
		stored1 = account_hex(op->creds[0]->stored_key);
		server1 = account_hex(op->creds[0]->server_key);
		it256 = g_strdup_printf("%u", op->creds[1]->iterations);
		salt256 = account_hex(op->creds[1]->salt);
		stored256 = account_hex(op->creds[1]->stored_key);
		server256 = account_hex(op->creds[1]->server_key);
		params[2] = it1;
		params[3] = salt1;
		params[4] = stored1;
		params[5] = server1;
		params[6] = it256;
		params[7] = salt256;
		params[8] = stored256;
		params[9] = server256;
		n = 10;
		break;
	case MAGPIE_ACCOUNT_DISABLE:
	case MAGPIE_ACCOUNT_ENABLE:
		sql = account_set_disabled_sql;
		params[2] = op->op == MAGPIE_ACCOUNT_DISABLE ? "true" : "false";
		n = 3;
		break;
	case MAGPIE_ACCOUNT_DELETE:
		sql = account_delete_sql;
		break;
	}
	magpie_pg_query_async(sql, n, params, NULL, account_query_done, task);
}

static void
account_hash_worker(gpointer data, gpointer user_data)
{
	GTask *task = data;
	AccountOp *op = g_task_get_task_data(task);
	g_autoptr(GError) error = NULL;

	op->creds[0] = magpie_scram_credential_new(MAGPIE_SCRAM_SHA1, op->password, op->iterations,
	                                           &error);
	if (op->creds[0] != NULL)
		op->creds[1] = magpie_scram_credential_new(MAGPIE_SCRAM_SHA256, op->password,
		                                           op->iterations, &error);
	if (op->creds[1] == NULL)
		g_task_return_error(task, g_steal_pointer(&error));
	else
		g_task_return_boolean(task, TRUE);
	g_object_unref(task);
}

static void
account_hashed(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	g_autoptr(GError) error = NULL;

	if (!g_task_propagate_boolean(G_TASK(result), &error)) {
		g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID,
		                        "%s", error->message);
		return;
	}
	account_run(g_steal_pointer(&task));
}

void
magpie_account_op_async(MagpieAccountOp op, const char *jid, const char *password,
                        GAsyncReadyCallback callback, gpointer user_data)
{
	if (magpie_async_callback_guard)
		magpie_async_callback_guard(&callback, &user_data);
	g_autoptr(GTask) task = g_task_new(NULL, NULL, callback, user_data);
	g_autoptr(GError) error = NULL;
	AccountOp *data;
	gboolean needs_password = op == MAGPIE_ACCOUNT_ADD || op == MAGPIE_ACCOUNT_PASSWD;
	GTask *inner;

	g_return_if_fail(jid != NULL);
	g_return_if_fail(op <= MAGPIE_ACCOUNT_DELETE);

	g_task_set_source_tag(task, magpie_account_op_async);
	data = g_new0(AccountOp, 1);
	data->op = op;
	data->iterations = accounts_iterations;
	g_task_set_task_data(task, data, account_op_free);

	if (!account_parse_jid(jid, &data->host, &data->username, &error)) {
		g_task_return_error(task, g_steal_pointer(&error));
		return;
	}
	if (!needs_password) {
		account_run(g_steal_pointer(&task));
		return;
	}
	if (password == NULL || password[0] == '\0') {
		g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID,
		                        "The password is empty");
		return;
	}
	/* Cheap check first, so a bad password fails without a thread. */
	{
		g_autofree char *prepped = magpie_saslprep(password, strlen(password), &error);

		if (prepped == NULL) {
			g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR,
			                        MAGPIE_ACCOUNT_ERROR_INVALID, "%s", error->message);
			return;
		}
		if (prepped[0] == '\0') {
			g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR,
			                        MAGPIE_ACCOUNT_ERROR_INVALID,
			                        "The password is empty after SASLprep");
			return;
		}
		memset(prepped, 0, strlen(prepped));
	}
	data->password = g_strdup(password);

	if (accounts_pool == NULL)
		accounts_pool =
		        g_thread_pool_new(account_hash_worker, NULL,
		                          MAX(1, (int) g_get_num_processors()), FALSE, NULL);
	inner = g_task_new(NULL, NULL, account_hashed, g_steal_pointer(&task));
	g_task_set_task_data(inner, data, NULL); /* owned by the outer task */
	g_thread_pool_push(accounts_pool, inner, NULL);
}

gboolean
magpie_account_op_finish(GAsyncResult *result, GError **error)
{
	g_return_val_if_fail(g_task_is_valid(result, NULL), FALSE);
	g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) == magpie_account_op_async,
	                     FALSE);

	return g_task_propagate_boolean(G_TASK(result), error);
}

static void
account_info_free(gpointer data)
{
	MagpieAccountInfo *info = data;

	g_free(info->jid);
	g_free(info);
}

static void
account_list_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	g_autoptr(GPtrArray) list = NULL;

	if (res == NULL) {
		g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_DATABASE,
		                        "Database: %s", error->message);
		return;
	}
	list = g_ptr_array_new_with_free_func(account_info_free);
	for (int i = 0; i < magpie_pg_result_rows(res); i++) {
		MagpieAccountInfo *info = g_new0(MagpieAccountInfo, 1);
		const char *disabled = magpie_pg_result_get(res, i, 1);
		const char *created = magpie_pg_result_get(res, i, 2);

		info->jid = g_strdup(magpie_pg_result_get(res, i, 0));
		info->disabled = disabled != NULL && g_str_equal(disabled, "t");
		info->created = created != NULL ? g_ascii_strtoll(created, NULL, 10) : 0;
		g_ptr_array_add(list, info);
	}
	g_task_return_pointer(task, g_steal_pointer(&list), (GDestroyNotify) g_ptr_array_unref);
}

void
magpie_account_list_async(const char *host, GAsyncReadyCallback callback, gpointer user_data)
{
	if (magpie_async_callback_guard)
		magpie_async_callback_guard(&callback, &user_data);
	GTask *task = g_task_new(NULL, NULL, callback, user_data);
	g_autofree char *prepped = NULL;
	const char *params[1];

	g_task_set_source_tag(task, magpie_account_list_async);
	if (host != NULL) {
		prepped = magpie_jid_nameprep(host, NULL);
		if (prepped == NULL) {
			g_task_return_new_error(task, MAGPIE_ACCOUNT_ERROR,
			                        MAGPIE_ACCOUNT_ERROR_INVALID, "Invalid host %s",
			                        host);
			g_object_unref(task);
			return;
		}
	}
	params[0] = prepped;
	magpie_pg_query_async("SELECT username || '@' || host, disabled,"
	                      " extract(epoch FROM created_at)::bigint FROM accounts"
	                      " WHERE $1::text IS NULL OR host = $1::text ORDER BY host, username",
	                      1, params, NULL, account_list_done, task);
}

GPtrArray *
magpie_account_list_finish(GAsyncResult *result, GError **error)
{
	g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
	g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) == magpie_account_list_async,
	                     NULL);

	return g_task_propagate_pointer(G_TASK(result), error);
}
