/* SCRAM credentials (RFC 5802, RFC 7677): key derivation, SASLprep
 * (RFC 4013) and RFC 5803 authPassword records. GnuTLS does the crypto. */
#include "scram.h"

#include <string.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stringprep.h>

#define SCRAM_SALT_LEN 16

static GQuark
scram_error_quark(void)
{
	return g_quark_from_static_string("magpie-scram-error-quark");
}

const char *
magpie_scram_mechanism(MagpieScramHash hash)
{
	switch (hash) {
	case MAGPIE_SCRAM_SHA1:
		return "SCRAM-SHA-1";
	case MAGPIE_SCRAM_SHA256:
		return "SCRAM-SHA-256";
	}
	g_return_val_if_reached(NULL);
}

gsize
magpie_scram_hash_len(MagpieScramHash hash)
{
	switch (hash) {
	case MAGPIE_SCRAM_SHA1:
		return 20;
	case MAGPIE_SCRAM_SHA256:
		return 32;
	}
	g_return_val_if_reached(0);
}

gboolean
magpie_scram_hash_from_mechanism(const char *mech, MagpieScramHash *hash_out)
{
	MagpieScramHash hash;

	g_return_val_if_fail(mech != NULL, FALSE);

	/* "-PLUS" names the same credential with channel binding. */
	if (g_str_equal(mech, "SCRAM-SHA-1") || g_str_equal(mech, "SCRAM-SHA-1-PLUS"))
		hash = MAGPIE_SCRAM_SHA1;
	else if (g_str_equal(mech, "SCRAM-SHA-256") || g_str_equal(mech, "SCRAM-SHA-256-PLUS"))
		hash = MAGPIE_SCRAM_SHA256;
	else
		return FALSE;
	if (hash_out != NULL)
		*hash_out = hash;
	return TRUE;
}

static gnutls_mac_algorithm_t
scram_mac(MagpieScramHash hash)
{
	return hash == MAGPIE_SCRAM_SHA1 ? GNUTLS_MAC_SHA1 : GNUTLS_MAC_SHA256;
}

static gnutls_digest_algorithm_t
scram_digest(MagpieScramHash hash)
{
	return hash == MAGPIE_SCRAM_SHA1 ? GNUTLS_DIG_SHA1 : GNUTLS_DIG_SHA256;
}

char *
magpie_saslprep(const char *password, gsize len, GError **error)
{
	g_autofree char *copy = NULL;
	char *out = NULL;
	char *result;
	int rc;

	g_return_val_if_fail(password != NULL || len == 0, NULL);

	/* Embedded NULs and invalid UTF-8 cannot be prepared (RFC 4013 works on
	 * Unicode strings); stringprep needs a NUL-terminated copy anyway. */
	if (memchr(password, '\0', len) != NULL || !g_utf8_validate(password, len, NULL)) {
		g_set_error_literal(error, scram_error_quark(), 0,
		                    "Password is not valid UTF-8 text");
		return NULL;
	}
	copy = g_strndup(password, len);
	rc = stringprep_profile(copy, &out, "SASLprep", STRINGPREP_NO_UNASSIGNED);
	if (rc != STRINGPREP_OK) {
		g_set_error(error, scram_error_quark(), 0,
		            "Password has characters SASLprep prohibits (%s)",
		            stringprep_strerror(rc));
		return NULL;
	}
	/* Hand back GLib-allocated memory, and wipe libidn's copy. */
	result = g_strdup(out);
	gnutls_memset(out, 0, strlen(out));
	free(out);
	gnutls_memset(copy, 0, len);
	return result;
}

void
magpie_scram_salted_password(MagpieScramHash hash, const char *password, const guint8 *salt,
                             gsize salt_len, guint iterations, guint8 *salted_out)
{
	gnutls_datum_t key = { (unsigned char *) password, 0 };
	gnutls_datum_t salt_datum = { (unsigned char *) salt, salt_len };
	int rc;

	g_return_if_fail(password != NULL);
	g_return_if_fail(salt != NULL);
	g_return_if_fail(iterations > 0);
	g_return_if_fail(salted_out != NULL);

	key.size = strlen(password);
	rc = gnutls_pbkdf2(scram_mac(hash), &key, &salt_datum, iterations, salted_out,
	                   magpie_scram_hash_len(hash));
	if (rc < 0) {
		/* Only on invalid arguments; never hand back stale memory. */
		g_critical("gnutls_pbkdf2: %s", gnutls_strerror(rc));
		gnutls_rnd(GNUTLS_RND_NONCE, salted_out, magpie_scram_hash_len(hash));
	}
}

void
magpie_scram_keys(MagpieScramHash hash, const guint8 *salted, guint8 *stored_key_out,
                  guint8 *server_key_out)
{
	gsize len = magpie_scram_hash_len(hash);
	guint8 client_key[32];

	g_return_if_fail(salted != NULL);

	if (stored_key_out != NULL) {
		gnutls_hmac_fast(scram_mac(hash), salted, len, "Client Key", 10, client_key);
		gnutls_hash_fast(scram_digest(hash), client_key, len, stored_key_out);
		gnutls_memset(client_key, 0, sizeof(client_key));
	}
	if (server_key_out != NULL)
		gnutls_hmac_fast(scram_mac(hash), salted, len, "Server Key", 10, server_key_out);
}

