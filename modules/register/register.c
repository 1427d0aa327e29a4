/* In-Band Registration (XEP-0077): account creation on a stream that has
 * not authenticated yet, password change and account removal for a bound
 * user. Account records are the core's (include/magpie/account.h); this
 * module keeps only a per-address rate limit in memory.
 *
 * Error conditions (XEP-0077 §3.1, §3.2, §3.3):
 *   registration off                      cancel/service-unavailable (§3.1)
 *   missing or empty username / password  modify/not-acceptable (§3.1)
 *   password too short or not UTF-8       modify/not-acceptable
 *   username fails nodeprep               modify/jid-malformed (RFC 6120 §8.3.3.8)
 *   username taken                        cancel/conflict (§3.1)
 *   too many accounts from one address,
 *   or a second one on the same stream    wait/not-acceptable (§3.1.1)
 *   <remove/> before authentication       modify/unexpected-request (§3.2)
 *   <remove/> with other children         modify/bad-request (§3.2)
 *   removal switched off                  cancel/not-allowed (§3.2)
 *   password change switched off          cancel/not-allowed (§3.3)
 *   password change without <password/>   modify/bad-request (§3.3)
 *   another user's username               auth/forbidden
 *
 * Error replies never echo the request: it holds a password (§3.3 says
 * so for password changes; we do it for every case).
 */
#include <stdlib.h>
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>
#include <stringprep.h>

#define NS_REGISTER         "jabber:iq:register"
#define NS_FEATURE_REGISTER "http://jabber.org/features/iq-register"
/* Longest password accepted, in bytes: PBKDF2 runs over it twice. */
#define REGISTER_PASSWORD_MAX 1024

/* Registrations per client address, in memory: lost at restart and when a
 * configuration change reloads the module. Reference-counted so that an
 * operation finishing after a reload updates the old table, not the new. */
typedef struct {
	GHashTable *by_address; /* peer address -> GArray of gint64 (monotonic µs) */
	MagpieModule *mod;      /* NULL once the module unloaded */
} RegisterState;

/* A registration waiting for the database. */
typedef struct {
	MagpieIqRequest *req;
	RegisterState *state; /* holds the reserved rate slot */
	char *peer;
	gint64 stamp;
	char *jid;
} RegisterOp;

static void
register_state_clear(gpointer data)
{
	RegisterState *state = data;

	g_hash_table_unref(state->by_address);
}

static void
register_state_unref(gpointer data)
{
	g_rc_box_release_full(data, register_state_clear);
}

static void
register_op_free(RegisterOp *op)
{
	g_clear_pointer(&op->req, magpie_iq_request_unref);
	g_clear_pointer(&op->state, register_state_unref);
	g_free(op->peer);
	g_free(op->jid);
	g_free(op);
}

/* Drop the time stamps that left the window; TRUE when none is left. */
static gboolean
register_rate_prune(GArray *stamps, gint64 now, gint64 window_us)
{
	guint keep = 0;

	while (keep < stamps->len && now - g_array_index(stamps, gint64, keep) >= window_us)
		keep++;
	if (keep > 0)
		g_array_remove_range(stamps, 0, keep);
	return stamps->len == 0;
}

/* Take one of @peer's @limit slots for the window, or FALSE when all are
 * used. */
static gboolean
register_rate_reserve(RegisterState *state, const char *peer, gint64 now, gint64 window_us,
                      gint64 limit)
{
	GArray *stamps = g_hash_table_lookup(state->by_address, peer);

	if (stamps == NULL) {
		stamps = g_array_new(FALSE, FALSE, sizeof(gint64));
		g_hash_table_insert(state->by_address, g_strdup(peer), stamps);
	}
	register_rate_prune(stamps, now, window_us);
	if ((gint64) stamps->len >= limit)
		return FALSE;
	g_array_append_val(stamps, now);
	return TRUE;
}

/* Give back a slot whose registration failed. */
static void
register_rate_release(RegisterState *state, const char *peer, gint64 stamp)
{
	GArray *stamps = g_hash_table_lookup(state->by_address, peer);

	if (stamps == NULL)
		return;
	for (guint i = 0; i < stamps->len; i++) {
		if (g_array_index(stamps, gint64, i) == stamp) {
			g_array_remove_index(stamps, i);
			break;
		}
	}
	if (stamps->len == 0)
		g_hash_table_remove(state->by_address, peer);
}

