/* SCRAM derivation against the RFC 5802 and RFC 7677 test vectors,
 * SASLprep and the RFC 5803 authPassword format. */
#include <string.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "scram.h"

typedef struct {
	MagpieScramHash hash;
	const char *salt_b64;
	const char *client_first_bare;
	const char *server_first;
	const char *client_final_no_proof;
	const char *proof_b64;
	const char *server_signature_b64;
} ScramVector;

/* RFC 5802 §5 */
static const ScramVector vector_sha1 = {
	MAGPIE_SCRAM_SHA1,
	"QSXCR+Q6sek8bf92",
	"n=user,r=fyko+d2lbbFgONRv9qkxdawL",
	"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
	"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
	"v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
	"rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

/* RFC 7677 §3 */
static const ScramVector vector_sha256 = {
	MAGPIE_SCRAM_SHA256,
	"W22ZaJ0SNY7soEsUEjb6gQ==",
	"n=user,r=rOprNGfwEbeRWgbNEkqO",
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
	"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

static void
check_vector(const ScramVector *v)
{
	gnutls_mac_algorithm_t mac =
	        v->hash == MAGPIE_SCRAM_SHA1 ? GNUTLS_MAC_SHA1 : GNUTLS_MAC_SHA256;
	gsize len = magpie_scram_hash_len(v->hash);
	gsize salt_len;
	g_autofree guint8 *salt = g_base64_decode(v->salt_b64, &salt_len);
	g_autofree char *auth_message = NULL;
	g_autofree char *proof_b64 = NULL;
	g_autofree char *sig_b64 = NULL;
	guint8 salted[32], stored[32], server[32], client_key[32], check[32];
	guint8 client_sig[32], proof[32], server_sig[32];

	magpie_scram_salted_password(v->hash, "pencil", salt, salt_len, 4096, salted);
	magpie_scram_keys(v->hash, salted, stored, server);

	/* StoredKey must be H(ClientKey). */
	gnutls_hmac_fast(mac, salted, len, "Client Key", 10, client_key);
	gnutls_hash_fast(v->hash == MAGPIE_SCRAM_SHA1 ? GNUTLS_DIG_SHA1 : GNUTLS_DIG_SHA256,
	                 client_key, len, check);
	g_assert_cmpmem(check, len, stored, len);

	auth_message = g_strconcat(v->client_first_bare, ",", v->server_first, ",",
	                           v->client_final_no_proof, NULL);
	gnutls_hmac_fast(mac, stored, len, auth_message, strlen(auth_message), client_sig);
	for (gsize i = 0; i < len; i++)
		proof[i] = client_key[i] ^ client_sig[i];
	proof_b64 = g_base64_encode(proof, len);
	g_assert_cmpstr(proof_b64, ==, v->proof_b64);

	gnutls_hmac_fast(mac, server, len, auth_message, strlen(auth_message), server_sig);
	sig_b64 = g_base64_encode(server_sig, len);
	g_assert_cmpstr(sig_b64, ==, v->server_signature_b64);
}

static void
test_rfc5802_sha1(void)
{
	check_vector(&vector_sha1);
}

static void
test_rfc7677_sha256(void)
{
	check_vector(&vector_sha256);
}

static void
test_mechanism_names(void)
{
	MagpieScramHash hash;

	g_assert_cmpstr(magpie_scram_mechanism(MAGPIE_SCRAM_SHA1), ==, "SCRAM-SHA-1");
	g_assert_cmpstr(magpie_scram_mechanism(MAGPIE_SCRAM_SHA256), ==, "SCRAM-SHA-256");
	g_assert_cmpuint(magpie_scram_hash_len(MAGPIE_SCRAM_SHA1), ==, 20);
	g_assert_cmpuint(magpie_scram_hash_len(MAGPIE_SCRAM_SHA256), ==, 32);
	g_assert_true(magpie_scram_hash_from_mechanism("SCRAM-SHA-256-PLUS", &hash));
	g_assert_cmpint(hash, ==, MAGPIE_SCRAM_SHA256);
	g_assert_true(magpie_scram_hash_from_mechanism("SCRAM-SHA-1", &hash));
	g_assert_cmpint(hash, ==, MAGPIE_SCRAM_SHA1);
	g_assert_false(magpie_scram_hash_from_mechanism("SCRAM-SHA-512", &hash));
	g_assert_false(magpie_scram_hash_from_mechanism("scram-sha-1", &hash));
	g_assert_false(magpie_scram_hash_from_mechanism("PLAIN", NULL));
}

static void
test_saslprep(void)
{
	g_autoptr(GError) error = NULL;
	char *out;

	/* RFC 4013 §3 examples */
	out = magpie_saslprep("I\xc2\xad"
	                      "X",
	                      4, &error); /* soft hyphen: mapped to nothing */
	g_assert_no_error(error);
	g_assert_cmpstr(out, ==, "IX");
	g_free(out);
	out = magpie_saslprep("user", 4, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(out, ==, "user");
	g_free(out);
	out = magpie_saslprep("USER", 4, &error); /* case preserved */
	g_assert_cmpstr(out, ==, "USER");
	g_free(out);
	out = magpie_saslprep("\xc2\xaa", 2, &error); /* ª -> a (NFKC) */
	g_assert_no_error(error);
	g_assert_cmpstr(out, ==, "a");
	g_free(out);
	out = magpie_saslprep("\xe2\x85\xa8", 3, &error); /* Ⅸ -> IX */
	g_assert_no_error(error);
	g_assert_cmpstr(out, ==, "IX");
	g_free(out);
	out = magpie_saslprep("a\xc2\xa0"
	                      "b",
	                      4, &error); /* NBSP -> space */
	g_assert_no_error(error);
	g_assert_cmpstr(out, ==, "a b");
	g_free(out);
	/* len is honoured: the rest is not looked at */
	out = magpie_saslprep("abcdef", 3, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(out, ==, "abc");
	g_free(out);

	/* prohibited: U+0007 control character */
	out = magpie_saslprep("\x07", 1, &error);
	g_assert_null(out);
	g_assert_nonnull(error);
	g_clear_error(&error);
	/* prohibited: private use U+E000 */
	out = magpie_saslprep("a\xee\x80\x80", 4, &error);
	g_assert_null(out);
	g_clear_error(&error);
	/* bidi: RandALCat then LCat */
	out = magpie_saslprep("\xd8\xa7"
	                      "1",
	                      3, &error);
	g_assert_null(out);
	g_clear_error(&error);
	/* unassigned code point U+0221 in Unicode 3.2 */
	out = magpie_saslprep("\xc8\xa1", 2, &error);
	g_assert_null(out);
	g_clear_error(&error);
	/* invalid UTF-8, embedded NUL */
	out = magpie_saslprep("\xff\xfe", 2, &error);
	g_assert_null(out);
	g_clear_error(&error);
	out = magpie_saslprep("a\0b", 3, &error);
	g_assert_null(out);
	g_clear_error(&error);
	/* empty stays empty */
	out = magpie_saslprep("", 0, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(out, ==, "");
	g_free(out);
}

static void
test_credential_check(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieScramCredential) cred = NULL;

	cred = magpie_scram_credential_new(MAGPIE_SCRAM_SHA256,
	                                   "a\xc2\xa0"
	                                   "b",
	                                   64, &error);
	g_assert_no_error(error);
	g_assert_nonnull(cred);
	g_assert_cmpuint(g_bytes_get_size(cred->salt), ==, 16);
	g_assert_cmpuint(g_bytes_get_size(cred->stored_key), ==, 32);
	g_assert_cmpuint(g_bytes_get_size(cred->server_key), ==, 32);
	g_assert_cmpuint(cred->iterations, ==, 64);
	/* SASLprep makes the NBSP and the space the same password */
	g_assert_true(magpie_scram_credential_check(cred, "a b", 3));
	g_assert_true(magpie_scram_credential_check(cred,
	                                            "a\xc2\xa0"
	                                            "b",
	                                            4));
	g_assert_false(magpie_scram_credential_check(cred, "a  b", 4));
	g_assert_false(magpie_scram_credential_check(cred, "ab", 2));
	g_assert_false(magpie_scram_credential_check(cred, "", 0));
	g_assert_false(magpie_scram_credential_check(cred, "\x07", 1));

	g_clear_pointer(&cred, magpie_scram_credential_free);
	cred = magpie_scram_credential_new(MAGPIE_SCRAM_SHA1, "x\x07", 64, &error);
	g_assert_null(cred);
	g_assert_nonnull(error);
}

static void
test_two_salts_differ(void)
{
	g_autoptr(MagpieScramCredential) a = NULL;
	g_autoptr(MagpieScramCredential) b = NULL;

	a = magpie_scram_credential_new(MAGPIE_SCRAM_SHA1, "secret", 16, NULL);
	b = magpie_scram_credential_new(MAGPIE_SCRAM_SHA1, "secret", 16, NULL);
	g_assert_false(g_bytes_equal(a->salt, b->salt));
	g_assert_false(g_bytes_equal(a->stored_key, b->stored_key));
	g_assert_true(magpie_scram_credential_check(a, "secret", 6));
	g_assert_true(magpie_scram_credential_check(b, "secret", 6));
}

static void
test_authpassword(void)
{
	MagpieScramCredential cred = { 0 };
	gsize salt_len;
	g_autofree guint8 *salt = g_base64_decode(vector_sha256.salt_b64, &salt_len);
	guint8 salted[32], stored[32], server[32];
	g_autofree char *value = NULL;
	g_autofree char *expected = NULL;
	g_autofree char *stored_b64 = NULL;
	g_autofree char *server_b64 = NULL;

	magpie_scram_salted_password(MAGPIE_SCRAM_SHA256, "pencil", salt, salt_len, 4096, salted);
	magpie_scram_keys(MAGPIE_SCRAM_SHA256, salted, stored, server);
	cred.hash = MAGPIE_SCRAM_SHA256;
	cred.iterations = 4096;
	cred.salt = g_bytes_new(salt, salt_len);
	cred.stored_key = g_bytes_new(stored, 32);
	cred.server_key = g_bytes_new(server, 32);

	value = magpie_scram_credential_to_authpassword(&cred);
	stored_b64 = g_base64_encode(stored, 32);
	server_b64 = g_base64_encode(server, 32);
	expected = g_strdup_printf("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$%s:%s", stored_b64,
	                           server_b64);
	g_assert_cmpstr(value, ==, expected);
	/* The keys decode to exactly the hash length, as Cyrus requires. */
	g_assert_true(g_str_has_prefix(value, "SCRAM-SHA-256$4096:"));
	g_assert_cmpuint(strlen(stored_b64), ==, 44);

	g_bytes_unref(cred.salt);
	g_bytes_unref(cred.stored_key);
	g_bytes_unref(cred.server_key);

	{
		g_autoptr(MagpieScramCredential) c1 = NULL;
		g_autofree char *v1 = NULL;
		g_auto(GStrv) parts = NULL;

		c1 = magpie_scram_credential_new(MAGPIE_SCRAM_SHA1, "x", 10, NULL);
		v1 = magpie_scram_credential_to_authpassword(c1);
		parts = g_strsplit_set(v1, "$:", -1);
		g_assert_cmpuint(g_strv_length(parts), ==, 5);
		g_assert_cmpstr(parts[0], ==, "SCRAM-SHA-1");
		g_assert_cmpstr(parts[1], ==, "10");
		g_assert_cmpuint(strlen(parts[3]), ==, 28); /* 20 bytes */
		g_assert_cmpuint(strlen(parts[4]), ==, 28);
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/scram/rfc5802/sha1", test_rfc5802_sha1);
	g_test_add_func("/scram/rfc7677/sha256", test_rfc7677_sha256);
	g_test_add_func("/scram/mechanism-names", test_mechanism_names);
	g_test_add_func("/scram/saslprep", test_saslprep);
	g_test_add_func("/scram/credential/check", test_credential_check);
	g_test_add_func("/scram/credential/random-salt", test_two_salts_differ);
	g_test_add_func("/scram/authpassword", test_authpassword);
	return g_test_run();
}
