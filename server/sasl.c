/* SASL for c2s: Cyrus libsasl2 in-process, with Magpie's own auxprop plugin
 * serving the SCRAM records (RFC 5803 authPassword) that were fetched from
 * PostgreSQL before sasl_server_start. research/crux.md §1 has the facts this
 * file relies on; the important ones are repeated where they matter.
 *
 * Threads: every Cyrus call happens on the main thread. Only PLAIN's PBKDF2
 * runs in a worker (sasl_global.pool); its verdict is handed to the checkpass
 * callback, which then just compares the password bytes.
 */
#include "sasl.h"

#include <string.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sasl/sasl.h>
#include <sasl/saslplug.h>

#include <magpie/jid.h>
#include <magpie/pg.h>

#include "scram.h"

#define MAGPIE_SASL_APPNAME "magpie"
/* Cyrus stores every callback as int (*)(void); the detour through
 * void (*)(void) keeps -Wcast-function-type quiet. */
#define SASL_CB_FN(f)     ((sasl_callback_ft) (void (*)(void))(f))
#define SASL_AUXPROP_NAME "magpie"
#define SASL_EXTERNAL_SSF 256
/* Preference order for -PLUS (crux §1/§3): tls-exporter exists on TLS 1.3. */
static const char *const sasl_binding_types[] = {
	"tls-exporter",
	"tls-server-end-point",
	"tls-unique",
	NULL,
};

GQuark
magpie_sasl_error_quark(void)
{
	return g_quark_from_static_string("magpie-sasl-error-quark");
}

typedef enum {
	SASL_STATE_NEW,
	SASL_STATE_AWAIT_INITIAL, /* <auth/> came without data; the next <response> is it */
	SASL_STATE_BUSY,          /* fetching credentials or hashing */
	SASL_STATE_STEPPING,      /* inside the Cyrus exchange */
	SASL_STATE_DONE,
	SASL_STATE_FAILED,
} SaslState;

typedef struct {
	gint64 window_start; /* monotonic µs */
	guint count;
} SaslFailures;

struct _MagpieSasl {
	gint ref_count;
	char *host;
	MagpieConn *conn; /* only touched synchronously inside our entry points */
	char *peer;
	gboolean set_up;
	gboolean is_tls;

	/* Test hook: TLS facts without a MagpieConn. */
	gboolean test_tls;
	char *test_cb_type;
	GBytes *test_cb_data;

	sasl_conn_t *sasl_conn;
	sasl_callback_t callbacks[3];
	/* Cyrus keeps a pointer to this (crux §1): it lives as long as sasl_conn. */
	sasl_channel_binding_t binding;
	char *binding_name;
	GBytes *binding_data;
	GStrv binding_types;

	SaslState state;
	char *mech;
	MagpieScramHash hash;
	gboolean is_plain;
	GBytes *initial;
	char *authcid;  /* as the client sent it (decoded) */
	char *username; /* nodeprepped; NULL when nodeprep refused it */
	gboolean authzid_ok;
	gboolean known_user;
	gboolean disabled;
	GPtrArray *creds; /* MagpieScramCredential served by the auxprop plugin */

	/* PLAIN: the password checked in the worker, and the verdict. */
	char *plain_password;
	gsize plain_password_len;
	gboolean plain_ok;
};

typedef struct {
	MagpieSaslStatus status;
	GBytes *output;
} SaslStepResult;

static struct {
	gboolean initialized;
	MagpieSaslSettings settings;
	guint8 secret[32];
	GHashTable *failures; /* peer -> SaslFailures */
	GThreadPool *pool;
} sasl_global;

const char *
magpie_sasl_condition(MagpieSaslErrorCode code)
{
	switch (code) {
	case MAGPIE_SASL_ERROR_ABORTED:
		return "aborted";
	case MAGPIE_SASL_ERROR_ACCOUNT_DISABLED:
		return "account-disabled";
	case MAGPIE_SASL_ERROR_CREDENTIALS_EXPIRED:
		return "credentials-expired";
	case MAGPIE_SASL_ERROR_ENCRYPTION_REQUIRED:
		return "encryption-required";
	case MAGPIE_SASL_ERROR_INCORRECT_ENCODING:
		return "incorrect-encoding";
	case MAGPIE_SASL_ERROR_INVALID_AUTHZID:
		return "invalid-authzid";
	case MAGPIE_SASL_ERROR_INVALID_MECHANISM:
		return "invalid-mechanism";
	case MAGPIE_SASL_ERROR_MALFORMED_REQUEST:
		return "malformed-request";
	case MAGPIE_SASL_ERROR_MECHANISM_TOO_WEAK:
		return "mechanism-too-weak";
	case MAGPIE_SASL_ERROR_NOT_AUTHORIZED:
		return "not-authorized";
	case MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE:
		return "temporary-auth-failure";
	}
	return "not-authorized";
}

/* ---- hex and small helpers ---- */

static int
sasl_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static GBytes *
sasl_hex_decode(const char *hex)
{
	gsize len = hex != NULL ? strlen(hex) : 0;
	g_autofree guint8 *out = NULL;

	if (hex == NULL || len % 2 != 0)
		return NULL;
	out = g_malloc(len / 2 + 1);
	for (gsize i = 0; i < len / 2; i++) {
		int hi = sasl_hex_value(hex[2 * i]), lo = sasl_hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return NULL;
		out[i] = (guint8) (hi << 4 | lo);
	}
	return g_bytes_new_take(g_steal_pointer(&out), len / 2);
}

static void
sasl_wipe_free(char *secret, gsize len)
{
	if (secret == NULL)
		return;
	gnutls_memset(secret, 0, len);
	g_free(secret);
}

/* ---- Cyrus callbacks ---- */

static int
sasl_getopt_cb(void *context, const char *plugin_name, const char *option, const char **result,
               unsigned *len)
{
	const char *value = NULL;

	if (g_str_equal(option, "mech_list"))
		value = "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN";
	else if (g_str_equal(option, "auxprop_plugin"))
		value = SASL_AUXPROP_NAME; /* never Debian's sasldb */
	else if (g_str_equal(option, "pwcheck_method"))
		value = "auxprop";
	else if (g_str_equal(option, "log_level"))
		value = "5"; /* SASL_LOG_DEBUG; SASL_LOG_PASS (7) would log passwords */
	if (value == NULL)
		return SASL_FAIL; /* declined: Cyrus falls back to magpie.conf */
	*result = value;
	if (len != NULL)
		*len = strlen(value);
	return SASL_OK;
}

