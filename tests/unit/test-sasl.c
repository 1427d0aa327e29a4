/* server/sasl.c and server/accounts.c against a real PostgreSQL, with
 * Cyrus's own client library (in this process) and a small hand-written
 * SCRAM client built on scram.c.
 *
 * Environment (set by the test runner; without MAGPIE_TEST_PGHOST every
 * test is skipped):
 *   MAGPIE_TEST_PGHOST      socket directory of a throwaway cluster
 *   MAGPIE_TEST_PGDATABASE  an existing database; a fresh one is created
 *                           next to it for this run and dropped at the end
 *
 * TLS is simulated with magpie_sasl_set_tls_for_testing(): the SASL code
 * only needs "TLS is up" and the channel-binding bytes, which a test can
 * supply. -PLUS over a real TLS connection is left to the integration
 * tests.
 */
#include <string.h>
#include <unistd.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <libpq-fe.h>
#include <sasl/sasl.h>

#include "accounts.h"
#include "build-config.h"
#include "pg-pool.h"
#include "sasl.h"
#include "scram.h"

#define HOST          "example.com"
#define FAIL_DELAY_MS 150
#define MAX_FAILURES  3

static char *admin_conninfo;
static char *conninfo;
static char *dbname;
static guint peer_counter;

static gboolean
need_db(void)
{
	if (conninfo == NULL) {
		g_test_skip("MAGPIE_TEST_PGHOST not set");
		return FALSE;
	}
	return TRUE;
}

/* ---- synchronous SQL (test side only) ---- */

