/* A connection: a nonblocking socket in the main loop, optionally wrapped
 * in GnuTLS (direct TLS, or STARTTLS later on the same fd), with a bounded
 * output queue. Knows nothing of XMPP. */
#pragma once

#include <sys/uio.h>
#include <glib.h>
#include "tls.h"

G_BEGIN_DECLS

typedef struct _MagpieConn MagpieConn;

typedef struct {
	/* Plaintext bytes arrived. Return how many were consumed; the
	 * connection keeps the rest, stops reading and delivers it again after
	 * magpie_conn_set_reading(conn, TRUE). */
	gsize (*data)(gpointer user_data, const char *buf, gsize len);
	/* TLS handshake finished. */
	void (*tls_established)(gpointer user_data);
	/* The connection is gone (peer closed, I/O or TLS error, or our own
	 * magpie_conn_close() completed). @reason is a log line. Called once;
	 * the owner then frees the connection (not from inside a callback of
	 * its own: schedule it). */
	void (*closed)(gpointer user_data, const char *reason);
} MagpieConnCallbacks;

/* Takes ownership of @fd (made nonblocking). @peer: "address" for logs and
 * per-address limits. */
MagpieConn *magpie_conn_new(int fd, const char *peer, const MagpieConnCallbacks *callbacks,
                            gpointer user_data);
/* Closes the fd at once; no callback. */
void magpie_conn_free(MagpieConn *conn);

/* Start a server-side TLS handshake with @tls once everything queued so far
 * has been written (so <proceed/> goes out in plaintext first). Bytes the
 * peer sent before the handshake are an error the caller checks itself. */
void magpie_conn_start_tls(MagpieConn *conn, MagpieTls *tls);
/* Close with "TLS handshake timed out" when the handshake has not
 * finished @timeout_ms after it started (default 30000). Call before
 * magpie_conn_start_tls(). */
void magpie_conn_set_handshake_timeout(MagpieConn *conn, guint timeout_ms);
gboolean magpie_conn_is_tls(MagpieConn *conn); /* handshake complete */
/* TLS details, NULL before the handshake. (transfer none) */
const char *magpie_conn_tls_sni(MagpieConn *conn);     /* server name the client asked for */
const char *magpie_conn_tls_version(MagpieConn *conn); /* "TLS1.3" */
gboolean magpie_conn_tls_resumed(MagpieConn *conn);
/* Channel binding data for "tls-exporter", "tls-server-end-point" or
 * "tls-unique"; NULL when unavailable on this connection. (transfer full) */
GBytes *magpie_conn_channel_binding(MagpieConn *conn, const char *type);
/* Whether magpie_conn_channel_binding() applies to @type, without computing it. */
gboolean magpie_conn_has_channel_binding(MagpieConn *conn, const char *type);

void magpie_conn_write(MagpieConn *conn, const char *data, gsize len);
void magpie_conn_write_bytes(MagpieConn *conn, GBytes *bytes);
/* Write the concatenation of @parts (copied before returning). */
void magpie_conn_writev(MagpieConn *conn, const struct iovec *parts, guint n_parts);
gsize magpie_conn_output_queued(MagpieConn *conn);
void magpie_conn_set_reading(MagpieConn *conn, gboolean reading);
/* Flush queued output (at most @grace_ms), then shut down and call
 * closed(). */
void magpie_conn_close(MagpieConn *conn, guint grace_ms);
const char *magpie_conn_peer(MagpieConn *conn);
/* Monotonic time of the last byte received. */
gint64 magpie_conn_last_read(MagpieConn *conn);
/* Memory used by this connection's buffers (for stats). */
gsize magpie_conn_buffer_size(MagpieConn *conn);

G_END_DECLS