static int
sasl_log_cb(void *context, int level, const char *message)
{
	if (level >= SASL_LOG_PASS || message == NULL)
		return SASL_OK;
	if (level == SASL_LOG_ERR)
		g_info("Cyrus SASL: %s", message);
	else
		g_debug("Cyrus SASL: %s", message);
	return SASL_OK;
}

static const sasl_callback_t sasl_global_callbacks[] = {
	{ SASL_CB_GETOPT, SASL_CB_FN(sasl_getopt_cb), NULL },
	{ SASL_CB_LOG, SASL_CB_FN(sasl_log_cb), NULL },
	{ SASL_CB_LIST_END, NULL, NULL },
};

/* The PLAIN plugin calls this through utils->checkpass. The PBKDF2 already
 * ran in a worker; here we only make sure Cyrus asks about the very password
 * that was checked. A non-OK answer falls through to pwcheck_method=auxprop,
 * which asks us for *userPassword, which we never serve (crux §1). */
static int
sasl_checkpass_cb(sasl_conn_t *conn, void *context, const char *user, const char *pass,
                  unsigned passlen, struct propctx *propctx)
{
	MagpieSasl *sasl = context;

	if (sasl == NULL || !sasl->is_plain || !sasl->plain_ok || sasl->plain_password == NULL)
		return SASL_BADAUTH;
	if (passlen != sasl->plain_password_len ||
	    gnutls_memcmp(pass, sasl->plain_password, passlen) != 0)
		return SASL_BADAUTH;
	return SASL_OK;
}

/* We checked the authzid ourselves before the exchange started (it must be
 * the authcid's bare JID); Cyrus's default policy would refuse any authzid
 * that differs textually from the authcid. */
static int
sasl_proxy_policy_cb(sasl_conn_t *conn, void *context, const char *requested_user, unsigned rlen,
                     const char *auth_identity, unsigned alen, const char *def_realm,
                     unsigned urlen, struct propctx *propctx)
{
	MagpieSasl *sasl = context;

	if (sasl != NULL && sasl->authzid_ok)
		return SASL_OK;
	if (rlen == alen && memcmp(requested_user, auth_identity, rlen) == 0)
		return SASL_OK;
	return SASL_NOAUTHZ;
}

/* ---- the auxprop plugin ---- */

static int
sasl_auxprop_lookup(void *glob_context, sasl_server_params_t *sparams, unsigned flags,
                    const char *user, unsigned ulen)
{
	sasl_callback_ft proc = NULL;
	void *context = NULL;
	MagpieSasl *sasl;
	const struct propval *props;
	int ret = SASL_NOUSER;

	if (sparams->utils->getcallback(sparams->utils->conn, SASL_CB_SERVER_USERDB_CHECKPASS,
	                                &proc, &context) != SASL_OK)
		return SASL_NOUSER;
	/* Our per-connection callback carries the MagpieSasl; anything else
	 * is not one of our connections. */
	if (proc != SASL_CB_FN(sasl_checkpass_cb) || context == NULL)
		return SASL_NOUSER;
	sasl = context;
	if (flags & SASL_AUXPROP_AUTHZID)
		return SASL_OK; /* nothing to say about authzids */
	if (sasl->creds == NULL || sasl->creds->len == 0)
		return SASL_NOUSER;

	props = sparams->utils->prop_get(sparams->propctx);
	for (const struct propval *p = props; p != NULL && p->name != NULL; p++) {
		/* Only *authPassword: serving *userPassword would make Cyrus
		 * derive its own keys from a plaintext. */
		if (!g_str_equal(p->name, "*authPassword"))
			continue;
		if (p->values != NULL && !(flags & SASL_AUXPROP_OVERRIDE))
			continue;
		if (p->values != NULL)
			sparams->utils->prop_erase(sparams->propctx, p->name);
		for (guint i = 0; i < sasl->creds->len; i++) {
			g_autofree char *value =
			        magpie_scram_credential_to_authpassword(sasl->creds->pdata[i]);

			sparams->utils->prop_set(sparams->propctx, p->name, value, 0);
			ret = SASL_OK;
		}
	}
	return ret;
}

static sasl_auxprop_plug_t sasl_auxprop_plugin = {
	.features = 0,
	.spare_int1 = 0,
	.glob_context = NULL,
	.auxprop_free = NULL,
	.auxprop_lookup = sasl_auxprop_lookup,
	.name = (char *) SASL_AUXPROP_NAME,
	.auxprop_store = NULL,
};

static int
sasl_auxprop_init(const sasl_utils_t *utils, int max_version, int *out_version,
                  sasl_auxprop_plug_t **plug, const char *plugname)
{
	if (max_version < SASL_AUXPROP_PLUG_VERSION)
		return SASL_BADVERS;
	*out_version = SASL_AUXPROP_PLUG_VERSION;
	*plug = &sasl_auxprop_plugin;
	return SASL_OK;
}

/* ---- global state ---- */

gboolean
magpie_sasl_global_init(const MagpieSaslSettings *settings, GError **error)
{
	int rc;

	g_return_val_if_fail(!sasl_global.initialized, FALSE);

	sasl_global.settings = (MagpieSaslSettings){
		.iterations = 4096,
		.fail_delay_ms = 1000,
		.max_failures = 5,
		.failure_window_s = 60,
	};
	if (settings != NULL) {
		sasl_global.settings = *settings;
		/* 0 means "the default" where 0 makes no sense; a 0 delay
		 * and max_failures = 0 (no limit) are honoured. */
		if (sasl_global.settings.iterations == 0)
			sasl_global.settings.iterations = 4096;
		if (sasl_global.settings.failure_window_s == 0)
			sasl_global.settings.failure_window_s = 60;
	}

	rc = sasl_server_init(sasl_global_callbacks, MAGPIE_SASL_APPNAME);
	if (rc != SASL_OK) {
		g_set_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE,
		            "sasl_server_init: %s", sasl_errstring(rc, NULL, NULL));
		return FALSE;
	}
	rc = sasl_auxprop_add_plugin(SASL_AUXPROP_NAME, sasl_auxprop_init);
	if (rc != SASL_OK) {
		g_set_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE,
		            "sasl_auxprop_add_plugin: %s", sasl_errstring(rc, NULL, NULL));
		sasl_server_done();
		return FALSE;
	}
	/* The fake credentials' salts derive from this, so a name that does
	 * not exist gets the same salt every time (within this process). */
	if (gnutls_rnd(GNUTLS_RND_KEY, sasl_global.secret, sizeof(sasl_global.secret)) < 0) {
		g_set_error_literal(error, MAGPIE_SASL_ERROR,
		                    MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE,
		                    "No random bytes for the SASL secret");
		sasl_server_done();
		return FALSE;
	}
	sasl_global.failures = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	sasl_global.initialized = TRUE;
	return TRUE;
}