static gboolean
register_rate_sweep(gpointer user_data)
{
	MagpieModule *mod = user_data;
	RegisterState *state = magpie_module_get_data(mod);
	gint64 window_us = magpie_module_config_int(mod, "registration-window") * 1000;
	gint64 now = g_get_monotonic_time();
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init(&iter, state->by_address);
	while (g_hash_table_iter_next(&iter, NULL, &value)) {
		if (register_rate_prune(value, now, window_us))
			g_hash_table_iter_remove(&iter);
	}
	return G_SOURCE_CONTINUE;
}

/* An error reply without the request's payload (it holds a password). */
static void
register_reply_error(MagpieIqRequest *req, const char *type, const char *condition,
                     const char *text)
{
	g_autoptr(MagpieStanza) reply = magpie_iq_result_new(req);
	MagpieElement *error;

	magpie_stanza_set_attr(reply, "type", "error");
	error = magpie_element_add_child(magpie_stanza_root(reply), "error", MAGPIE_NS_CLIENT);
	magpie_element_set_attr(error, "type", type);
	magpie_element_add_child(error, condition, MAGPIE_NS_STANZAS);
	if (text != NULL) {
		MagpieElement *t = magpie_element_add_child(error, "text", MAGPIE_NS_STANZAS);

		magpie_element_set_attr(t, "xml:lang", "en");
		magpie_element_add_text(t, text, -1);
	}
	magpie_iq_send_result(req, reply);
}

/* NULL when @password is acceptable, else why not. */
static const char *
register_password_problem(MagpieModule *mod, const char *password)
{
	gint64 min_length = magpie_module_config_int(mod, "min-password-length");

	if (password == NULL || password[0] == '\0')
		return "A password is required";
	if (strlen(password) > REGISTER_PASSWORD_MAX)
		return "The password is too long";
	if (!g_utf8_validate(password, -1, NULL))
		return "The password is not valid UTF-8";
	if ((gint64) g_utf8_strlen(password, -1) < min_length)
		return "The password is too short";
	return NULL;
}

/* Will the core's SASLprep (server/scram.c, same profile and flags) take
 * @password? Checked here so that a password change can be answered
 * before it is made (see register_bound()). */
static gboolean
register_password_saslprep_ok(const char *password)
{
	char *out = NULL;
	int rc = stringprep_profile(password, &out, "SASLprep", STRINGPREP_NO_UNASSIGNED);
	gboolean ok = rc == STRINGPREP_OK && out != NULL && out[0] != '\0';

	if (out != NULL) {
		memset(out, 0, strlen(out));
		free(out);
	}
	return ok;
}

static void
register_mark_stream(RegisterOp *op, gpointer mark)
{
	MagpieSession *session = magpie_iq_request_session(op->req);

	if (session != NULL && op->state->mod != NULL)
		magpie_session_set_data(session, op->state->mod, mark, NULL);
}

static void
register_op_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	RegisterOp *op = user_data;
	g_autoptr(GError) error = NULL;

	if (magpie_account_op_finish(result, &error)) {
		g_message("registered %s from %s", op->jid, op->peer);
		magpie_iq_reply(op->req, NULL);
		register_op_free(op);
		return;
	}
	register_rate_release(op->state, op->peer, op->stamp);
	register_mark_stream(op, NULL);
	if (g_error_matches(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_EXISTS)) {
		register_reply_error(op->req, "cancel", "conflict", "The username is taken");
	} else if (g_error_matches(error, MAGPIE_ACCOUNT_ERROR, MAGPIE_ACCOUNT_ERROR_INVALID)) {
		/* SASLprep refused the password (prohibited characters). */
		g_info("registration of %s: %s", op->jid, error->message);
		register_reply_error(op->req, "modify", "not-acceptable",
		                     "The password has characters that are not allowed");
	} else {
		g_message("registration of %s failed: %s", op->jid, error->message);
		register_reply_error(op->req, "wait", "internal-server-error", NULL);
	}
	register_op_free(op);
}

static void
register_remove_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autofree char *jid = user_data;
	g_autoptr(GError) error = NULL;

	if (magpie_account_op_finish(result, &error))
		g_message("%s removed their account", jid);
	else
		g_message("removal of %s failed: %s", jid, error->message);
}