static void
sync_exec_on(const char *info, const char *sql)
{
	PGconn *pg = PQconnectdb(info);
	PGresult *res;

	g_assert_cmpint(PQstatus(pg), ==, CONNECTION_OK);
	res = PQexec(pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		g_error("%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(pg);
}

static PGresult *
sync_query(const char *sql, int n, const char *const *params)
{
	PGconn *pg = PQconnectdb(conninfo);
	PGresult *res;

	g_assert_cmpint(PQstatus(pg), ==, CONNECTION_OK);
	res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		g_error("%s: %s", sql, PQresultErrorMessage(res));
	PQfinish(pg);
	return res;
}

/* ---- main-loop helpers ---- */

static void
iterate_until(gboolean *flag, guint timeout_ms)
{
	gint64 end = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

	while (!*flag) {
		if (g_get_monotonic_time() > end)
			g_error("timed out after %u ms", timeout_ms);
		g_main_context_iteration(NULL, TRUE);
	}
}

typedef struct {
	gboolean done;
	GAsyncResult *result;
} Wait;

static void
wait_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
	Wait *w = user_data;

	w->result = g_object_ref(result);
	w->done = TRUE;
}

static gboolean
account_op(MagpieAccountOp op, const char *jid, const char *password, GError **error)
{
	Wait w = { 0 };
	gboolean ok;

	magpie_account_op_async(op, jid, password, wait_cb, &w);
	g_assert_false(w.done); /* never completes inside the call */
	iterate_until(&w.done, 10000);
	ok = magpie_account_op_finish(w.result, error);
	g_object_unref(w.result);
	return ok;
}

static void
account_ok(MagpieAccountOp op, const char *jid, const char *password)
{
	g_autoptr(GError) error = NULL;

	g_assert_true(account_op(op, jid, password, &error));
	g_assert_no_error(error);
}

/* One SASL step; returns FALSE with @error on failure. */
static gboolean
sasl_step(MagpieSasl *sasl, gboolean start, const char *mech, GBytes *data,
          MagpieSaslStatus *status, GBytes **out, GError **error)
{
	Wait w = { 0 };
	gboolean ok;

	if (start)
		magpie_sasl_start_async(sasl, mech, data, NULL, wait_cb, &w);
	else
		magpie_sasl_step_async(sasl, data, NULL, wait_cb, &w);
	g_assert_false(w.done);
	iterate_until(&w.done, 10000);
	ok = magpie_sasl_step_finish(sasl, w.result, status, out, error);
	g_object_unref(w.result);
	return ok;
}

static char *
new_peer(void)
{
	return g_strdup_printf("192.0.2.%u", ++peer_counter);
}

static MagpieSasl *
new_sasl(const char *peer, const char *cb_type, GBytes *cb_data)
{
	g_autoptr(GError) error = NULL;
	MagpieSasl *sasl = magpie_sasl_new(HOST, NULL, &error);

	g_assert_no_error(error);
	g_assert_nonnull(sasl);
	magpie_sasl_set_tls_for_testing(sasl, peer, cb_type, cb_data);
	return sasl;
}

/* ---- Cyrus client ---- */

typedef struct {
	const char *user;
	const char *authzid;
	const char *password;
	sasl_secret_t *secret;
} ClientCreds;

static int
client_simple_cb(void *context, int id, const char **result, unsigned *len)
{
	ClientCreds *c = context;
	const char *value = id == SASL_CB_USER ? (c->authzid != NULL ? c->authzid : "") : c->user;

	*result = value;
	if (len != NULL)
		*len = strlen(value);
	return SASL_OK;
}

static int
client_pass_cb(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
{
	ClientCreds *c = context;
	gsize len = strlen(c->password);

	if (c->secret == NULL) {
		c->secret = g_malloc0(sizeof(sasl_secret_t) + len + 1);
		c->secret->len = len;
		memcpy(c->secret->data, c->password, len);
	}
	*psecret = c->secret;
	return SASL_OK;
}

#define CB_FN(f) ((int (*)(void))(void (*)(void))(f))

/* A whole exchange with Cyrus's client. Returns TRUE on <success>; on
 * failure @error holds the MAGPIE_SASL_ERROR. @mech_out: the mechanism the
 * client chose. */
static gboolean
cyrus_login(MagpieSasl *sasl, const char *mechlist, const char *user, const char *authzid,
            const char *password, const char *cb_type, GBytes *cb_data, char **mech_out,
            GError **error)
{
	ClientCreds creds = { user, authzid, password, NULL };
	sasl_callback_t callbacks[] = {
		{ SASL_CB_AUTHNAME, CB_FN(client_simple_cb), &creds },
		{ SASL_CB_USER, CB_FN(client_simple_cb), &creds },
		{ SASL_CB_PASS, CB_FN(client_pass_cb), &creds },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	sasl_security_properties_t secprops = { 0 };
	sasl_channel_binding_t cb = { 0 };
	sasl_ssf_t ssf = 256;
	sasl_conn_t *client = NULL;
	const char *out = NULL, *chosen = NULL;
	unsigned outlen = 0;
	int rc;
	gboolean ok = FALSE;
	gboolean start = TRUE;
	g_autofree char *xmpp_mech = NULL;

	g_assert_cmpint(sasl_client_new("xmpp", HOST, NULL, NULL, callbacks, 0, &client), ==,
	                SASL_OK);
	sasl_setprop(client, SASL_SEC_PROPS, &secprops);
	sasl_setprop(client, SASL_SSF_EXTERNAL, &ssf);
	if (cb_type != NULL) {
		gsize len;

		cb.name = cb_type;
		cb.critical = 0;
		cb.data = g_bytes_get_data(cb_data, &len);
		cb.len = len;
		sasl_setprop(client, SASL_CHANNEL_BINDING, &cb);
	}
	rc = sasl_client_start(client, mechlist, NULL, &out, &outlen, &chosen);
	g_assert_true(rc == SASL_OK || rc == SASL_CONTINUE);
	/* Cyrus's client names the base mechanism even when it binds; the
	 * XMPP mechanism name is the -PLUS one then. */
	if (outlen > 2 && strncmp(out, "p=", 2) == 0 && !g_str_has_suffix(chosen, "-PLUS"))
		xmpp_mech = g_strconcat(chosen, "-PLUS", NULL);
	else
		xmpp_mech = g_strdup(chosen);
	if (mech_out != NULL)
		*mech_out = g_strdup(xmpp_mech);

	for (;;) {
		g_autoptr(GBytes) data = g_bytes_new(out, outlen);
		g_autoptr(GBytes) reply = NULL;
		MagpieSaslStatus status;
		gsize len;
		const char *bytes;

		if (!sasl_step(sasl, start, xmpp_mech, data, &status, &reply, error))
			break;
		start = FALSE;
		bytes = g_bytes_get_data(reply, &len);
		if (status == MAGPIE_SASL_SUCCESS) {
			/* The client checks the server signature (v=). */
			if (len > 0) {
				rc = sasl_client_step(client, bytes, len, NULL, &out, &outlen);
				g_assert_cmpint(rc, ==, SASL_OK);
			}
			ok = TRUE;
			break;
		}
		rc = sasl_client_step(client, bytes, len, NULL, &out, &outlen);
		g_assert_true(rc == SASL_OK || rc == SASL_CONTINUE);
	}
	sasl_dispose(&client);
	g_free(creds.secret);
	return ok;
}

static void
assert_login_ok(const char *mechlist, const char *user, const char *password,
                const char *expect_mech, const char *expect_username)
{
	g_autofree char *peer = new_peer();
	MagpieSasl *sasl = new_sasl(peer, NULL, NULL);
	g_autoptr(GError) error = NULL;
	g_autofree char *mech = NULL;

	g_assert_true(cyrus_login(sasl, mechlist, user, NULL, password, NULL, NULL, &mech, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(mech, ==, expect_mech);
	g_assert_cmpstr(magpie_sasl_mechanism_used(sasl), ==, expect_mech);
	g_assert_cmpstr(magpie_sasl_username(sasl), ==, expect_username);
	magpie_sasl_free(sasl);
}

static void
assert_login_fails(const char *mechlist, const char *user, const char *password,
                   MagpieSaslErrorCode code)
{
	g_autofree char *peer = new_peer();
	MagpieSasl *sasl = new_sasl(peer, NULL, NULL);
	g_autoptr(GError) error = NULL;
	gint64 start = g_get_monotonic_time();

	g_assert_false(cyrus_login(sasl, mechlist, user, NULL, password, NULL, NULL, NULL, &error));
	g_assert_error(error, MAGPIE_SASL_ERROR, (gint) code);
	/* Every credential failure is delayed. */
	g_assert_cmpint(g_get_monotonic_time() - start, >=, FAIL_DELAY_MS * 1000);
	g_assert_null(magpie_sasl_username(sasl));
	magpie_sasl_free(sasl);
}

/* ---- hand-written SCRAM client (scram.c underneath) ---- */

static GBytes *
bytes_str(const char *s)
{
	return g_bytes_new(s, strlen(s));
}

/* Parse "r=...,s=...,i=..." */
static void
parse_server_first(GBytes *msg, char **nonce, GBytes **salt, guint *iterations)
{
	g_autofree char *text = g_strndup(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg));
	g_auto(GStrv) fields = g_strsplit(text, ",", -1);

	*nonce = NULL;
	*salt = NULL;
	*iterations = 0;
	for (guint i = 0; fields[i] != NULL; i++) {
		if (g_str_has_prefix(fields[i], "r="))
			*nonce = g_strdup(fields[i] + 2);
		else if (g_str_has_prefix(fields[i], "s=")) {
			gsize len;
			guint8 *raw = g_base64_decode(fields[i] + 2, &len);

			*salt = g_bytes_new_take(raw, len);
		} else if (g_str_has_prefix(fields[i], "i="))
			*iterations = atoi(fields[i] + 2);
	}
	g_assert_nonnull(*nonce);
	g_assert_nonnull(*salt);
	g_assert_cmpuint(*iterations, >, 0);
}

/* Returns the client-final message for @server_first. */
static char *
scram_client_final(MagpieScramHash hash, const char *gs2_header, GBytes *cb_data,
                   const char *client_first_bare, GBytes *server_first, const char *password)
{
	gnutls_mac_algorithm_t mac =
	        hash == MAGPIE_SCRAM_SHA1 ? GNUTLS_MAC_SHA1 : GNUTLS_MAC_SHA256;
	gsize len = magpie_scram_hash_len(hash);
	g_autofree char *nonce = NULL;
	g_autoptr(GBytes) salt = NULL;
	guint iterations;
	g_autoptr(GByteArray) cbind = g_byte_array_new();
	g_autofree char *cbind_b64 = NULL;
	g_autofree char *without_proof = NULL;
	g_autofree char *auth_message = NULL;
	g_autofree char *sf =
	        g_strndup(g_bytes_get_data(server_first, NULL), g_bytes_get_size(server_first));
	g_autofree char *proof_b64 = NULL;
	guint8 salted[32], stored[32], client_key[32], sig[32], proof[32];

	parse_server_first(server_first, &nonce, &salt, &iterations);
	g_byte_array_append(cbind, (const guint8 *) gs2_header, strlen(gs2_header));
	if (cb_data != NULL)
		g_byte_array_append(cbind, g_bytes_get_data(cb_data, NULL),
		                    g_bytes_get_size(cb_data));
	cbind_b64 = g_base64_encode(cbind->data, cbind->len);
	without_proof = g_strdup_printf("c=%s,r=%s", cbind_b64, nonce);
	auth_message = g_strdup_printf("%s,%s,%s", client_first_bare, sf, without_proof);

	magpie_scram_salted_password(hash, password, g_bytes_get_data(salt, NULL),
	                             g_bytes_get_size(salt), iterations, salted);
	magpie_scram_keys(hash, salted, stored, NULL);
	gnutls_hmac_fast(mac, salted, len, "Client Key", 10, client_key);
	gnutls_hmac_fast(mac, stored, len, auth_message, strlen(auth_message), sig);
	for (gsize i = 0; i < len; i++)
		proof[i] = client_key[i] ^ sig[i];
	proof_b64 = g_base64_encode(proof, len);
	return g_strdup_printf("%s,p=%s", without_proof, proof_b64);
}

/* ---- tests ---- */

static void
test_mechanisms(void)
{
	g_autoptr(GError) error = NULL;
	MagpieSasl *sasl;
	g_auto(GStrv) plain_mechs = NULL;
	g_auto(GStrv) tls_mechs = NULL;
	g_auto(GStrv) plus_mechs = NULL;
	g_auto(GStrv) types = NULL;
	g_auto(GStrv) no_types = NULL;
	g_autoptr(GBytes) cb = bytes_str("0123456789abcdef0123456789abcdef");

	if (!need_db())
		return;

	/* Without TLS: no PLAIN, no -PLUS. */
	sasl = magpie_sasl_new(HOST, NULL, &error);
	g_assert_no_error(error);
	plain_mechs = magpie_sasl_mechanisms(sasl);
	g_assert_cmpstrv(plain_mechs,
	                 ((const char *const[]){ "SCRAM-SHA-256", "SCRAM-SHA-1", NULL }));
	no_types = magpie_sasl_channel_binding_types(sasl);
	g_assert_cmpuint(g_strv_length(no_types), ==, 0);
	magpie_sasl_free(sasl);

	sasl = new_sasl("192.0.2.250", NULL, NULL);
	tls_mechs = magpie_sasl_mechanisms(sasl);
	g_assert_cmpstrv(tls_mechs,
	                 ((const char *const[]){ "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", NULL }));
	magpie_sasl_free(sasl);

	sasl = new_sasl("192.0.2.250", "tls-exporter", cb);
	plus_mechs = magpie_sasl_mechanisms(sasl);
	g_assert_cmpstrv(plus_mechs, ((const char *const[]){ "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256",
	                                                     "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
	                                                     "PLAIN", NULL }));
	types = magpie_sasl_channel_binding_types(sasl);
	g_assert_cmpstrv(types, ((const char *const[]){ "tls-exporter", NULL }));
	magpie_sasl_free(sasl);
}

static void
test_scram_sha256(void)
{
	if (!need_db())
		return;
	account_ok(MAGPIE_ACCOUNT_ADD, "romeo@" HOST, "r0meo pass");
	assert_login_ok("SCRAM-SHA-256", "romeo", "r0meo pass", "SCRAM-SHA-256", "romeo");
	/* nodeprep: the account is found under its prepared name */
	assert_login_ok("SCRAM-SHA-256", "Romeo", "r0meo pass", "SCRAM-SHA-256", "romeo");
}

static void
test_scram_sha1(void)
{
	if (!need_db())
		return;
	assert_login_ok("SCRAM-SHA-1", "romeo", "r0meo pass", "SCRAM-SHA-1", "romeo");
}

static void
test_plain(void)
{
	if (!need_db())
		return;
	assert_login_ok("PLAIN", "romeo", "r0meo pass", "PLAIN", "romeo");
	/* SASLprep on the PLAIN path: NBSP is a space */
	assert_login_ok("PLAIN", "romeo", "r0meo\xc2\xa0pass", "PLAIN", "romeo");
}

static void
test_wrong_password(void)
{
	if (!need_db())
		return;
	assert_login_fails("SCRAM-SHA-256", "romeo", "wrong", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	assert_login_fails("SCRAM-SHA-1", "romeo", "wrong", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	assert_login_fails("PLAIN", "romeo", "wrong", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	assert_login_fails("PLAIN", "romeo", "r0meo pass\x07", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
}

/* The first server message for @user with SCRAM-SHA-256. */
static GBytes *
server_first_for(const char *user, MagpieSasl **sasl_out)
{
	g_autofree char *peer = new_peer();
	MagpieSasl *sasl = new_sasl(peer, NULL, NULL);
	g_autofree char *first = g_strdup_printf("n,,n=%s,r=abcdefghijklmnop", user);
	g_autoptr(GBytes) data = bytes_str(first);
	g_autoptr(GError) error = NULL;
	MagpieSaslStatus status;
	GBytes *out = NULL;

	g_assert_true(sasl_step(sasl, TRUE, "SCRAM-SHA-256", data, &status, &out, &error));
	g_assert_no_error(error);
	g_assert_cmpint(status, ==, MAGPIE_SASL_CONTINUE);
	*sasl_out = sasl;
	return out;
}

static void
test_unknown_user(void)
{
	MagpieSasl *sasl1, *sasl2, *sasl3;
	g_autoptr(GBytes) first1 = NULL;
	g_autoptr(GBytes) first2 = NULL;
	g_autoptr(GBytes) first3 = NULL;
	g_autofree char *n1 = NULL, *n2 = NULL, *n3 = NULL;
	g_autoptr(GBytes) s1 = NULL;
	g_autoptr(GBytes) s2 = NULL;
	g_autoptr(GBytes) s3 = NULL;
	guint i1, i2, i3;

	if (!need_db())
		return;
	/* Same shape as a wrong password: a challenge with salt and count,
	 * then not-authorized after the delay. */
	assert_login_fails("SCRAM-SHA-256", "nobody", "whatever", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	assert_login_fails("SCRAM-SHA-1", "nobody", "whatever", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	assert_login_fails("PLAIN", "nobody", "whatever", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	/* a name nodeprep refuses behaves the same */
	assert_login_fails("SCRAM-SHA-256", "bad\x07name", "whatever",
	                   MAGPIE_SASL_ERROR_NOT_AUTHORIZED);

	/* The fake salt is stable for a name, so asking twice tells nothing;
	 * it differs between names, like real salts. */
	first1 = server_first_for("nobody", &sasl1);
	first2 = server_first_for("nobody", &sasl2);
	first3 = server_first_for("romeo", &sasl3);
	parse_server_first(first1, &n1, &s1, &i1);
	parse_server_first(first2, &n2, &s2, &i2);
	parse_server_first(first3, &n3, &s3, &i3);
	g_assert_true(g_bytes_equal(s1, s2));
	g_assert_false(g_bytes_equal(s1, s3));
	g_assert_cmpuint(g_bytes_get_size(s1), ==, g_bytes_get_size(s3));
	g_assert_cmpuint(i1, ==, i3);
	g_assert_cmpuint(i1, ==, 4096);
	magpie_sasl_free(sasl1);
	magpie_sasl_free(sasl2);
	magpie_sasl_free(sasl3);
}

static void
test_disabled(void)
{
	if (!need_db())
		return;
	account_ok(MAGPIE_ACCOUNT_ADD, "mercutio@" HOST, "merc");
	account_ok(MAGPIE_ACCOUNT_DISABLE, "mercutio@" HOST, NULL);
	/* account-disabled only with the right password */
	assert_login_fails("SCRAM-SHA-256", "mercutio", "merc", MAGPIE_SASL_ERROR_ACCOUNT_DISABLED);
	assert_login_fails("PLAIN", "mercutio", "merc", MAGPIE_SASL_ERROR_ACCOUNT_DISABLED);
	assert_login_fails("SCRAM-SHA-256", "mercutio", "nope", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	assert_login_fails("PLAIN", "mercutio", "nope", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	account_ok(MAGPIE_ACCOUNT_ENABLE, "mercutio@" HOST, NULL);
	assert_login_ok("SCRAM-SHA-1", "mercutio", "merc", "SCRAM-SHA-1", "mercutio");
}

static void
test_plus(void)
{
	g_autoptr(GBytes) cb = bytes_str("exporter-bytes-0123456789abcdef");
	g_autoptr(GBytes) wrong = bytes_str("exporter-bytes-0123456789abcdeX");
	g_autofree char *peer = new_peer();
	g_autoptr(GError) error = NULL;
	g_autofree char *mech = NULL;
	MagpieSasl *sasl;

	if (!need_db())
		return;
	account_ok(MAGPIE_ACCOUNT_ADD, "benvolio@" HOST, "benv");

	/* Cyrus's client picks -PLUS when both sides have a binding. */
	sasl = new_sasl(peer, "tls-exporter", cb);
	g_assert_true(cyrus_login(sasl, "SCRAM-SHA-256-PLUS SCRAM-SHA-256", "benvolio", NULL,
	                          "benv", "tls-exporter", cb, &mech, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(mech, ==, "SCRAM-SHA-256-PLUS");
	g_assert_cmpstr(magpie_sasl_mechanism_used(sasl), ==, "SCRAM-SHA-256-PLUS");
	magpie_sasl_free(sasl);
	g_clear_pointer(&mech, g_free);

	sasl = new_sasl(peer, "tls-exporter", cb);
	g_assert_true(cyrus_login(sasl, "SCRAM-SHA-1-PLUS", "benvolio", NULL, "benv",
	                          "tls-exporter", cb, &mech, &error));
	g_assert_cmpstr(mech, ==, "SCRAM-SHA-1-PLUS");
	magpie_sasl_free(sasl);
	g_clear_pointer(&mech, g_free);

	/* Different binding data (a MITM): not-authorized. */
	sasl = new_sasl(peer, "tls-exporter", cb);
	g_assert_false(cyrus_login(sasl, "SCRAM-SHA-256-PLUS", "benvolio", NULL, "benv",
	                           "tls-exporter", wrong, NULL, &error));
	g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	g_clear_error(&error);
	magpie_sasl_free(sasl);

	/* Downgrade: "y" while we offer -PLUS is refused (RFC 5802 §6). */
	{
		const char *bare = "n=benvolio,r=0123456789abcdefghij";
		g_autofree char *first = g_strdup_printf("y,,%s", bare);
		g_autoptr(GBytes) data = bytes_str(first);
		g_autoptr(GBytes) out = NULL;
		g_autofree char *final = NULL;
		g_autoptr(GBytes) final_bytes = NULL;
		MagpieSaslStatus status;
		g_autofree char *peer2 = new_peer();

		sasl = new_sasl(peer2, "tls-exporter", cb);
		if (sasl_step(sasl, TRUE, "SCRAM-SHA-256", data, &status, &out, &error)) {
			final = scram_client_final(MAGPIE_SCRAM_SHA256, "y,,", NULL, bare, out,
			                           "benv");
			final_bytes = bytes_str(final);
			g_clear_pointer(&out, g_bytes_unref);
			g_assert_false(
			        sasl_step(sasl, FALSE, NULL, final_bytes, &status, &out, &error));
		}
		g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
		g_clear_error(&error);
		magpie_sasl_free(sasl);
	}

	/* The gs2 flag must match the mechanism: p= only with -PLUS. */
	{
		const char *bare = "n=benvolio,r=0123456789abcdefghij";
		g_autofree char *first = g_strdup_printf("p=tls-exporter,,%s", bare);
		g_autoptr(GBytes) data = bytes_str(first);
		g_autoptr(GBytes) data_n = NULL;
		g_autoptr(GBytes) out = NULL;
		MagpieSaslStatus status;
		g_autofree char *peer5 = new_peer();

		sasl = new_sasl(peer5, "tls-exporter", cb);
		g_assert_false(sasl_step(sasl, TRUE, "SCRAM-SHA-256", data, &status, &out, &error));
		g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
		g_clear_error(&error);
		magpie_sasl_free(sasl);

		g_free(first);
		first = g_strdup_printf("n,,%s", bare);
		data_n = bytes_str(first);
		sasl = new_sasl(peer5, "tls-exporter", cb);
		g_assert_false(
		        sasl_step(sasl, TRUE, "SCRAM-SHA-256-PLUS", data_n, &status, &out, &error));
		g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
		g_clear_error(&error);
		magpie_sasl_free(sasl);
	}

	/* A binding type we do not have: not-authorized. */
	{
		const char *bare = "n=benvolio,r=0123456789abcdefghij";
		g_autofree char *first = g_strdup_printf("p=tls-unique,,%s", bare);
		g_autoptr(GBytes) data = bytes_str(first);
		g_autoptr(GBytes) out = NULL;
		MagpieSaslStatus status;
		g_autofree char *peer3 = new_peer();

		sasl = new_sasl(peer3, "tls-exporter", cb);
		if (sasl_step(sasl, TRUE, "SCRAM-SHA-256-PLUS", data, &status, &out, &error)) {
			g_autofree char *final = scram_client_final(
			        MAGPIE_SCRAM_SHA256, "p=tls-unique,,", cb, bare, out, "benv");
			g_autoptr(GBytes) final_bytes = bytes_str(final);

			g_clear_pointer(&out, g_bytes_unref);
			g_assert_false(
			        sasl_step(sasl, FALSE, NULL, final_bytes, &status, &out, &error));
		}
		g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
		g_clear_error(&error);
		magpie_sasl_free(sasl);
	}

	/* -PLUS is not offered, so not accepted, without TLS binding. */
	{
		g_autoptr(GBytes) data = bytes_str("p=tls-exporter,,n=benvolio,r=abc");
		g_autoptr(GBytes) out = NULL;
		MagpieSaslStatus status;
		g_autofree char *peer4 = new_peer();

		sasl = new_sasl(peer4, NULL, NULL);
		g_assert_false(
		        sasl_step(sasl, TRUE, "SCRAM-SHA-256-PLUS", data, &status, &out, &error));
		g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_INVALID_MECHANISM);
		g_clear_error(&error);
		magpie_sasl_free(sasl);
	}
}

/* The hand-written client against an SQL-created account; and the keys the
 * SQL functions derive are exactly scram.c's. */
static void
test_sql_created_account(void)
{
	const char *params[] = { "Juliet@Example.COM", "p\xc3\xa4ss w\xc2\xa0rd\xc2\xad" };
	PGresult *res;

	if (!need_db())
		return;
	PQclear(sync_query("SELECT magpie_account_create($1, $2, 4096)", 2, params));
	res = sync_query("SELECT mechanism, iterations, encode(salt, 'base64'),"
	                 " encode(stored_key, 'base64'), encode(server_key, 'base64')"
	                 " FROM scram_credentials WHERE host = 'example.com'"
	                 " AND username = 'juliet' ORDER BY mechanism",
	                 0, NULL);
	g_assert_cmpint(PQntuples(res), ==, 2);
	for (int row = 0; row < 2; row++) {
		MagpieScramHash hash;
		gsize salt_len;
		g_autofree guint8 *salt = g_base64_decode(PQgetvalue(res, row, 2), &salt_len);
		g_autofree char *prepped = NULL;
		g_autofree char *stored_b64 = NULL;
		g_autofree char *server_b64 = NULL;
		guint8 salted[32], stored[32], server[32];

		g_assert_true(magpie_scram_hash_from_mechanism(PQgetvalue(res, row, 0), &hash));
		g_assert_cmpstr(PQgetvalue(res, row, 1), ==, "4096");
		g_assert_cmpuint(salt_len, ==, 16);
		prepped = magpie_saslprep(params[1], strlen(params[1]), NULL);
		g_assert_cmpstr(prepped, ==, "p\xc3\xa4ss w rd");
		magpie_scram_salted_password(hash, prepped, salt, salt_len, 4096, salted);
		magpie_scram_keys(hash, salted, stored, server);
		stored_b64 = g_base64_encode(stored, magpie_scram_hash_len(hash));
		server_b64 = g_base64_encode(server, magpie_scram_hash_len(hash));
		g_assert_cmpstr(PQgetvalue(res, row, 3), ==, stored_b64);
		g_assert_cmpstr(PQgetvalue(res, row, 4), ==, server_b64);
	}
	PQclear(res);

	/* It logs in at once with all three mechanisms. */
	assert_login_ok("SCRAM-SHA-256", "juliet", "p\xc3\xa4ss w rd", "SCRAM-SHA-256", "juliet");
	assert_login_ok("SCRAM-SHA-1", "juliet", "p\xc3\xa4ss w rd", "SCRAM-SHA-1", "juliet");
	assert_login_ok("PLAIN", "juliet", "p\xc3\xa4ss w\xc2\xa0rd", "PLAIN", "juliet");

	/* And with the hand-written client, checking the server's v=. */
	{
		g_autofree char *peer = new_peer();
		MagpieSasl *sasl = new_sasl(peer, NULL, NULL);
		const char *bare = "n=juliet,r=hand-written-nonce";
		g_autofree char *first = g_strdup_printf("n,,%s", bare);
		g_autoptr(GBytes) data = bytes_str(first);
		g_autoptr(GBytes) out = NULL;
		g_autoptr(GBytes) success = NULL;
		g_autoptr(GError) error = NULL;
		g_autofree char *final = NULL;
		g_autoptr(GBytes) final_bytes = NULL;
		MagpieSaslStatus status;

		g_assert_true(sasl_step(sasl, TRUE, "SCRAM-SHA-1", data, &status, &out, &error));
		final = scram_client_final(MAGPIE_SCRAM_SHA1, "n,,", NULL, bare, out,
		                           "p\xc3\xa4ss w rd");
		final_bytes = bytes_str(final);
		g_assert_true(sasl_step(sasl, FALSE, NULL, final_bytes, &status, &success, &error));
		g_assert_no_error(error);
		g_assert_cmpint(status, ==, MAGPIE_SASL_SUCCESS);
		g_assert_true(g_str_has_prefix(g_bytes_get_data(success, NULL), "v="));
		g_assert_cmpstr(magpie_sasl_username(sasl), ==, "juliet");
		magpie_sasl_free(sasl);
	}
}

static void
test_no_initial_response(void)
{
	g_autofree char *peer = new_peer();
	MagpieSasl *sasl;
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) out = NULL;
	g_autoptr(GBytes) out2 = NULL;
	g_autoptr(GBytes) plain = NULL;
	MagpieSaslStatus status;

	if (!need_db())
		return;
	sasl = new_sasl(peer, NULL, NULL);
	g_assert_true(sasl_step(sasl, TRUE, "PLAIN", NULL, &status, &out, &error));
	g_assert_cmpint(status, ==, MAGPIE_SASL_CONTINUE);
	g_assert_cmpuint(g_bytes_get_size(out), ==, 0);
	plain = g_bytes_new("\0romeo\0r0meo pass", 17);
	g_assert_true(sasl_step(sasl, FALSE, NULL, plain, &status, &out2, &error));
	g_assert_no_error(error);
	g_assert_cmpint(status, ==, MAGPIE_SASL_SUCCESS);
	g_assert_cmpstr(magpie_sasl_username(sasl), ==, "romeo");
	magpie_sasl_free(sasl);
}

static void
expect_start_error(const char *mech, const void *data, gsize len, MagpieSaslErrorCode code)
{
	g_autofree char *peer = new_peer();
	MagpieSasl *sasl = new_sasl(peer, NULL, NULL);
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) bytes = g_bytes_new(data, len);
	g_autoptr(GBytes) out = NULL;
	MagpieSaslStatus status;

	g_assert_false(sasl_step(sasl, TRUE, mech, bytes, &status, &out, &error));
	g_assert_error(error, MAGPIE_SASL_ERROR, (gint) code);
	magpie_sasl_free(sasl);
}

static void
test_malformed(void)
{
	if (!need_db())
		return;
	/* hostile SCRAM first messages */
	expect_start_error("SCRAM-SHA-256", "", 0, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "xyz", 3, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,", 3, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,n=romeo", 10, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,n=ro=ZZmeo,r=x", 17,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,n=ro=2", 9, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,n=,r=abc", 11, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "q,,n=romeo,r=abc", 16,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "p=,,n=romeo,r=abc", 17,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "p=a b,,n=romeo,r=abc", 20,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,x=y,n=romeo,r=abc", 19,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,m=ext,n=romeo,r=abc", 22,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,n=ro\0meo,r=abc", 17,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("SCRAM-SHA-256", "n,,n=\xff\xfe,r=abc", 12,
	                   MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	/* hostile PLAIN */
	expect_start_error("PLAIN", "romeo", 5, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("PLAIN", "\0romeo", 6, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("PLAIN", "\0\0pass", 6, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("PLAIN", "\0romeo\0pa\0ss", 13, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	expect_start_error("PLAIN", "\0ro\xc0meo\0pass", 12, MAGPIE_SASL_ERROR_MALFORMED_REQUEST);
	/* unknown or not offered mechanisms */
	expect_start_error("DIGEST-MD5", "x", 1, MAGPIE_SASL_ERROR_INVALID_MECHANISM);
	expect_start_error("ANONYMOUS", "x", 1, MAGPIE_SASL_ERROR_INVALID_MECHANISM);
	expect_start_error("scram-sha-1", "x", 1, MAGPIE_SASL_ERROR_INVALID_MECHANISM);
}

static void
test_authzid(void)
{
	g_autofree char *peer = new_peer();
	g_autoptr(GError) error = NULL;
	MagpieSasl *sasl;

	if (!need_db())
		return;
	/* the account's own bare JID is accepted */
	sasl = new_sasl(peer, NULL, NULL);
	g_assert_true(cyrus_login(sasl, "PLAIN", "romeo", "romeo@" HOST, "r0meo pass", NULL, NULL,
	                          NULL, &error));
	g_assert_no_error(error);
	magpie_sasl_free(sasl);
	sasl = new_sasl(peer, NULL, NULL);
	g_assert_true(cyrus_login(sasl, "SCRAM-SHA-256", "romeo", "Romeo@Example.com", "r0meo pass",
	                          NULL, NULL, NULL, &error));
	g_assert_no_error(error);
	magpie_sasl_free(sasl);

	/* anybody else's is not */
	expect_start_error("PLAIN", "juliet@" HOST "\0romeo\0r0meo pass", 34,
	                   MAGPIE_SASL_ERROR_INVALID_AUTHZID);
	expect_start_error("PLAIN", "romeo@other.example\0romeo\0r0meo pass", 36,
	                   MAGPIE_SASL_ERROR_INVALID_AUTHZID);
	expect_start_error("PLAIN", "romeo@" HOST "/res\0romeo\0r0meo pass", 34,
	                   MAGPIE_SASL_ERROR_INVALID_AUTHZID);
	expect_start_error("SCRAM-SHA-256", "n,a=juliet@" HOST ",n=romeo,r=abc", 35,
	                   MAGPIE_SASL_ERROR_INVALID_AUTHZID);
}

static void
test_rate_limit(void)
{
	const char *peer = "198.51.100.7";
	g_autoptr(GError) error = NULL;
	MagpieSasl *sasl;

	if (!need_db())
		return;
	for (guint i = 0; i < MAX_FAILURES; i++) {
		sasl = new_sasl(peer, NULL, NULL);
		g_assert_false(
		        cyrus_login(sasl, "PLAIN", "romeo", NULL, "bad", NULL, NULL, NULL, &error));
		g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
		g_clear_error(&error);
		magpie_sasl_free(sasl);
	}
	/* Now even the right password is refused for a while. */
	sasl = new_sasl(peer, NULL, NULL);
	g_assert_false(
	        cyrus_login(sasl, "PLAIN", "romeo", NULL, "r0meo pass", NULL, NULL, NULL, &error));
	g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE);
	g_clear_error(&error);
	magpie_sasl_free(sasl);
	/* Other addresses are not affected. */
	assert_login_ok("PLAIN", "romeo", "r0meo pass", "PLAIN", "romeo");
}

static void
test_freed_while_pending(void)
{
	g_autofree char *peer = new_peer();
	MagpieSasl *sasl;
	Wait w = { 0 };
	g_autoptr(GBytes) plain = g_bytes_new("\0romeo\0r0meo pass", 17);
	g_autoptr(GError) error = NULL;

	if (!need_db())
		return;
	/* The caller drops the MagpieSasl (connection closed) while the
	 * credentials are being fetched: the operation still completes. */
	sasl = new_sasl(peer, NULL, NULL);
	magpie_sasl_start_async(sasl, "PLAIN", plain, NULL, wait_cb, &w);
	magpie_sasl_free(sasl);
	iterate_until(&w.done, 10000);
	g_object_unref(w.result);
}

typedef struct {
	GPtrArray *payloads;
} Notes;

static void
notify_cb(const char *channel, const char *payload, gpointer user_data)
{
	Notes *notes = user_data;

	g_assert_cmpstr(channel, ==, "magpie_account");
	g_ptr_array_add(notes->payloads, g_strdup(payload));
}

static void
wait_for_payload(Notes *notes, const char *payload)
{
	gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

	while (!g_ptr_array_find_with_equal_func(notes->payloads, payload, g_str_equal, NULL)) {
		if (g_get_monotonic_time() > end)
			g_error("no NOTIFY '%s'", payload);
		g_main_context_iteration(NULL, TRUE);
	}
}

static void
test_account_ops(void)
{
	g_autoptr(GError) error = NULL;
	Notes notes = { g_ptr_array_new_with_free_func(g_free) };
	guint id;
	Wait w = { 0 };
	g_autoptr(GPtrArray) list = NULL;
	gboolean found = FALSE;

	if (!need_db())
		return;
	id = magpie_pg_listen("magpie_account", notify_cb, &notes, NULL);
	/* let the LISTEN connection come up */
	{
		gint64 end = g_get_monotonic_time() + 500 * 1000;

		while (g_get_monotonic_time() < end)
			g_main_context_iteration(NULL, FALSE);
	}

	account_ok(MAGPIE_ACCOUNT_ADD, "Tybalt@Example.com", "tyb");
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, "tybalt@" HOST, "other", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_EXISTS);
	g_clear_error(&error);

	g_assert_false(account_op(MAGPIE_ACCOUNT_PASSWD, "ghost@" HOST, "x", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_NOT_FOUND);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_DISABLE, "ghost@" HOST, NULL, &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_NOT_FOUND);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_DELETE, "ghost@" HOST, NULL, &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_NOT_FOUND);
	g_clear_error(&error);

	/* invalid input */
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, HOST, "x", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, "a@" HOST "/res", "x", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, "a@b@" HOST, "x", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, "a@" HOST, "", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, "a@" HOST, "\xc2\xad", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, "a@" HOST, "bell\x07", &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID);
	g_clear_error(&error);
	g_assert_false(account_op(MAGPIE_ACCOUNT_ADD, "a@" HOST, NULL, &error));
	g_assert_error(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID);
	g_clear_error(&error);

	/* password change: the old one stops working, NOTIFY password */
	account_ok(MAGPIE_ACCOUNT_PASSWD, "tybalt@" HOST, "new one");
	wait_for_payload(&notes, "password tybalt@" HOST);
	assert_login_ok("SCRAM-SHA-256", "tybalt", "new one", "SCRAM-SHA-256", "tybalt");
	assert_login_fails("PLAIN", "tybalt", "tyb", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);

	account_ok(MAGPIE_ACCOUNT_DISABLE, "tybalt@" HOST, NULL);
	wait_for_payload(&notes, "disabled tybalt@" HOST);

	magpie_account_list_async(HOST, wait_cb, &w);
	iterate_until(&w.done, 10000);
	list = magpie_account_list_finish(w.result, &error);
	g_object_unref(w.result);
	g_assert_no_error(error);
	for (guint i = 0; i < list->len; i++) {
		MagpieAccountInfo *info = list->pdata[i];

		if (g_str_equal(info->jid, "tybalt@" HOST)) {
			found = TRUE;
			g_assert_true(info->disabled);
			g_assert_cmpint(info->created, >, 1600000000);
		}
	}
	g_assert_true(found);
	g_clear_pointer(&list, g_ptr_array_unref);

	w = (Wait){ 0 };
	magpie_account_list_async("nowhere.example", wait_cb, &w);
	iterate_until(&w.done, 10000);
	list = magpie_account_list_finish(w.result, &error);
	g_object_unref(w.result);
	g_assert_no_error(error);
	g_assert_cmpuint(list->len, ==, 0);

	account_ok(MAGPIE_ACCOUNT_DELETE, "tybalt@" HOST, NULL);
	wait_for_payload(&notes, "deleted tybalt@" HOST);
	assert_login_fails("SCRAM-SHA-256", "tybalt", "new one", MAGPIE_SASL_ERROR_NOT_AUTHORIZED);
	/* creating an account sends no "password" notification */
	g_assert_false(g_ptr_array_find_with_equal_func(notes.payloads, "password romeo@" HOST,
	                                                g_str_equal, NULL));

	magpie_pg_unlisten(id);
	g_ptr_array_unref(notes.payloads);
}

static void
test_database_down(void)
{
	g_autofree char *peer = new_peer();
	MagpieSasl *sasl;
	g_autoptr(GError) error = NULL;
	MagpiePgSettings settings = { 0 };
	g_autofree char *bad = NULL;

	if (!need_db())
		return;
	/* Point the pool at a database that does not exist. */
	magpie_pg_stop();
	bad = g_strdup_printf("%s dbname=magpie_no_such_db connect_timeout=2", admin_conninfo);
	settings.conninfo = bad;
	settings.query_timeout_ms = 500;
	magpie_pg_start(&settings);
	sasl = new_sasl(peer, NULL, NULL);
	g_assert_false(cyrus_login(sasl, "SCRAM-SHA-256", "romeo", NULL, "r0meo pass", NULL, NULL,
	                           NULL, &error));
	g_assert_error(error, MAGPIE_SASL_ERROR, MAGPIE_SASL_ERROR_TEMPORARY_AUTH_FAILURE);
	magpie_sasl_free(sasl);
	magpie_pg_stop();
	settings.conninfo = conninfo;
	magpie_pg_start(&settings);
}

/* ---- set-up ---- */

static gboolean
setup_database(void)
{
	const char *host = g_getenv("MAGPIE_TEST_PGHOST");
	const char *db = g_getenv("MAGPIE_TEST_PGDATABASE");
	g_autofree char *sql_path = NULL;
	g_autofree char *sql = NULL;
	g_autofree char *create = NULL;
	g_autoptr(GError) error = NULL;
	MagpiePgSettings settings = { 0 };

	if (host == NULL || *host == '\0')
		return FALSE;
	admin_conninfo = g_strdup_printf("host=%s", host);
	{
		g_autofree char *first = g_strdup_printf("%s dbname=%s", admin_conninfo,
		                                         db != NULL ? db : "postgres");

		dbname = g_strdup_printf("magpie_sasl_%d", (int) getpid());
		create = g_strdup_printf("CREATE DATABASE %s", dbname);
		sync_exec_on(first, create);
		g_free(admin_conninfo);
		admin_conninfo = g_steal_pointer(&first);
	}
	conninfo = g_strdup_printf("host=%s dbname=%s", host, dbname);

	sql_path = g_build_filename(g_getenv("MAGPIE_SOURCE_ROOT") != NULL
	                                    ? g_getenv("MAGPIE_SOURCE_ROOT")
	                                    : MAGPIE_SOURCE_DIR,
	                            "sql", "core", "0001_accounts.sql", NULL);
	if (!g_file_get_contents(sql_path, &sql, NULL, &error))
		g_error("%s", error->message);
	sync_exec_on(conninfo, sql);

	settings.conninfo = conninfo;
	magpie_pg_start(&settings);
	return TRUE;
}

static void
teardown_database(void)
{
	g_autofree char *drop = NULL;

	magpie_pg_stop();
	drop = g_strdup_printf("DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
	sync_exec_on(admin_conninfo, drop);
}

int
main(int argc, char **argv)
{
	MagpieSaslSettings settings = {
		.iterations = 4096,
		.fail_delay_ms = FAIL_DELAY_MS,
		.max_failures = MAX_FAILURES,
		.failure_window_s = 60,
	};
	g_autoptr(GError) error = NULL;
	gboolean have_db;
	int rc;

	g_test_init(&argc, &argv, NULL);
	have_db = setup_database();
	g_assert_true(magpie_sasl_global_init(&settings, &error));
	g_assert_no_error(error);
	g_assert_cmpint(sasl_client_init(NULL), ==, SASL_OK);
	magpie_accounts_set_iterations(4096);

	g_test_add_func("/sasl/mechanisms", test_mechanisms);
	g_test_add_func("/sasl/scram-sha-256", test_scram_sha256);
	g_test_add_func("/sasl/scram-sha-1", test_scram_sha1);
	g_test_add_func("/sasl/plain", test_plain);
	g_test_add_func("/sasl/wrong-password", test_wrong_password);
	g_test_add_func("/sasl/unknown-user", test_unknown_user);
	g_test_add_func("/sasl/disabled", test_disabled);
	g_test_add_func("/sasl/plus/tls-exporter", test_plus);
	g_test_add_func("/sasl/sql-created-account", test_sql_created_account);
	g_test_add_func("/sasl/no-initial-response", test_no_initial_response);
	g_test_add_func("/sasl/malformed", test_malformed);
	g_test_add_func("/sasl/authzid", test_authzid);
	g_test_add_func("/sasl/rate-limit", test_rate_limit);
	g_test_add_func("/sasl/freed-while-pending", test_freed_while_pending);
	g_test_add_func("/sasl/accounts/ops", test_account_ops);
	g_test_add_func("/sasl/database-down", test_database_down);
	rc = g_test_run();

	sasl_client_done();
	magpie_sasl_global_done();
	if (have_db)
		teardown_database();
	return rc;
}