void
magpie_sasl_global_done(void)
{
	if (!sasl_global.initialized)
		return;
	if (sasl_global.pool != NULL) {
		/* Wait for running checks: their tasks return to the loop. */
		g_thread_pool_free(sasl_global.pool, FALSE, TRUE);
		sasl_global.pool = NULL;
	}
	g_clear_pointer(&sasl_global.failures, g_hash_table_unref);
	gnutls_memset(sasl_global.secret, 0, sizeof(sasl_global.secret));
	sasl_server_done();
	sasl_global.initialized = FALSE;
}

/* ---- per-address failure accounting ---- */

static SaslFailures *
sasl_failures_lookup(const char *peer, gint64 now)
{
	SaslFailures *f = g_hash_table_lookup(sasl_global.failures, peer);
	gint64 window = (gint64) sasl_global.settings.failure_window_s * G_USEC_PER_SEC;

	if (f != NULL && now - f->window_start > window) {
		g_hash_table_remove(sasl_global.failures, peer);
		f = NULL;
	}
	return f;
}

static gboolean
sasl_peer_blocked(const char *peer)
{
	SaslFailures *f;

	if (sasl_global.settings.max_failures == 0)
		return FALSE;
	f = sasl_failures_lookup(peer, g_get_monotonic_time());
	return f != NULL && f->count >= sasl_global.settings.max_failures;
}

static void
sasl_peer_failed(const char *peer)
{
	gint64 now = g_get_monotonic_time();
	gint64 window = (gint64) sasl_global.settings.failure_window_s * G_USEC_PER_SEC;
	SaslFailures *f;

	if (sasl_global.settings.max_failures == 0)
		return;
	/* Keep the table bounded: sweep expired entries now and then. */
	if (g_hash_table_size(sasl_global.failures) >= 4096) {
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init(&iter, sasl_global.failures);
		while (g_hash_table_iter_next(&iter, NULL, &value)) {
			if (now - ((SaslFailures *) value)->window_start > window)
				g_hash_table_iter_remove(&iter);
		}
	}
	f = sasl_failures_lookup(peer, now);
	if (f == NULL) {
		f = g_new0(SaslFailures, 1);
		f->window_start = now;
		g_hash_table_insert(sasl_global.failures, g_strdup(peer), f);
	}
	f->count++;
}

/* ---- MagpieSasl lifetime ---- */

static MagpieSasl *
sasl_ref(MagpieSasl *sasl)
{
	g_atomic_int_inc(&sasl->ref_count);
	return sasl;
}

static void
sasl_unref(MagpieSasl *sasl)
{
	if (!g_atomic_int_dec_and_test(&sasl->ref_count))
		return;
	/* sasl_conn first: it points at sasl->binding. */
	if (sasl->sasl_conn != NULL)
		sasl_dispose(&sasl->sasl_conn);
	g_free(sasl->host);
	g_free(sasl->peer);
	g_free(sasl->test_cb_type);
	g_clear_pointer(&sasl->test_cb_data, g_bytes_unref);
	g_free(sasl->binding_name);
	g_clear_pointer(&sasl->binding_data, g_bytes_unref);
	g_strfreev(sasl->binding_types);
	g_free(sasl->mech);
	g_clear_pointer(&sasl->initial, g_bytes_unref);
	g_free(sasl->authcid);
	g_free(sasl->username);
	g_clear_pointer(&sasl->creds, g_ptr_array_unref);
	sasl_wipe_free(sasl->plain_password, sasl->plain_password_len);
	g_free(sasl);
}

MagpieSasl *
magpie_sasl_new(const char *host, MagpieConn *conn, GError **error)
{
	MagpieSasl *sasl;
	int rc;

	g_return_val_if_fail(host != NULL, NULL);
	g_return_val_if_fail(sasl_global.initialized, NULL);

	sasl = g_new0(MagpieSasl, 1);
	sasl->ref_count = 1;
	sasl->host = g_strdup(host);
	sasl->conn = conn;
	sasl->state = SASL_STATE_NEW;

	sasl->callbacks[0] = (sasl_callback_t){ SASL_CB_SERVER_USERDB_CHECKPASS,
		                                SASL_CB_FN(sasl_checkpass_cb), sasl };
	sasl->callbacks[1] =
	        (sasl_callback_t){ SASL_CB_PROXY_POLICY, SASL_CB_FN(sasl_proxy_policy_cb), sasl };
	sasl->callbacks[2] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };

	/* user_realm NULL: Cyrus sees bare node names; the host comes from
	 * our own context (crux §1). */
	rc = sasl_server_new("xmpp", host, NULL, NULL, NULL, sasl->callbacks, SASL_SUCCESS_DATA,
	                     &sasl->sasl_conn);
	if (rc != SASL_OK) {
		g_set_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE,
		            "sasl_server_new: %s", sasl_errstring(rc, NULL, NULL));
		sasl_unref(sasl);
		return NULL;
	}
	return sasl;
}

void
magpie_sasl_free(MagpieSasl *sasl)
{
	if (sasl == NULL)
		return;
	/* Operations still running hold their own reference; the connection
	 * pointer must not be used by them after this. */
	sasl->conn = NULL;
	sasl_unref(sasl);
}

void
magpie_sasl_set_tls_for_testing(MagpieSasl *sasl, const char *peer, const char *cb_type,
                                GBytes *cb_data)
{
	g_return_if_fail(sasl != NULL);
	g_return_if_fail(!sasl->set_up);

	sasl->test_tls = TRUE;
	g_free(sasl->peer);
	sasl->peer = g_strdup(peer);
	sasl->test_cb_type = g_strdup(cb_type);
	sasl->test_cb_data = cb_data != NULL ? g_bytes_ref(cb_data) : NULL;
}

