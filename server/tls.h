/* Server TLS context: per-virtual-host certificates chosen by SNI (exact or
 * wildcard match, else the first host's), TLS 1.2 and 1.3 only, session
 * tickets with a process-wide key. Immutable once built; a reload builds a
 * new one and swaps it, sessions keep the one they started with. */
#pragma once

#include <glib.h>
#include <gnutls/gnutls.h>

G_BEGIN_DECLS

typedef struct _MagpieTls MagpieTls;

#define MAGPIE_TLS_ERROR (magpie_tls_error_quark())
GQuark magpie_tls_error_quark(void);
typedef enum {
	MAGPIE_TLS_ERROR_CERTIFICATE, /* unreadable or invalid certificate/key */
	MAGPIE_TLS_ERROR_INTERNAL,
} MagpieTlsError;

MagpieTls *magpie_tls_new(void);
MagpieTls *magpie_tls_ref(MagpieTls *tls);
void magpie_tls_unref(MagpieTls *tls);
/* Add @host's certificate chain and key (PEM files). The first host added is
 * the default for clients without (or with an unknown) SNI. */
gboolean magpie_tls_add_host(MagpieTls *tls, const char *host, const char *cert_file,
                             const char *key_file, GError **error);
/* Replace the GnuTLS priority string (NULL = the default,
 * "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"). Fails on a string GnuTLS
 * refuses. Call before the context is used. */
gboolean magpie_tls_set_priority(MagpieTls *tls, const char *priority, GError **error);
const char *magpie_tls_get_priority(MagpieTls *tls); /* (transfer none) */
guint magpie_tls_n_hosts(MagpieTls *tls);
/* Server-side nonblocking session for a new connection; used by conn.c.
 * The session points at @tls without a reference: the caller keeps @tls
 * alive until gnutls_deinit(). Certificate chosen by SNI during the
 * handshake: exact host name, exact subjectAltName, then "*.parent"
 * subjectAltName, else the first host. No handshake timeout of its own. */
gnutls_session_t magpie_tls_session_new(MagpieTls *tls, GError **error);
/* The DNS server name the client sent (lowercase), or NULL. (transfer full) */
char *magpie_tls_session_get_sni(gnutls_session_t session);

/* The process-wide context used for new connections. */
MagpieTls *magpie_tls_get_default(void);     /* (transfer none), may be NULL */
void magpie_tls_set_default(MagpieTls *tls); /* takes a ref */

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpieTls, magpie_tls_unref)

G_END_DECLS
