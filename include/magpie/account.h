/* Accounts for modules (in-band registration, password change, account
 * removal): the same operations as magpiectl, with SCRAM records derived
 * in a worker thread and SASLprep applied. Callbacks run in the main loop.
 * An account deleted this way has its sessions closed by the core. */
#pragma once

#include <gio/gio.h>
#include <magpie/version.h>

G_BEGIN_DECLS

#define MAGPIE_ACCOUNT_ERROR (magpie_account_error_quark())
MAGPIE_API GQuark magpie_account_error_quark(void);
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
MAGPIE_API void magpie_account_op_async(MagpieAccountOp op, const char *jid, const char *password,
                                        GAsyncReadyCallback callback, gpointer user_data);
MAGPIE_API gboolean magpie_account_op_finish(GAsyncResult *result, GError **error);

G_END_DECLS