static GBytes *
sasl_binding_data(MagpieSasl *sasl, const char *type)
{
	if (sasl->test_tls) {
		if (sasl->test_cb_type != NULL && g_str_equal(type, sasl->test_cb_type) &&
		    sasl->test_cb_data != NULL)
			return g_bytes_ref(sasl->test_cb_data);
		return NULL;
	}
	if (sasl->conn == NULL || !sasl->is_tls)
		return NULL;
	return magpie_conn_channel_binding(sasl->conn, type);
}

/* Whether @type can be offered; its data is computed only when used. */
static gboolean
sasl_binding_available(MagpieSasl *sasl, const char *type)
{
	if (sasl->test_tls)
		return sasl->test_cb_type != NULL && g_str_equal(type, sasl->test_cb_type) &&
		       sasl->test_cb_data != NULL;
	return sasl->conn != NULL && sasl->is_tls &&
	       magpie_conn_has_channel_binding(sasl->conn, type);
}

static void
sasl_set_binding(MagpieSasl *sasl, const char *type, GBytes *data)
{
	gsize len;

	g_free(sasl->binding_name);
	sasl->binding_name = g_strdup(type);
	g_clear_pointer(&sasl->binding_data, g_bytes_unref);
	sasl->binding_data = g_bytes_ref(data);
	sasl->binding.name = sasl->binding_name;
	/* critical=0: the non-PLUS variants stay available, and a client
	 * that says "y" is refused (downgrade protection). */
	sasl->binding.critical = 0;
	sasl->binding.data = g_bytes_get_data(sasl->binding_data, &len);
	sasl->binding.len = len;
	sasl_setprop(sasl->sasl_conn, SASL_CHANNEL_BINDING, &sasl->binding);
}

/* Read the connection's TLS state once and configure the Cyrus connection:
 * security properties, external SSF and the default channel binding. */
static void
sasl_setup(MagpieSasl *sasl)
{
	sasl_security_properties_t secprops = { 0 };
	g_autoptr(GPtrArray) types = g_ptr_array_new();

	if (sasl->set_up)
		return;
	sasl->set_up = TRUE;

	if (sasl->test_tls) {
		sasl->is_tls = TRUE;
	} else if (sasl->conn != NULL) {
		sasl->is_tls = magpie_conn_is_tls(sasl->conn);
		g_free(sasl->peer);
		sasl->peer = g_strdup(magpie_conn_peer(sasl->conn));
	}
	if (sasl->peer == NULL)
		sasl->peer = g_strdup("unknown");

	/* XMPP has no SASL security layer: max_ssf = 0, maxbufsize = 0. */
	secprops.min_ssf = 0;
	secprops.max_ssf = 0;
	secprops.maxbufsize = 0;
	secprops.security_flags = SASL_SEC_NOPLAINTEXT | SASL_SEC_NOANONYMOUS;
	sasl_setprop(sasl->sasl_conn, SASL_SEC_PROPS, &secprops);

	if (sasl->is_tls) {
		/* External SSF > 1 lifts NOPLAINTEXT, so PLAIN appears. */
		sasl_ssf_t ssf = SASL_EXTERNAL_SSF;

		sasl_setprop(sasl->sasl_conn, SASL_SSF_EXTERNAL, &ssf);
		/* Only the default binding is computed here: the others (the
		 * server-end-point one parses the certificate) only when a
		 * client asks for them. */
		for (guint i = 0; sasl_binding_types[i] != NULL; i++) {
			const char *type = sasl_binding_types[i];

			if (!sasl_binding_available(sasl, type))
				continue;
			if (types->len == 0) {
				g_autoptr(GBytes) data = sasl_binding_data(sasl, type);

				if (data == NULL)
					continue;
				sasl_set_binding(sasl, type, data);
			}
			g_ptr_array_add(types, g_strdup(type));
		}
	}
	g_ptr_array_add(types, NULL);
	sasl->binding_types = (GStrv) g_ptr_array_steal(types, NULL);
}

static int
sasl_mech_rank(const char *mech)
{
	static const char *const order[] = {
		"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
		"SCRAM-SHA-1",        "PLAIN",         NULL
	};

	for (int i = 0; order[i] != NULL; i++) {
		if (g_str_equal(mech, order[i]))
			return i;
	}
	return G_N_ELEMENTS(order);
}

static int
sasl_mech_compare(gconstpointer a, gconstpointer b)
{
	return sasl_mech_rank(*(const char *const *) a) - sasl_mech_rank(*(const char *const *) b);
}

GStrv
magpie_sasl_mechanisms(MagpieSasl *sasl)
{
	const char *list = NULL;
	unsigned len = 0;
	int count = 0;
	g_auto(GStrv) mechs = NULL;
	g_autoptr(GPtrArray) out = g_ptr_array_new();

	g_return_val_if_fail(sasl != NULL, NULL);

	sasl_setup(sasl);
	if (sasl_listmech(sasl->sasl_conn, NULL, "", " ", "", &list, &len, &count) != SASL_OK ||
	    list == NULL) {
		g_ptr_array_add(out, NULL);
		return (GStrv) g_ptr_array_steal(out, NULL);
	}
	mechs = g_strsplit(list, " ", -1);
	for (guint i = 0; mechs[i] != NULL; i++) {
		if (mechs[i][0] != '\0')
			g_ptr_array_add(out, g_strdup(mechs[i]));
	}
	g_ptr_array_sort(out, sasl_mech_compare);
	g_ptr_array_add(out, NULL);
	return (GStrv) g_ptr_array_steal(out, NULL);
}

GStrv
magpie_sasl_channel_binding_types(MagpieSasl *sasl)
{
	g_return_val_if_fail(sasl != NULL, NULL);

	sasl_setup(sasl);
	return g_strdupv(sasl->binding_types);
}

/* ---- parsing the initial response ---- */

/* RFC 5802 saslname: "=2C" is ',', "=3D" is '='; any other '=' is an error. */
static char *
sasl_saslname_decode(const char *s, gsize len)
{
	GString *out = g_string_sized_new(len);

	for (gsize i = 0; i < len; i++) {
		if (s[i] == ',' || s[i] == '\0') {
			g_string_free(out, TRUE);
			return NULL;
		}
		if (s[i] != '=') {
			g_string_append_c(out, s[i]);
			continue;
		}
		if (i + 2 < len && s[i + 1] == '2' && s[i + 2] == 'C')
			g_string_append_c(out, ',');
		else if (i + 2 < len && s[i + 1] == '3' && s[i + 2] == 'D')
			g_string_append_c(out, '=');
		else {
			g_string_free(out, TRUE);
			return NULL;
		}
		i += 2;
	}
	if (!g_utf8_validate(out->str, out->len, NULL)) {
		g_string_free(out, TRUE);
		return NULL;
	}
	return g_string_free(out, FALSE);
}

