/* SASL for c2s with Cyrus libsasl2 and Magpie's auxprop plugin.
 *
 * One MagpieSasl per authentication attempt. Credentials (SCRAM records) are
 * fetched from PostgreSQL asynchronously before sasl_server_start; PLAIN is
 * checked by deriving the SCRAM key in a worker thread. Unknown users get a
 * fake credential, so they fail exactly like a wrong password. Failures are
 * delayed, and an address with too many recent failures is refused with
 * temporary-auth-failure until it cools down.
 */
#pragma once

#include <gio/gio.h>
#include "conn.h"

G_BEGIN_DECLS

#define MAGPIE_SASL_ERROR (magpie_sasl_error_quark())
GQuark magpie_sasl_error_quark(void);
/* Codes map one to one onto RFC 6120 §6.5 conditions (magpie_sasl_condition). */
typedef enum {
	MAGPIE_SASL_ERROR_ABORTED,
	MAGPIE_SASL_ERROR_ACCOUNT_DISABLED,
	MAGPIE_SASL_ERROR_CREDENTIALS_EXPIRED,
	MAGPIE_SASL_ERROR_ENCRYPTION_REQUIRED,
	MAGPIE_SASL_ERROR_INCORRECT_ENCODING,
	MAGPIE_SASL_ERROR_INVALID_AUTHZID,
	MAGPIE_SASL_ERROR_INVALID_MECHANISM,
	MAGPIE_SASL_ERROR_MALFORMED_REQUEST,
	MAGPIE_SASL_ERROR_MECHANISM_TOO_WEAK,
	MAGPIE_SASL_ERROR_NOT_AUTHORIZED,
	MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE,
} MagpieSaslErrorCode;
const char *magpie_sasl_condition(MagpieSaslErrorCode code); /* "not-authorized" */

typedef enum {
	MAGPIE_SASL_CONTINUE, /* send <challenge> with the output */
	MAGPIE_SASL_SUCCESS,  /* send <success> with the output (may be empty) */
} MagpieSaslStatus;

typedef struct {
	guint iterations;       /* for new credentials; default 4096 */
	guint fail_delay_ms;    /* delay before a failure is reported; default 1000 */
	guint max_failures;     /* per address per window before refusing; default 5 */
	guint failure_window_s; /* default 60 */
} MagpieSaslSettings;

/* Once at start-up, before any connection. */
gboolean magpie_sasl_global_init(const MagpieSaslSettings *settings, GError **error);
void magpie_sasl_global_done(void);

typedef struct _MagpieSasl MagpieSasl;

/* @host: the virtual host the stream is for; @conn: for TLS state and
 * channel binding (TLS must be up for PLAIN and -PLUS). */
MagpieSasl *magpie_sasl_new(const char *host, MagpieConn *conn, GError **error);
void magpie_sasl_free(MagpieSasl *sasl);

/* Mechanism names to advertise in <mechanisms/>. (transfer full) */
GStrv magpie_sasl_mechanisms(MagpieSasl *sasl);
/* XEP-0440 channel-binding types available on this connection. */
GStrv magpie_sasl_channel_binding_types(MagpieSasl *sasl);

/* <auth mechanism=@mech> with the decoded initial response (@data may be
 * NULL when the element was empty, "" when it was "="). */
void magpie_sasl_start_async(MagpieSasl *sasl, const char *mech, GBytes *data,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
/* <response> */
void magpie_sasl_step_async(MagpieSasl *sasl, GBytes *data, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
/* For both: the status and the bytes to send (base64 them), or FALSE with a
 * MAGPIE_SASL_ERROR. */
gboolean magpie_sasl_step_finish(MagpieSasl *sasl, GAsyncResult *result,
                                 MagpieSaslStatus *status_out, GBytes **output_out, GError **error);
/* After SUCCESS: the authenticated account's node (localpart, prepared). */
const char *magpie_sasl_username(MagpieSasl *sasl);
/* After SUCCESS: the mechanism used ("SCRAM-SHA-256-PLUS"). */
const char *magpie_sasl_mechanism_used(MagpieSasl *sasl);

/* Tests only (@sasl made with a NULL MagpieConn): behave as if TLS were up,
 * count failures for @peer, and offer channel binding @cb_type with
 * @cb_data (NULL: none). Call before anything else on @sasl. */
void magpie_sasl_set_tls_for_testing(MagpieSasl *sasl, const char *peer, const char *cb_type,
                                     GBytes *cb_data);

G_END_DECLS