static void
register_passwd_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autofree char *jid = user_data;
	g_autoptr(GError) error = NULL;

	if (magpie_account_op_finish(result, &error))
		g_info("%s changed their password", jid);
	else
		g_message("password change of %s failed after it was acknowledged: %s", jid,
		          error->message);
}

/* Unauthenticated stream: the registration form, or a new account. */
static void
register_preauth(MagpieModule *mod, MagpieIqRequest *req, MagpieSession *session)
{
	MagpieElement *query = magpie_iq_request_payload(req);
	g_autofree char *username = NULL;
	g_autofree char *password = NULL;
	g_autofree char *node = NULL;
	g_autoptr(GError) error = NULL;
	const char *problem;
	const char *peer;
	RegisterState *state;
	RegisterOp *op;
	gint64 now;

	/* XEP-0077 §3.1: a host without in-band registration answers
	 * service-unavailable, to the form request and to a submission. */
	if (!magpie_module_config_bool(mod, "allow-registration")) {
		register_reply_error(req, "cancel", "service-unavailable", NULL);
		return;
	}
	if (magpie_iq_request_type(req) == MAGPIE_IQ_GET) {
		g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
		MagpieElement *form =
		        magpie_element_add_child(magpie_stanza_root(result), "query", NS_REGISTER);
		MagpieElement *instructions = magpie_element_add_child(form, "instructions", NULL);

		magpie_element_add_text(instructions,
		                        magpie_module_config_string(mod, "instructions"), -1);
		magpie_element_add_child(form, "username", NULL);
		magpie_element_add_child(form, "password", NULL);
		magpie_iq_send_result(req, result);
		return;
	}
	/* §3.2: nobody to remove before authentication. */
	if (magpie_element_find_child(query, "remove", NS_REGISTER) != NULL) {
		register_reply_error(req, "modify", "unexpected-request",
		                     "Authenticate before removing an account");
		return;
	}
	/* §3.1.1: one account per stream; the client authenticates next. */
	if (magpie_session_get_data(session, mod) != NULL) {
		register_reply_error(req, "wait", "not-acceptable",
		                     "An account was already registered on this stream");
		return;
	}

	username = magpie_element_get_child_text(query, "username", NS_REGISTER);
	password = magpie_element_get_child_text(query, "password", NS_REGISTER);
	if (username == NULL || username[0] == '\0') {
		register_reply_error(req, "modify", "not-acceptable", "A username is required");
		return;
	}
	problem = register_password_problem(mod, password);
	if (problem != NULL) {
		register_reply_error(req, "modify", "not-acceptable", problem);
		return;
	}
	node = magpie_jid_nodeprep(username, &error);
	if (node == NULL) {
		register_reply_error(req, "modify", "jid-malformed", "The username is not valid");
		return;
	}

	state = magpie_module_get_data(mod);
	peer = magpie_session_peer(session);
	if (peer == NULL)
		peer = "unknown";
	now = g_get_monotonic_time();
	if (!register_rate_reserve(state, peer, now,
	                           magpie_module_config_int(mod, "registration-window") * 1000,
	                           magpie_module_config_int(mod, "registration-rate"))) {
		g_info("registration from %s refused: rate limit", peer);
		register_reply_error(req, "wait", "not-acceptable",
		                     "Too many registrations from your address; try again later");
		return;
	}

	op = g_new0(RegisterOp, 1);
	op->req = magpie_iq_request_ref(req);
	op->state = g_rc_box_acquire(state);
	op->peer = g_strdup(peer);
	op->stamp = now;
	op->jid = g_strdup_printf("%s@%s", node, magpie_session_host(session));
	/* Marked now, so a second request pipelined on the stream is refused
	 * too; cleared again if this one fails. */
	magpie_session_set_data(session, mod, GINT_TO_POINTER(1), NULL);
	magpie_account_op_async(MAGPIE_ACCOUNT_ADD, op->jid, password, register_op_done, op);
	if (password != NULL)
		memset(password, 0, strlen(password));
}