typedef struct {
	char cbflag; /* 'n', 'y' or 'p' */
	char *cbname;
	char *authzid;
	char *authcid;
} SaslGs2;

static void
sasl_gs2_clear(SaslGs2 *gs2)
{
	g_free(gs2->cbname);
	g_free(gs2->authzid);
	g_free(gs2->authcid);
	memset(gs2, 0, sizeof(*gs2));
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(SaslGs2, sasl_gs2_clear)

/* Split at the next ',' from *pos; the field is [start, end). */
static gboolean
sasl_next_field(const char *data, gsize len, gsize *pos, gsize *start_out, gsize *end_out)
{
	const char *comma;

	if (*pos > len)
		return FALSE;
	*start_out = *pos;
	comma = memchr(data + *pos, ',', len - *pos);
	if (comma == NULL) {
		*end_out = len;
		*pos = len + 1;
	} else {
		*end_out = comma - data;
		*pos = *end_out + 1;
	}
	return TRUE;
}

/* RFC 5802 §7: gs2-header client-first-message-bare. Only the parts we need
 * are checked here; Cyrus checks the rest. */
static gboolean
sasl_parse_scram_first(const char *data, gsize len, SaslGs2 *gs2)
{
	gsize pos = 0, start, end;

	if (memchr(data, '\0', len) != NULL)
		return FALSE;
	/* gs2-cbind-flag */
	if (!sasl_next_field(data, len, &pos, &start, &end))
		return FALSE;
	if (end - start == 1 && (data[start] == 'n' || data[start] == 'y')) {
		gs2->cbflag = data[start];
	} else if (end - start > 2 && data[start] == 'p' && data[start + 1] == '=') {
		for (gsize i = start + 2; i < end; i++) {
			if (!g_ascii_isalnum(data[i]) && data[i] != '.' && data[i] != '-')
				return FALSE;
		}
		gs2->cbflag = 'p';
		gs2->cbname = g_strndup(data + start + 2, end - start - 2);
	} else {
		return FALSE;
	}
	/* [authzid] */
	if (!sasl_next_field(data, len, &pos, &start, &end))
		return FALSE;
	if (end > start) {
		if (end - start < 3 || data[start] != 'a' || data[start + 1] != '=')
			return FALSE;
		gs2->authzid = sasl_saslname_decode(data + start + 2, end - start - 2);
		if (gs2->authzid == NULL)
			return FALSE;
	}
	/* username; "m=" (reserved-mext) is not supported by anyone */
	if (!sasl_next_field(data, len, &pos, &start, &end))
		return FALSE;
	if (end - start < 3 || data[start] != 'n' || data[start + 1] != '=')
		return FALSE;
	gs2->authcid = sasl_saslname_decode(data + start + 2, end - start - 2);
	if (gs2->authcid == NULL)
		return FALSE;
	/* nonce must follow */
	if (!sasl_next_field(data, len, &pos, &start, &end))
		return FALSE;
	if (end - start < 3 || data[start] != 'r' || data[start + 1] != '=')
		return FALSE;
	return TRUE;
}

/* RFC 4616: [authzid] NUL authcid NUL passwd */
static gboolean
sasl_parse_plain(const char *data, gsize len, SaslGs2 *out, const char **password_out,
                 gsize *password_len_out)
{
	const char *nul1, *nul2;

	nul1 = memchr(data, '\0', len);
	if (nul1 == NULL)
		return FALSE;
	nul2 = memchr(nul1 + 1, '\0', len - (nul1 + 1 - data));
	if (nul2 == NULL || memchr(nul2 + 1, '\0', len - (nul2 + 1 - data)) != NULL)
		return FALSE;
	if (nul2 == nul1 + 1)
		return FALSE; /* empty authcid */
	if (!g_utf8_validate(data, nul1 - data, NULL) ||
	    !g_utf8_validate(nul1 + 1, nul2 - nul1 - 1, NULL))
		return FALSE;
	out->cbflag = 'n';
	if (nul1 > data)
		out->authzid = g_strndup(data, nul1 - data);
	out->authcid = g_strndup(nul1 + 1, nul2 - nul1 - 1);
	*password_out = nul2 + 1;
	*password_len_out = len - (nul2 + 1 - data);
	return TRUE;
}

/* The authzid, when given, must be the authcid's own bare JID. */
static gboolean
sasl_authzid_acceptable(MagpieSasl *sasl, const char *authzid)
{
	g_autoptr(MagpieJid) jid = NULL;
	g_autofree char *host = NULL;

	if (authzid == NULL || authzid[0] == '\0')
		return TRUE;
	if (sasl->username == NULL)
		return FALSE;
	jid = magpie_jid_parse(authzid, NULL);
	if (jid == NULL || !magpie_jid_is_bare(jid) || magpie_jid_node(jid) == NULL)
		return FALSE;
	host = magpie_jid_nameprep(sasl->host, NULL);
	return g_str_equal(magpie_jid_node(jid), sasl->username) && host != NULL &&
	       g_str_equal(magpie_jid_domain(jid), host);
}

/* ---- completing a step ---- */

static void
sasl_step_result_free(gpointer data)
{
	SaslStepResult *r = data;

	g_clear_pointer(&r->output, g_bytes_unref);
	g_free(r);
}

static void
sasl_return(GTask *task, MagpieSaslStatus status, const void *out, gsize len)
{
	SaslStepResult *r = g_new0(SaslStepResult, 1);

	r->status = status;
	r->output = g_bytes_new(out, len);
	g_task_return_pointer(task, r, sasl_step_result_free);
}

static gboolean
sasl_fail_delayed_cb(gpointer user_data)
{
	GTask *task = user_data;
	GError *error = g_object_steal_data(G_OBJECT(task), "magpie-sasl-error");

	g_task_return_error(task, error);
	return G_SOURCE_REMOVE;
}

/* Failures that concern credentials are reported only after the delay, so
 * guessing is slow and every failure looks alike. */
static void
sasl_fail(GTask *task, MagpieSaslErrorCode code, gboolean delay)
{
	MagpieSasl *sasl = g_task_get_task_data(task);
	GError *error;
	GSource *source;

	sasl->state = SASL_STATE_FAILED;
	error = g_error_new(MAGPIE_SASL_ERROR, code, "SASL failure: %s",
	                    magpie_sasl_condition(code));
	if (!delay || sasl_global.settings.fail_delay_ms == 0) {
		g_task_return_error(task, error);
		return;
	}
	g_object_set_data_full(G_OBJECT(task), "magpie-sasl-error", error,
	                       (GDestroyNotify) g_error_free);
	source = g_timeout_source_new(sasl_global.settings.fail_delay_ms);
	g_source_set_callback(source, sasl_fail_delayed_cb, g_object_ref(task), g_object_unref);
	g_source_set_static_name(source, "[magpie] sasl failure delay");
	g_source_attach(source, g_task_get_context(task));
	g_source_unref(source);
}

/* Only look at serverout on SASL_OK / SASL_CONTINUE: after a late failure it
 * points at freed memory (crux §1 pitfalls). */
static void
sasl_handle_cyrus(GTask *task, int rc, const char *out, unsigned outlen)
{
	MagpieSasl *sasl = g_task_get_task_data(task);

	switch (rc) {
	case SASL_CONTINUE:
		sasl->state = SASL_STATE_STEPPING;
		sasl_return(task, MAGPIE_SASL_CONTINUE, out, out != NULL ? outlen : 0);
		return;
	case SASL_OK:
		if (!sasl->known_user || sasl->username == NULL) {
			/* A fake credential cannot succeed; be safe anyway. */
			g_info("SASL: %s succeeded without an account, refused", sasl->mech);
			sasl_peer_failed(sasl->peer);
			sasl_fail(task, MAGPIE_SASL_ERROR_NOT_AUTHORIZED, TRUE);
			return;
		}
		if (sasl->disabled) {
			/* Said only when the password was right. */
			g_info("SASL: %s@%s is disabled", sasl->username, sasl->host);
			sasl_fail(task, MAGPIE_SASL_ERROR_ACCOUNT_DISABLED, TRUE);
			return;
		}
		sasl->state = SASL_STATE_DONE;
		sasl_return(task, MAGPIE_SASL_SUCCESS, out, out != NULL ? outlen : 0);
		return;
	default:
		/* Cyrus's codes are odd (NOUSER for a bad PLAIN password,
		 * NOMEM for a missing secret): log them, show none. */
		g_debug("SASL %s from %s failed: %s (%d)", sasl->mech, sasl->peer,
		        sasl_errdetail(sasl->sasl_conn), rc);
		sasl_peer_failed(sasl->peer);
		sasl_fail(task, MAGPIE_SASL_ERROR_NOT_AUTHORIZED, TRUE);
		return;
	}
}

static void
sasl_cyrus_start(GTask *task)
{
	MagpieSasl *sasl = g_task_get_task_data(task);
	const char *out = NULL;
	unsigned outlen = 0;
	gsize len;
	const char *data = g_bytes_get_data(sasl->initial, &len);
	int rc;

	sasl->state = SASL_STATE_STEPPING;
	rc = sasl_server_start(sasl->sasl_conn, sasl->mech, data, len, &out, &outlen);
	/* The PLAIN password is not needed any more. */
	sasl_wipe_free(sasl->plain_password, sasl->plain_password_len);
	sasl->plain_password = NULL;
	sasl->plain_password_len = 0;
	g_clear_pointer(&sasl->initial, g_bytes_unref);
	sasl_handle_cyrus(task, rc, out, outlen);
	g_object_unref(task);
}

/* A credential for a name that has none: salt = HMAC(secret, host NUL name),
 * keys random. The exchange then fails at the proof like a wrong password. */
static MagpieScramCredential *
sasl_fake_credential(MagpieSasl *sasl, MagpieScramHash hash)
{
	MagpieScramCredential *cred = g_new0(MagpieScramCredential, 1);
	g_autoptr(GString) msg = g_string_new(sasl->host);
	guint8 mac[32], key[32];
	gsize len = magpie_scram_hash_len(hash);

	g_string_append_c(msg, '\0');
	g_string_append(msg, sasl->username != NULL ? sasl->username : sasl->authcid);
	g_string_append_c(msg, '\0');
	g_string_append(msg, magpie_scram_mechanism(hash));
	gnutls_hmac_fast(GNUTLS_MAC_SHA256, sasl_global.secret, sizeof(sasl_global.secret),
	                 msg->str, msg->len, mac);

	cred->hash = hash;
	cred->iterations = sasl_global.settings.iterations;
	cred->salt = g_bytes_new(mac, 16);
	gnutls_rnd(GNUTLS_RND_NONCE, key, len);
	cred->stored_key = g_bytes_new(key, len);
	gnutls_rnd(GNUTLS_RND_NONCE, key, len);
	cred->server_key = g_bytes_new(key, len);
	return cred;
}

static MagpieScramCredential *
sasl_find_credential(MagpieSasl *sasl, MagpieScramHash hash)
{
	for (guint i = 0; sasl->creds != NULL && i < sasl->creds->len; i++) {
		MagpieScramCredential *cred = sasl->creds->pdata[i];

		if (cred->hash == hash)
			return cred;
	}
	return NULL;
}

/* PLAIN's PBKDF2, in the worker pool. */
typedef struct {
	MagpieScramCredential *cred;
	char *password;
	gsize len;
} SaslPlainJob;

static void
sasl_plain_job_free(gpointer data)
{
	SaslPlainJob *job = data;

	magpie_scram_credential_free(job->cred);
	sasl_wipe_free(job->password, job->len);
	g_free(job);
}

static void
sasl_plain_worker(gpointer data, gpointer user_data)
{
	GTask *task = data;
	SaslPlainJob *job = g_task_get_task_data(task);

	g_task_return_boolean(task,
	                      magpie_scram_credential_check(job->cred, job->password, job->len));
	g_object_unref(task);
}

static void
sasl_plain_checked_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	MagpieSasl *sasl = g_task_get_task_data(task);
	gboolean ok = g_task_propagate_boolean(G_TASK(result), NULL);

	if (g_task_return_error_if_cancelled(task))
		return;
	sasl->plain_ok = ok && sasl->known_user;
	sasl_cyrus_start(g_steal_pointer(&task));
}