static MagpieScramCredential *
scram_credential_from_prepped(MagpieScramHash hash, const char *prepped, GBytes *salt,
                              guint iterations)
{
	MagpieScramCredential *cred = g_new0(MagpieScramCredential, 1);
	gsize len = magpie_scram_hash_len(hash);
	guint8 salted[32], stored[32], server[32];
	gsize salt_len;
	const guint8 *salt_data = g_bytes_get_data(salt, &salt_len);

	magpie_scram_salted_password(hash, prepped, salt_data, salt_len, iterations, salted);
	magpie_scram_keys(hash, salted, stored, server);
	gnutls_memset(salted, 0, sizeof(salted));

	cred->hash = hash;
	cred->iterations = iterations;
	cred->salt = g_bytes_ref(salt);
	cred->stored_key = g_bytes_new(stored, len);
	cred->server_key = g_bytes_new(server, len);
	return cred;
}

MagpieScramCredential *
magpie_scram_credential_new(MagpieScramHash hash, const char *password, guint iterations,
                            GError **error)
{
	g_autofree char *prepped = NULL;
	g_autoptr(GBytes) salt = NULL;
	guint8 salt_data[SCRAM_SALT_LEN];
	MagpieScramCredential *cred;

	g_return_val_if_fail(password != NULL, NULL);
	g_return_val_if_fail(iterations > 0, NULL);

	prepped = magpie_saslprep(password, strlen(password), error);
	if (prepped == NULL)
		return NULL;
	if (gnutls_rnd(GNUTLS_RND_NONCE, salt_data, sizeof(salt_data)) < 0) {
		g_set_error_literal(error, scram_error_quark(), 1, "No random bytes for the salt");
		return NULL;
	}
	salt = g_bytes_new(salt_data, sizeof(salt_data));
	cred = scram_credential_from_prepped(hash, prepped, salt, iterations);
	gnutls_memset(prepped, 0, strlen(prepped));
	return cred;
}

gboolean
magpie_scram_credential_check(const MagpieScramCredential *cred, const char *password, gsize len)
{
	g_autofree char *prepped = NULL;
	gsize hash_len, salt_len, stored_len;
	const guint8 *salt, *stored;
	guint8 salted[32], candidate[32];
	gboolean ok;

	g_return_val_if_fail(cred != NULL, FALSE);
	g_return_val_if_fail(password != NULL || len == 0, FALSE);

	hash_len = magpie_scram_hash_len(cred->hash);
	salt = g_bytes_get_data(cred->salt, &salt_len);
	stored = g_bytes_get_data(cred->stored_key, &stored_len);
	if (stored_len != hash_len || cred->iterations == 0)
		return FALSE;

	prepped = magpie_saslprep(password, len, NULL);
	if (prepped == NULL)
		return FALSE;
	magpie_scram_salted_password(cred->hash, prepped, salt, salt_len, cred->iterations, salted);
	gnutls_memset(prepped, 0, strlen(prepped));
	magpie_scram_keys(cred->hash, salted, candidate, NULL);
	gnutls_memset(salted, 0, sizeof(salted));
	ok = gnutls_memcmp(candidate, stored, hash_len) == 0;
	gnutls_memset(candidate, 0, sizeof(candidate));
	return ok;
}

void
magpie_scram_credential_free(MagpieScramCredential *cred)
{
	if (cred == NULL)
		return;
	g_clear_pointer(&cred->salt, g_bytes_unref);
	g_clear_pointer(&cred->stored_key, g_bytes_unref);
	g_clear_pointer(&cred->server_key, g_bytes_unref);
	g_free(cred);
}

static char *
scram_base64(GBytes *bytes)
{
	gsize len;
	const guint8 *data = g_bytes_get_data(bytes, &len);

	return g_base64_encode(data, len);
}

char *
magpie_scram_credential_to_authpassword(const MagpieScramCredential *cred)
{
	g_autofree char *salt = NULL;
	g_autofree char *stored = NULL;
	g_autofree char *server = NULL;

	g_return_val_if_fail(cred != NULL, NULL);
	g_return_val_if_fail(cred->salt != NULL && cred->stored_key != NULL, NULL);
	g_return_val_if_fail(cred->server_key != NULL, NULL);

	salt = scram_base64(cred->salt);
	stored = scram_base64(cred->stored_key);
	server = scram_base64(cred->server_key);
	/* RFC 5803 §3: scheme$iterations:salt$storedKey:serverKey */
	return g_strdup_printf("%s$%u:%s$%s:%s", magpie_scram_mechanism(cred->hash),
	                       cred->iterations, salt, stored, server);
}