/* Does @username (a node, or the bare JID) name @from's account? */
static gboolean
register_is_own_username(const char *username, MagpieJid *from)
{
	g_autofree char *node = NULL;
	const char *at = strchr(username, '@');

	if (at != NULL) {
		g_autoptr(MagpieJid) jid = magpie_jid_parse(username, NULL);

		return jid != NULL && magpie_jid_is_bare(jid) && magpie_jid_bare_equal(jid, from);
	}
	node = magpie_jid_nodeprep(username, NULL);
	return node != NULL && g_strcmp0(node, magpie_jid_node(from)) == 0;
}

/* A bound user: registration info, password change, account removal. */
static void
register_bound(MagpieModule *mod, MagpieIqRequest *req, MagpieJid *from)
{
	MagpieElement *query = magpie_iq_request_payload(req);
	MagpieJid *to = magpie_iq_request_to(req);
	g_autofree char *username = NULL;
	g_autofree char *password = NULL;
	const char *problem;
	char *jid;

	/* The user's own account: addressed to it or to its host. A query to
	 * another account is not the server's to answer (RFC 6121 §8.5.1). */
	if (to == NULL || magpie_jid_resource(to) != NULL ||
	    (magpie_jid_node(to) != NULL && !magpie_jid_bare_equal(to, from)) ||
	    g_ascii_strcasecmp(magpie_jid_domain(to), magpie_jid_domain(from)) != 0) {
		register_reply_error(req, "cancel", "service-unavailable", NULL);
		return;
	}

	if (magpie_iq_request_type(req) == MAGPIE_IQ_GET) {
		g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
		MagpieElement *info =
		        magpie_element_add_child(magpie_stanza_root(result), "query", NS_REGISTER);

		/* §3.1: registered, with what is on file (no password). */
		magpie_element_add_child(info, "registered", NULL);
		magpie_element_add_text(magpie_element_add_child(info, "username", NULL),
		                        magpie_jid_node(from), -1);
		magpie_iq_send_result(req, result);
		return;
	}

	if (magpie_element_find_child(query, "remove", NS_REGISTER) != NULL) {
		if (magpie_element_count_children(query) != 1) {
			register_reply_error(req, "modify", "bad-request",
			                     "<remove/> must be the only child");
			return;
		}
		if (!magpie_module_config_bool(mod, "allow-remove")) {
			register_reply_error(req, "cancel", "not-allowed",
			                     "Accounts cannot be removed in-band here");
			return;
		}
		/* §3.2: the result first; deleting the account then closes its
		 * sessions with <not-authorized/> (the core's NOTIFY). */
		magpie_iq_reply(req, NULL);
		jid = g_strdup(magpie_jid_bare_string(from)); /* freed by the callback */
		magpie_account_op_async(MAGPIE_ACCOUNT_DELETE, jid, NULL, register_remove_done,
		                        jid);
		return;
	}

	username = magpie_element_get_child_text(query, "username", NS_REGISTER);
	password = magpie_element_get_child_text(query, "password", NS_REGISTER);
	if (username == NULL && password == NULL) {
		register_reply_error(req, "modify", "bad-request",
		                     "Expected <username/> and <password/>, or <remove/>");
		return;
	}
	if (!magpie_module_config_bool(mod, "allow-password-change")) {
		register_reply_error(req, "cancel", "not-allowed",
		                     "Passwords cannot be changed in-band here");
		return;
	}
	if (username != NULL && !register_is_own_username(username, from)) {
		register_reply_error(req, "auth", "forbidden", "Not your account");
		return;
	}
	if (password == NULL) {
		register_reply_error(req, "modify", "bad-request", "A <password/> is required");
		return;
	}
	/* §3.3: an empty password never replaces the existing one. */
	problem = register_password_problem(mod, password);
	if (problem != NULL) {
		memset(password, 0, strlen(password));
		register_reply_error(req, "modify", "not-acceptable", problem);
		return;
	}

	if (!register_password_saslprep_ok(password)) {
		memset(password, 0, strlen(password));
		register_reply_error(req, "modify", "not-acceptable",
		                     "The password has characters that are not allowed");
		return;
	}

	/* The result goes first, as for a removal: once the new password is
	 * stored, the core closes every session of the account with <reset/>
	 * (NOTIFY password), and that notification may overtake the
	 * database's answer to us, leaving the client without a reply. Every
	 * check that can fail on the request has been made; what is left is
	 * a database failure, which is logged. */
	magpie_iq_reply(req, NULL);
	jid = g_strdup(magpie_jid_bare_string(from)); /* freed by the callback */
	magpie_account_op_async(MAGPIE_ACCOUNT_PASSWD, jid, password, register_passwd_done, jid);
	memset(password, 0, strlen(password));
}