static void
sasl_start_plain_check(GTask *task)
{
	MagpieSasl *sasl = g_task_get_task_data(task);
	MagpieScramCredential *cred = sasl_find_credential(sasl, MAGPIE_SCRAM_SHA256);
	SaslPlainJob *job = g_new0(SaslPlainJob, 1);
	GTask *inner;

	if (cred == NULL)
		cred = sasl_find_credential(sasl, MAGPIE_SCRAM_SHA1);
	g_assert(cred != NULL); /* a fake one at least */
	job->cred = g_new0(MagpieScramCredential, 1);
	job->cred->hash = cred->hash;
	job->cred->iterations = cred->iterations;
	job->cred->salt = g_bytes_ref(cred->salt);
	job->cred->stored_key = g_bytes_ref(cred->stored_key);
	job->cred->server_key = g_bytes_ref(cred->server_key);
	job->password = g_memdup2(sasl->plain_password, sasl->plain_password_len + 1);
	job->len = sasl->plain_password_len;

	if (sasl_global.pool == NULL)
		sasl_global.pool = g_thread_pool_new(
		        sasl_plain_worker, NULL, MAX(1, (int) g_get_num_processors()), FALSE, NULL);
	inner = g_task_new(NULL, NULL, sasl_plain_checked_cb, task);
	g_task_set_task_data(inner, job, sasl_plain_job_free);
	g_thread_pool_push(sasl_global.pool, inner, NULL);
}

