/* Server TLS context: one GnuTLS credentials structure per virtual host,
 * chosen by SNI in a post-client-hello function (research/crux.md §3:
 * GnuTLS' own choice among several key pairs of one credentials structure
 * matches exact names only, so wildcards need our own logic). */
#include "tls.h"

#include <string.h>
#include <gnutls/x509.h>

#define MAGPIE_TLS_DEFAULT_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

typedef struct {
	char *name; /* the configured host name */
	gnutls_certificate_credentials_t credentials;
	/* dNSName entries of the certificate's subjectAltName. */
	GPtrArray *san_names;
} TlsHost;

struct _MagpieTls {
	gint ref_count;
	GPtrArray *hosts; /* TlsHost, first = default */
	gnutls_priority_t priority;
	char *priority_string;
};

G_DEFINE_QUARK(magpie - tls - error - quark, magpie_tls_error)

static void
tls_host_free(TlsHost *host)
{
	g_free(host->name);
	gnutls_certificate_free_credentials(host->credentials);
	g_ptr_array_unref(host->san_names);
	g_free(host);
}

MagpieTls *
magpie_tls_new(void)
{
	MagpieTls *tls = g_new0(MagpieTls, 1);
	g_autoptr(GError) error = NULL;

	tls->ref_count = 1;
	tls->hosts = g_ptr_array_new_with_free_func((GDestroyNotify) tls_host_free);
	if (!magpie_tls_set_priority(tls, NULL, &error))
		g_critical("TLS default priority refused: %s", error->message);
	return tls;
}

MagpieTls *
magpie_tls_ref(MagpieTls *tls)
{
	g_return_val_if_fail(tls != NULL, NULL);
	g_atomic_int_inc(&tls->ref_count);
	return tls;
}

void
magpie_tls_unref(MagpieTls *tls)
{
	if (tls == NULL)
		return;
	if (!g_atomic_int_dec_and_test(&tls->ref_count))
		return;
	g_ptr_array_unref(tls->hosts);
	if (tls->priority != NULL)
		gnutls_priority_deinit(tls->priority);
	g_free(tls->priority_string);
	g_free(tls);
}

gboolean
magpie_tls_set_priority(MagpieTls *tls, const char *priority, GError **error)
{
	gnutls_priority_t cache = NULL;
	const char *err_pos = NULL;
	int r;

	g_return_val_if_fail(tls != NULL, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

	if (priority == NULL)
		priority = MAGPIE_TLS_DEFAULT_PRIORITY;
	r = gnutls_priority_init(&cache, priority, &err_pos);
	if (r < 0) {
		g_set_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_INTERNAL,
		            "Invalid TLS priority string \"%s\" near \"%s\": %s", priority,
		            err_pos != NULL ? err_pos : "", gnutls_strerror(r));
		return FALSE;
	}
	if (tls->priority != NULL)
		gnutls_priority_deinit(tls->priority);
	tls->priority = cache;
	g_free(tls->priority_string);
	tls->priority_string = g_strdup(priority);
	return TRUE;
}

const char *
magpie_tls_get_priority(MagpieTls *tls)
{
	g_return_val_if_fail(tls != NULL, NULL);
	return tls->priority_string;
}

/* The dNSName entries of the first certificate of the chain just loaded. */
static GPtrArray *
tls_read_san_names(gnutls_certificate_credentials_t credentials, unsigned index)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	gnutls_datum_t der = { NULL, 0 };
	gnutls_x509_crt_t crt = NULL;

	if (gnutls_certificate_get_crt_raw(credentials, index, 0, &der) < 0)
		return names;
	if (gnutls_x509_crt_init(&crt) < 0)
		return names;
	if (gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER) < 0) {
		gnutls_x509_crt_deinit(crt);
		return names;
	}
	for (unsigned seq = 0;; seq++) {
		char name[256];
		size_t size = sizeof(name) - 1;
		unsigned int critical = 0;
		int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, name, &size, &critical);

		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue; /* longer than any DNS name: ignore */
		if (type < 0)
			break;
		if (type != GNUTLS_SAN_DNSNAME)
			continue;
		name[MIN(size, sizeof(name) - 1)] = '\0';
		if (strlen(name) != size)
			continue; /* embedded NUL */
		g_ptr_array_add(names, g_ascii_strdown(name, -1));
	}
	gnutls_x509_crt_deinit(crt);
	return names;
}

gboolean
magpie_tls_add_host(MagpieTls *tls, const char *host, const char *cert_file, const char *key_file,
                    GError **error)
{
	gnutls_certificate_credentials_t credentials = NULL;
	TlsHost *entry;
	int r;

	g_return_val_if_fail(tls != NULL, FALSE);
	g_return_val_if_fail(host != NULL && *host != '\0', FALSE);
	g_return_val_if_fail(cert_file != NULL, FALSE);
	g_return_val_if_fail(key_file != NULL, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

	r = gnutls_certificate_allocate_credentials(&credentials);
	if (r < 0) {
		g_set_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_INTERNAL,
		            "Cannot allocate TLS credentials: %s", gnutls_strerror(r));
		return FALSE;
	}
	gnutls_certificate_set_flags(credentials, GNUTLS_CERTIFICATE_API_V2);
	r = gnutls_certificate_set_x509_key_file2(credentials, cert_file, key_file,
	                                          GNUTLS_X509_FMT_PEM, NULL, 0);
	if (r < 0) {
		g_set_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_CERTIFICATE,
		            "Cannot load certificate %s with key %s for %s: %s", cert_file,
		            key_file, host, gnutls_strerror(r));
		gnutls_certificate_free_credentials(credentials);
		return FALSE;
	}
	/* Only for DHE suites on TLS 1.2; ECDHE needs nothing. */
	gnutls_certificate_set_known_dh_params(credentials, GNUTLS_SEC_PARAM_MEDIUM);

	entry = g_new0(TlsHost, 1);
	entry->name = g_ascii_strdown(host, -1);
	entry->credentials = credentials;
	entry->san_names = tls_read_san_names(credentials, (unsigned) r);
	g_ptr_array_add(tls->hosts, entry);
	return TRUE;
}

