/* Accounts in PostgreSQL (sql/core): create, change password, disable,
 * enable, delete, list. Asynchronous; the password hashing runs in a worker
 * thread. Used by the control socket; SQL has the same operations as
 * functions (docs/admin.md). */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define MAGPIE_ACCOUNT_ERROR (magpie_account_error_quark())
GQuark magpie_account_error_quark(void);
typedef enum {
	MAGPIE_ACCOUNT_ERROR_EXISTS,
	MAGPIE_ACCOUNT_ERROR_NOT_FOUND,
	MAGPIE_ACCOUNT_ERROR_INVALID, /* bad JID, not a local host, bad password */
	MAGPIE_ACCOUNT_ERROR_DATABASE,
} MagpieAccountError;

typedef enum {
	MAGPIE_ACCOUNT_ADD,
	MAGPIE_ACCOUNT_PASSWD,
	MAGPIE_ACCOUNT_DISABLE,
	MAGPIE_ACCOUNT_ENABLE,
	MAGPIE_ACCOUNT_DELETE,
} MagpieAccountOp;

/* @jid: "user@host" (prepared here); @password for ADD and PASSWD only. */
void magpie_account_op_async(MagpieAccountOp op, const char *jid, const char *password,
                             GAsyncReadyCallback callback, gpointer user_data);
gboolean magpie_account_op_finish(GAsyncResult *result, GError **error);

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