/* Credentials are known (or faked): serve them and run Cyrus. */
static void
sasl_credentials_ready(GTask *task)
{
	MagpieSasl *sasl = g_task_get_task_data(task);

	if (sasl->creds == NULL)
		sasl->creds = g_ptr_array_new_with_free_func(
		        (GDestroyNotify) magpie_scram_credential_free);
	if (sasl->is_plain) {
		if (sasl->creds->len == 0)
			g_ptr_array_add(sasl->creds,
			                sasl_fake_credential(sasl, MAGPIE_SCRAM_SHA256));
		sasl_start_plain_check(task);
		return;
	}
	/* Serve the requested hash. A missing record would make Cyrus fail
	 * with NOMEM at once; a fake one fails at the proof instead. */
	if (sasl_find_credential(sasl, sasl->hash) == NULL)
		g_ptr_array_add(sasl->creds, sasl_fake_credential(sasl, sasl->hash));
	sasl_cyrus_start(task);
}

static void
sasl_fetched_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	MagpieSasl *sasl = g_task_get_task_data(task);
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	int rows;

	if (g_task_return_error_if_cancelled(task))
		return;
	if (res == NULL) {
		g_info("SASL: cannot fetch credentials: %s", error->message);
		sasl_fail(task, MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE, FALSE);
		return;
	}
	sasl->creds = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_scram_credential_free);
	rows = magpie_pg_result_rows(res);
	sasl->known_user = rows > 0;
	for (int i = 0; i < rows; i++) {
		const char *disabled = magpie_pg_result_get(res, i, 0);
		const char *mech = magpie_pg_result_get(res, i, 1);
		const char *iterations = magpie_pg_result_get(res, i, 2);
		MagpieScramHash hash;
		g_autoptr(GBytes) salt = sasl_hex_decode(magpie_pg_result_get(res, i, 3));
		g_autoptr(GBytes) stored = sasl_hex_decode(magpie_pg_result_get(res, i, 4));
		g_autoptr(GBytes) server = sasl_hex_decode(magpie_pg_result_get(res, i, 5));
		MagpieScramCredential *cred;
		guint64 iter;

		if (disabled != NULL && g_str_equal(disabled, "t"))
			sasl->disabled = TRUE;
		if (mech == NULL || !magpie_scram_hash_from_mechanism(mech, &hash))
			continue;
		if (iterations == NULL ||
		    !g_ascii_string_to_unsigned(iterations, 10, 1, G_MAXUINT, &iter, NULL))
			continue;
		if (salt == NULL || stored == NULL || server == NULL ||
		    g_bytes_get_size(salt) == 0 ||
		    g_bytes_get_size(stored) != magpie_scram_hash_len(hash) ||
		    g_bytes_get_size(server) != magpie_scram_hash_len(hash)) {
			g_info("SASL: malformed %s record for %s@%s ignored", mech, sasl->username,
			       sasl->host);
			continue;
		}
		cred = g_new0(MagpieScramCredential, 1);
		cred->hash = hash;
		cred->iterations = (guint) iter;
		cred->salt = g_steal_pointer(&salt);
		cred->stored_key = g_steal_pointer(&stored);
		cred->server_key = g_steal_pointer(&server);
		g_ptr_array_add(sasl->creds, cred);
	}
	sasl_credentials_ready(g_steal_pointer(&task));
}

static const char sasl_fetch_sql[] =
        "SELECT a.disabled, c.mechanism, c.iterations, encode(c.salt, 'hex'),"
        " encode(c.stored_key, 'hex'), encode(c.server_key, 'hex')"
        " FROM accounts a LEFT JOIN scram_credentials c"
        " ON c.host = a.host AND c.username = a.username"
        " WHERE a.host = $1 AND a.username = $2";

static gboolean
sasl_mech_offered(MagpieSasl *sasl, const char *mech)
{
	g_auto(GStrv) mechs = magpie_sasl_mechanisms(sasl);

	return g_strv_contains((const char *const *) mechs, mech);
}

