/* Accounts in PostgreSQL (sql/core): create, change password, disable,
 * enable, delete, list. Asynchronous; the password hashing runs in a worker
 * thread. Used by the control socket; SQL has the same operations as
 * functions (docs/admin.md). */
#pragma once

#include <gio/gio.h>
#include <magpie/account.h>

G_BEGIN_DECLS

typedef struct {
	char *jid;
	gboolean disabled;
	gint64 created; /* unix seconds */
} MagpieAccountInfo;
/* @host NULL = all hosts. Result: GPtrArray of MagpieAccountInfo (free func set). */
void magpie_account_list_async(const char *host, GAsyncReadyCallback callback, gpointer user_data);
GPtrArray *magpie_account_list_finish(GAsyncResult *result, GError **error);

/* Iteration count for new SCRAM records (from [auth] scram-iterations). */
void magpie_accounts_set_iterations(guint iterations);

G_END_DECLS