static void
register_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	MagpieSession *session = magpie_iq_request_session(req);
	MagpieJid *from = magpie_iq_request_from(req);

	if (from == NULL) {
		/* A stream that has not authenticated (the core dispatches
		 * those only to preauth handlers). */
		if (session == NULL || magpie_session_is_authenticated(session)) {
			register_reply_error(req, "cancel", "service-unavailable", NULL);
			return;
		}
		register_preauth(mod, req, session);
		return;
	}
	/* Only local accounts, from their own sessions (not a remote entity
	 * or a module speaking for someone). */
	if (session == NULL || magpie_jid_node(from) == NULL ||
	    !magpie_config_is_local_host(magpie_jid_domain(from))) {
		register_reply_error(req, "cancel", "service-unavailable", NULL);
		return;
	}
	register_bound(mod, req, from);
}

static MagpieHookResult
register_stream_features(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);
	MagpieStanza *features = magpie_event_stanza(ev);

	if (session != NULL && features != NULL && !magpie_session_is_authenticated(session) &&
	    magpie_module_config_bool(mod, "allow-registration"))
		magpie_element_add_child(magpie_stanza_root(features), "register",
		                         NS_FEATURE_REGISTER);
	return MAGPIE_HOOK_CONTINUE;
}

static gboolean
register_load(MagpieModule *mod, GError **error)
{
	RegisterState *state = g_rc_box_new0(RegisterState);

	state->by_address = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                          (GDestroyNotify) g_array_unref);
	state->mod = mod;
	magpie_module_set_data(mod, state, register_state_unref);
	magpie_module_add_timeout(mod, 60 * 1000, register_rate_sweep, mod, NULL);
	return TRUE;
}

static void
register_unload(MagpieModule *mod)
{
	RegisterState *state = magpie_module_get_data(mod);

	if (state != NULL)
		state->mod = NULL;
}

static const MagpieHookSpec register_hooks[] = {
	{ MAGPIE_EVENT_STREAM_FEATURES, register_stream_features, MAGPIE_PRIORITY_DEFAULT },
	{ NULL },
};

static const MagpieIqSpec register_iqs[] = {
	/* Not host_only: a bound client may address its own bare JID (or
	 * nothing, which is the same) as well as the host. */
	{ NS_REGISTER, "query", MAGPIE_IQ_GET | MAGPIE_IQ_SET, register_handle, .host_only = FALSE,
	  .preauth = TRUE },
	{ NULL },
};

static const MagpieConfigKey register_config[] = {
	{ "allow-registration", MAGPIE_CONFIG_BOOL, "false", 0, 0,
	  "Let unauthenticated clients create accounts (XEP-0077)" },
	{ "registration-rate", MAGPIE_CONFIG_INT, "3", 1, 1000000,
	  "Accounts one client address may create per registration-window" },
	{ "registration-window", MAGPIE_CONFIG_DURATION, "1h", 1000, 30LL * 24 * 3600 * 1000,
	  "Window over which registration-rate is counted" },
	{ "allow-password-change", MAGPIE_CONFIG_BOOL, "true", 0, 0,
	  "Let users change their password in-band" },
	{ "allow-remove", MAGPIE_CONFIG_BOOL, "true", 0, 0,
	  "Let users remove their account in-band" },
	{ "min-password-length", MAGPIE_CONFIG_INT, "8", 1, REGISTER_PASSWORD_MAX,
	  "Shortest password accepted, in characters (registration and change)" },
	{ "instructions", MAGPIE_CONFIG_STRING,
	  "Choose a username and password to register with this server.", 0, 0,
	  "Text of <instructions/> in the registration form" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_register = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "register",
	.description = "In-Band Registration (XEP-0077)",
	.hooks = register_hooks,
	.iqs = register_iqs,
	.config = register_config,
	.disco_features = (const char *const[]){ NS_REGISTER, NULL },
	.load = register_load,
	.unload = register_unload,
};