/* The initial response is here: find out who, fetch, then run Cyrus. */
static void
sasl_handle_initial(GTask *task, GBytes *data)
{
	MagpieSasl *sasl = g_task_get_task_data(task);
	g_auto(SaslGs2) gs2 = { 0 };
	gsize len;
	const char *bytes = g_bytes_get_data(data, &len);
	const char *password = NULL;
	gsize password_len = 0;
	g_autoptr(GError) error = NULL;
	gboolean parsed;

	if (bytes == NULL)
		bytes = "";
	if (sasl->is_plain)
		parsed = sasl_parse_plain(bytes, len, &gs2, &password, &password_len);
	else
		parsed = sasl_parse_scram_first(bytes, len, &gs2);
	if (!parsed) {
		sasl_fail(task, MAGPIE_SASL_ERROR_MALFORMED_REQUEST, TRUE);
		g_object_unref(task);
		return;
	}

	/* RFC 5802 §6: "p" goes with -PLUS and only with it. Cyrus would
	 * accept a binding under the plain name, and we would report the
	 * wrong mechanism. */
	if (!sasl->is_plain && (gs2.cbflag == 'p') != g_str_has_suffix(sasl->mech, "-PLUS")) {
		g_debug("SASL %s from %s: gs2 flag does not match the mechanism", sasl->mech,
		        sasl->peer);
		sasl_fail(task, MAGPIE_SASL_ERROR_NOT_AUTHORIZED, TRUE);
		g_object_unref(task);
		return;
	}

	sasl->authcid = g_strdup(gs2.authcid);
	/* A name nodeprep refuses cannot exist: it is handled like an unknown
	 * user, so it costs the same and fails the same way. */
	sasl->username = magpie_jid_nodeprep(gs2.authcid, NULL);
	if (!sasl_authzid_acceptable(sasl, gs2.authzid)) {
		sasl_fail(task, MAGPIE_SASL_ERROR_INVALID_AUTHZID, TRUE);
		g_object_unref(task);
		return;
	}
	sasl->authzid_ok = TRUE;

	/* One binding per Cyrus connection: set the one the client names
	 * (crux §1). With "y" or "n" the default one stays, so "y" is refused
	 * while we offer -PLUS (downgrade protection). */
	if (gs2.cbflag == 'p' && sasl->binding_types != NULL &&
	    g_strv_contains((const char *const *) sasl->binding_types, gs2.cbname)) {
		g_autoptr(GBytes) cb = sasl_binding_data(sasl, gs2.cbname);

		if (cb != NULL)
			sasl_set_binding(sasl, gs2.cbname, cb);
	}

	sasl->initial = g_bytes_ref(data);
	if (sasl->is_plain) {
		sasl->plain_password = g_malloc(password_len + 1);
		memcpy(sasl->plain_password, password, password_len);
		sasl->plain_password[password_len] = '\0';
		sasl->plain_password_len = password_len;
	}

	sasl->state = SASL_STATE_BUSY;
	if (sasl->username == NULL) {
		sasl->known_user = FALSE;
		sasl_credentials_ready(task);
		return;
	}
	{
		const char *params[] = { sasl->host, sasl->username };

		magpie_pg_query_async(sasl_fetch_sql, 2, params, g_task_get_cancellable(task),
		                      sasl_fetched_cb, task);
	}
}

static GTask *
sasl_task_new(MagpieSasl *sasl, GCancellable *cancellable, GAsyncReadyCallback callback,
              gpointer user_data, gpointer tag)
{
	GTask *task = g_task_new(NULL, cancellable, callback, user_data);

	g_task_set_source_tag(task, tag);
	g_task_set_task_data(task, sasl_ref(sasl), (GDestroyNotify) sasl_unref);
	return task;
}

void
magpie_sasl_start_async(MagpieSasl *sasl, const char *mech, GBytes *data, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data)
{
	GTask *task;

	g_return_if_fail(sasl != NULL);
	g_return_if_fail(mech != NULL);

	task = sasl_task_new(sasl, cancellable, callback, user_data, magpie_sasl_start_async);
	sasl_setup(sasl);
	if (sasl->state != SASL_STATE_NEW) {
		sasl_fail(task, MAGPIE_SASL_ERROR_MALFORMED_REQUEST, FALSE);
		g_object_unref(task);
		return;
	}
	if (sasl_peer_blocked(sasl->peer)) {
		g_info("SASL: too many failures from %s, refusing for now", sasl->peer);
		sasl_fail(task, MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE, TRUE);
		g_object_unref(task);
		return;
	}
	if (!sasl_mech_offered(sasl, mech)) {
		sasl_fail(task, MAGPIE_SASL_ERROR_INVALID_MECHANISM, FALSE);
		g_object_unref(task);
		return;
	}
	sasl->mech = g_strdup(mech);
	sasl->is_plain = g_str_equal(mech, "PLAIN");
	if (!sasl->is_plain && !magpie_scram_hash_from_mechanism(mech, &sasl->hash)) {
		sasl_fail(task, MAGPIE_SASL_ERROR_INVALID_MECHANISM, FALSE);
		g_object_unref(task);
		return;
	}
	if (data == NULL) {
		/* RFC 6120 §6.4.2: no initial response; an empty challenge
		 * asks for it. */
		sasl->state = SASL_STATE_AWAIT_INITIAL;
		sasl_return(task, MAGPIE_SASL_CONTINUE, NULL, 0);
		g_object_unref(task);
		return;
	}
	sasl_handle_initial(task, data);
}

void
magpie_sasl_step_async(MagpieSasl *sasl, GBytes *data, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data)
{
	GTask *task;
	const char *out = NULL;
	unsigned outlen = 0;
	const char *bytes;
	gsize len = 0;
	int rc;

	g_return_if_fail(sasl != NULL);

	task = sasl_task_new(sasl, cancellable, callback, user_data, magpie_sasl_start_async);
	switch (sasl->state) {
	case SASL_STATE_AWAIT_INITIAL: {
		g_autoptr(GBytes) empty = NULL;

		if (data == NULL)
			data = empty = g_bytes_new(NULL, 0);
		sasl_handle_initial(task, data);
		return;
	}
	case SASL_STATE_STEPPING:
		bytes = data != NULL ? g_bytes_get_data(data, &len) : NULL;
		rc = sasl_server_step(sasl->sasl_conn, bytes != NULL ? bytes : "", len, &out,
		                      &outlen);
		sasl_handle_cyrus(task, rc, out, outlen);
		g_object_unref(task);
		return;
	default:
		/* A <response> outside an exchange. */
		sasl_fail(task, MAGPIE_SASL_ERROR_MALFORMED_REQUEST, FALSE);
		g_object_unref(task);
		return;
	}
}

gboolean
magpie_sasl_step_finish(MagpieSasl *sasl, GAsyncResult *result, MagpieSaslStatus *status_out,
                        GBytes **output_out, GError **error)
{
	SaslStepResult *r;

	g_return_val_if_fail(g_task_is_valid(result, NULL), FALSE);
	g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) == magpie_sasl_start_async,
	                     FALSE);

	r = g_task_propagate_pointer(G_TASK(result), error);
	if (r == NULL)
		return FALSE;
	if (status_out != NULL)
		*status_out = r->status;
	if (output_out != NULL)
		*output_out = g_bytes_ref(r->output);
	sasl_step_result_free(r);
	return TRUE;
}

const char *
magpie_sasl_username(MagpieSasl *sasl)
{
	g_return_val_if_fail(sasl != NULL, NULL);

	return sasl->state == SASL_STATE_DONE ? sasl->username : NULL;
}

const char *
magpie_sasl_mechanism_used(MagpieSasl *sasl)
{
	g_return_val_if_fail(sasl != NULL, NULL);

	return sasl->state == SASL_STATE_DONE ? sasl->mech : NULL;
}