guint
magpie_tls_n_hosts(MagpieTls *tls)
{
	g_return_val_if_fail(tls != NULL, 0);
	return tls->hosts->len;
}

/* Exact configured host name, then an exact subjectAltName, then a
 * "*.<parent>" subjectAltName (one label only, RFC 6125 §6.4.3), else the
 * first host. */
static TlsHost *
tls_pick_host(MagpieTls *tls, const char *sni)
{
	const char *parent;

	if (sni == NULL || *sni == '\0' || strchr(sni, '*') != NULL)
		return g_ptr_array_index(tls->hosts, 0);

	for (guint i = 0; i < tls->hosts->len; i++) {
		TlsHost *host = g_ptr_array_index(tls->hosts, i);

		if (g_ascii_strcasecmp(host->name, sni) == 0)
			return host;
	}
	for (guint i = 0; i < tls->hosts->len; i++) {
		TlsHost *host = g_ptr_array_index(tls->hosts, i);

		for (guint j = 0; j < host->san_names->len; j++) {
			if (g_ascii_strcasecmp(g_ptr_array_index(host->san_names, j), sni) == 0)
				return host;
		}
	}
	parent = strchr(sni, '.');
	if (parent != NULL && parent != sni && parent[1] != '\0') {
		for (guint i = 0; i < tls->hosts->len; i++) {
			TlsHost *host = g_ptr_array_index(tls->hosts, i);

			for (guint j = 0; j < host->san_names->len; j++) {
				const char *san = g_ptr_array_index(host->san_names, j);

				if (san[0] == '*' && san[1] == '.' &&
				    g_ascii_strcasecmp(san + 1, parent) == 0)
					return host;
			}
		}
	}
	return g_ptr_array_index(tls->hosts, 0);
}

char *
magpie_tls_session_get_sni(gnutls_session_t session)
{
	char name[256];
	size_t size = sizeof(name);
	unsigned int type = 0;

	g_return_val_if_fail(session != NULL, NULL);

	if (gnutls_server_name_get(session, name, &size, &type, 0) < 0)
		return NULL;
	if (type != GNUTLS_NAME_DNS || size == 0 || size >= sizeof(name))
		return NULL;
	name[size] = '\0';
	if (strlen(name) != size)
		return NULL;
	return g_ascii_strdown(name, -1);
}

static int
tls_post_client_hello(gnutls_session_t session)
{
	MagpieTls *tls = gnutls_session_get_ptr(session);
	g_autofree char *sni = magpie_tls_session_get_sni(session);
	TlsHost *host;

	if (tls == NULL || tls->hosts->len == 0)
		return GNUTLS_E_INTERNAL_ERROR;
	host = tls_pick_host(tls, sni);
	return gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, host->credentials);
}

static gnutls_datum_t ticket_key = { NULL, 0 };

static gboolean
tls_ticket_key_init(void)
{
	static gsize done = 0;
	static gboolean ok = FALSE;

	if (g_once_init_enter(&done)) {
		int r = gnutls_session_ticket_key_generate(&ticket_key);

		ok = r >= 0;
		if (!ok)
			g_warning("Cannot generate the TLS session ticket key: %s",
			          gnutls_strerror(r));
		g_once_init_leave(&done, 1);
	}
	return ok;
}

static int
tls_session_setup(MagpieTls *tls, gnutls_session_t session)
{
	TlsHost *first = g_ptr_array_index(tls->hosts, 0);
	int r;

	r = gnutls_priority_set(session, tls->priority);
	if (r < 0)
		return r;
	r = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, first->credentials);
	if (r < 0)
		return r;
	if (tls_ticket_key_init()) {
		r = gnutls_session_ticket_enable_server(session, &ticket_key);
		if (r < 0)
			return r;
	}
	gnutls_session_set_ptr(session, tls);
	gnutls_handshake_set_post_client_hello_function(session, tls_post_client_hello);
	gnutls_certificate_server_set_request(session, GNUTLS_CERT_IGNORE);
	/* The connection enforces its own deadline from the main loop. */
	gnutls_handshake_set_timeout(session, 0);
	return 0;
}

gnutls_session_t
magpie_tls_session_new(MagpieTls *tls, GError **error)
{
	gnutls_session_t session = NULL;
	int r;

	g_return_val_if_fail(tls != NULL, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);

	if (tls->hosts->len == 0) {
		g_set_error_literal(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_CERTIFICATE,
		                    "No TLS certificate is configured");
		return NULL;
	}
	/* NO_SIGNAL: GnuTLS writes the socket itself; a peer reset must not
	 * raise SIGPIPE. */
	r = gnutls_init(&session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (r >= 0)
		r = tls_session_setup(tls, session);
	if (r < 0) {
		g_set_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_INTERNAL,
		            "Cannot set up a TLS session: %s", gnutls_strerror(r));
		if (session != NULL)
			gnutls_deinit(session);
		return NULL;
	}
	return session;
}

static MagpieTls *default_tls = NULL;

MagpieTls *
magpie_tls_get_default(void)
{
	return default_tls;
}

void
magpie_tls_set_default(MagpieTls *tls)
{
	MagpieTls *old = default_tls;

	default_tls = tls != NULL ? magpie_tls_ref(tls) : NULL;
	magpie_tls_unref(old);
}
