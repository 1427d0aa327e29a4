/* SCRAM-SHA-1 for the load generator (RFC 5802). SaltedPassword is cached
 * per (password, salt, iterations): with the benchmark's shared salt the
 * generator derives it once, so its own CPU goes to the connections. */
#include "loadgen.h"

#include <gnutls/crypto.h>
#include <string.h>

#define SHA1_LEN 20

GQuark scram_error_quark(void);
G_DEFINE_QUARK(loadgen - scram - error - quark, scram_error)

static GHashTable *salted_cache; /* "i:salt-b64" -> guint8[20] */

static void
hmac(const guint8 *key, gsize key_len, const char *data, gsize len, guint8 out[SHA1_LEN])
{
	gnutls_hmac_fast(GNUTLS_MAC_SHA1, key, key_len, data, len, out);
}

static const guint8 *
salted_password(const char *password, const char *salt_b64, guint iterations)
{
	g_autofree char *key = g_strdup_printf("%u:%s", iterations, salt_b64);
	guint8 *sp;
	gsize salt_len;
	g_autofree guchar *salt = NULL;
	gnutls_datum_t pw = { (unsigned char *) password, strlen(password) };
	gnutls_datum_t s;

	if (salted_cache == NULL)
		salted_cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	sp = g_hash_table_lookup(salted_cache, key);
	if (sp != NULL)
		return sp;
	salt = g_base64_decode(salt_b64, &salt_len);
	s.data = salt;
	s.size = salt_len;
	sp = g_malloc(SHA1_LEN);
	if (gnutls_pbkdf2(GNUTLS_MAC_SHA1, &pw, &s, iterations, sp, SHA1_LEN) < 0) {
		g_free(sp);
		return NULL;
	}
	g_hash_table_insert(salted_cache, g_steal_pointer(&key), sp);
	return sp;
}

char *
scram_client_first(Conn *c)
{
	guint8 nonce_raw[18];
	g_autofree char *nonce = NULL;
	g_autofree char *gs2 = NULL;

	gnutls_rnd(GNUTLS_RND_NONCE, nonce_raw, sizeof nonce_raw);
	nonce = g_base64_encode(nonce_raw, sizeof nonce_raw);
	g_free(c->scram_first_bare);
	c->scram_first_bare = g_strdup_printf("n=u%u,r=%s", c->user, nonce);
	gs2 = g_strdup_printf("n,,%s", c->scram_first_bare);
	return g_base64_encode((const guchar *) gs2, strlen(gs2));
}

static const char *
field(char **parts, char name)
{
	for (; *parts != NULL; parts++)
		if ((*parts)[0] == name && (*parts)[1] == '=')
			return *parts + 2;
	return NULL;
}

char *
scram_client_final(Conn *c, const char *challenge_b64, GError **error)
{
	gsize len;
	g_autofree char *server_first = (char *) g_base64_decode(challenge_b64, &len);
	g_autofree char *server_first_z = g_strndup(server_first, len);
	g_auto(GStrv) parts = g_strsplit(server_first_z, ",", -1);
	const char *nonce = field(parts, 'r'), *salt = field(parts, 's'), *iter = field(parts, 'i');
	const guint8 *sp;
	guint8 client_key[SHA1_LEN], stored_key[SHA1_LEN], client_sig[SHA1_LEN];
	guint8 server_key[SHA1_LEN], server_sig[SHA1_LEN];
	g_autofree char *without_proof = NULL, *auth_message = NULL, *proof = NULL;
	g_autofree char *final = NULL;
	guint i;

	if (c->scram_first_bare == NULL || nonce == NULL || salt == NULL || iter == NULL) {
		g_set_error_literal(error, scram_error_quark(), 0, "bad SCRAM server-first");
		return NULL;
	}
	sp = salted_password(c->cfg->password, salt, (guint) g_ascii_strtoull(iter, NULL, 10));
	if (sp == NULL) {
		g_set_error_literal(error, scram_error_quark(), 0, "PBKDF2 failed");
		return NULL;
	}
	without_proof = g_strdup_printf("c=biws,r=%s", nonce);
	auth_message =
	        g_strdup_printf("%s,%s,%s", c->scram_first_bare, server_first_z, without_proof);
	hmac(sp, SHA1_LEN, "Client Key", 10, client_key);
	gnutls_hash_fast(GNUTLS_DIG_SHA1, client_key, SHA1_LEN, stored_key);
	hmac(stored_key, SHA1_LEN, auth_message, strlen(auth_message), client_sig);
	for (i = 0; i < SHA1_LEN; i++)
		client_key[i] ^= client_sig[i];
	proof = g_base64_encode(client_key, SHA1_LEN);
	hmac(sp, SHA1_LEN, "Server Key", 10, server_key);
	hmac(server_key, SHA1_LEN, auth_message, strlen(auth_message), server_sig);
	g_free(c->scram_server_sig);
	c->scram_server_sig = g_base64_encode(server_sig, SHA1_LEN);
	final = g_strdup_printf("%s,p=%s", without_proof, proof);
	return g_base64_encode((const guchar *) final, strlen(final));
}

gboolean
scram_check_server_final(Conn *c, const char *data_b64)
{
	gsize len;
	g_autofree char *raw = (char *) g_base64_decode(data_b64, &len);
	g_autofree char *z = g_strndup(raw, len);

	return c->scram_server_sig != NULL && g_str_has_prefix(z, "v=") &&
	       strcmp(z + 2, c->scram_server_sig) == 0;
}
