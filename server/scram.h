/* SCRAM credentials (RFC 5802, RFC 7677): derivation and RFC 5803 records. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
	MAGPIE_SCRAM_SHA1,
	MAGPIE_SCRAM_SHA256,
} MagpieScramHash;

typedef struct {
	MagpieScramHash hash;
	guint iterations;
	GBytes *salt;
	GBytes *stored_key; /* H(HMAC(SaltedPassword, "Client Key")) */
	GBytes *server_key; /* HMAC(SaltedPassword, "Server Key") */
} MagpieScramCredential;

const char *magpie_scram_mechanism(MagpieScramHash hash); /* "SCRAM-SHA-1" */
gsize magpie_scram_hash_len(MagpieScramHash hash);        /* 20 or 32 */
gboolean magpie_scram_hash_from_mechanism(const char *mech, MagpieScramHash *hash_out);

/* SASLprep (RFC 4013) @password; NULL + error when it has prohibited
 * characters. (transfer full) */
char *magpie_saslprep(const char *password, gsize len, GError **error);

/* SaltedPassword = Hi(password, salt, i); password already SASLprepped.
 * @salted_out has magpie_scram_hash_len(hash) bytes. */
void magpie_scram_salted_password(MagpieScramHash hash, const char *password, const guint8 *salt,
                                  gsize salt_len, guint iterations, guint8 *salted_out);
/* From a SaltedPassword: both keys. */
void magpie_scram_keys(MagpieScramHash hash, const guint8 *salted, guint8 *stored_key_out,
                       guint8 *server_key_out);
/* A new credential with a random 16-byte salt. NULL if SASLprep fails. */
MagpieScramCredential *magpie_scram_credential_new(MagpieScramHash hash, const char *password,
                                                   guint iterations, GError **error);
/* Does @password (not yet SASLprepped) match @cred? Constant-time compare. */
gboolean magpie_scram_credential_check(const MagpieScramCredential *cred, const char *password,
                                       gsize len);
void magpie_scram_credential_free(MagpieScramCredential *cred);
/* RFC 5803 authPassword value: "SCRAM-SHA-256$4096:<salt>$<stored>:<server>". */
char *magpie_scram_credential_to_authpassword(const MagpieScramCredential *cred);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpieScramCredential, magpie_scram_credential_free)

G_END_DECLS
