/* Client-to-server streams (RFC 6120 §4-§7): stream headers, STARTTLS,
 * SASL, resource binding, then stanzas handed to the router.
 *
 * Reading: the connection hands us bytes; we feed the parser and return
 * how many it consumed. Whenever the stream must not read on (STARTTLS,
 * SASL in progress, a hook pending on one of our stanzas), the stanza
 * callback pauses the parser right after the stanza, the connection keeps
 * the rest, and magpie_conn_set_reading() delivers it again later. One
 * mechanism for STARTTLS injection, stream restarts and per-stream order.
 */
#include <malloc.h>
#include <string.h>
#include <gnutls/crypto.h>

#include "c2s.h"
#include "listener.h"
#include "module-host.h"
#include "router-private.h"
#include "server.h"
#include "session-private.h"
#include "stanza-private.h"
#include "stats.h"
#include "tls.h"

#define NS_TLS     "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL    "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND    "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"

/* RFC 6120 §6.4.5: allow a few retries on one stream, then close. */
#define MAX_SASL_FAILURES 5

/* Streams silent this long give back their parser context; with the
 * sweep every 2 s (GLib rounds it to whole seconds) that is 5 to 8 s
 * after the last byte. Rebuilding one costs a few microseconds, keeping
 * it about 10 KiB. */
#define PARSER_RELEASE_US (5 * G_USEC_PER_SEC)
/* Trim the heap after a sweep period that freed this many parser contexts
 * or sessions (a login burst going idle, a mass disconnect; at most every
 * TRIM_INTERVAL_US while it lasts), or once a trickle adds up to as many;
 * malloc_trim() walks every free chunk, about 15 ms on a fragmented heap
 * of 19k sessions. */
#define TRIM_MIN_RELEASED 64
#define TRIM_INTERVAL_US  (5 * G_USEC_PER_SEC)

static GSource *sweep_source;
static guint untrimmed;      /* contexts and sessions freed since the last trim */
static guint sessions_freed; /* since the last sweep */
static gint64 last_trim;     /* monotonic */
/* [c2s] max-output-queue, read per stanza delivered: cached, refreshed by
 * the sweep (a reload takes effect within its period). */
static gsize max_output_queue = 1024 * 1024;

static void c2s_stream_error(MagpieSession *session, const char *condition, const char *text);

MagpieSession *
magpie_session_ref(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, NULL);
	g_atomic_int_inc(&session->refcount);
	return session;
}

void
magpie_session_unref(MagpieSession *session)
{
	if (!session || !g_atomic_int_dec_and_test(&session->refcount))
		return;
	g_clear_pointer(&session->conn, magpie_conn_free);
	g_clear_pointer(&session->xs, magpie_xml_stream_free);
	g_clear_pointer(&session->sasl, magpie_sasl_free);
	g_clear_pointer(&session->jid, magpie_jid_unref);
	g_clear_pointer(&session->bare, magpie_jid_unref);
	g_clear_pointer(&session->presence, magpie_stanza_unref);
	g_free(session->peer);
	g_free(session->host);
	g_free(session->stream_id);
	g_free(session->username);
	g_free(session->mechanism);
	g_free(session);
	sessions_freed++;
}

static void
write_str(MagpieSession *session, const char *s)
{
	gsize len = strlen(s);

	magpie_conn_write(session->conn, s, len);
	magpie_stats.bytes_out += len;
}

/* Writing a stanza: serialized once (cached on the stanza), the same bytes
 * go to every session it is delivered to. A stanza routed to many
 * addresses in turn (magpie_route_each) differs from its previous bytes
 * only by 'to': those pieces are copied out as they are. */
void
magpie_session_send(MagpieSession *session, MagpieStanza *stanza)
{
	g_return_if_fail(session != NULL && stanza != NULL);

	if (session->state == C2S_STATE_CLOSED || !session->conn)
		return;
	if (magpie_conn_output_queued(session->conn) > max_output_queue) {
		g_message("c2s %s: the client does not read; output queue over limit",
		          session->jid ? magpie_jid_string(session->jid) : session->peer);
		c2s_stream_error(session, "policy-violation", "Output queue over limit");
		return;
	}
	struct iovec parts[3];
	gsize size;

	if (magpie_stanza_splice_parts_internal(stanza, parts)) {
		magpie_conn_writev(session->conn, parts, G_N_ELEMENTS(parts));
		size = parts[0].iov_len + parts[1].iov_len + parts[2].iov_len;
	} else {
		GBytes *bytes = magpie_stanza_to_bytes(stanza);

		magpie_conn_write_bytes(session->conn, bytes);
		size = g_bytes_get_size(bytes);
	}
	magpie_stats.stanzas_out++;
	magpie_stats.bytes_out += size;
}

static char *
new_stream_id(void)
{
	guint8 raw[12];

	gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof raw);
	return g_base64_encode(raw, sizeof raw);
}

static void
send_header(MagpieSession *session, const char *to)
{
	g_autofree char *from =
	        g_markup_escape_text(session->host ? session->host : magpie_default_host(), -1);
	g_autofree char *to_attr = NULL;

	if (to) {
		g_autofree char *esc = g_markup_escape_text(to, -1);
		to_attr = g_strdup_printf(" to='%s'", esc);
	}
	g_free(session->stream_id);
	session->stream_id = new_stream_id();
	g_autofree char *header = g_strdup_printf(
	        "<?xml version='1.0'?><stream:stream xmlns='" MAGPIE_NS_CLIENT
	        "' xmlns:stream='" MAGPIE_NS_STREAM "' id='%s' from='%s'%s version='1.0'"
	        " xml:lang='en'>",
	        session->stream_id, from, to_attr ? to_attr : "");
	write_str(session, header);
	session->header_sent = TRUE;
}

/* The session leaves the router: presence, session.end, registry. */
static void
session_end(MagpieSession *session)
{
	if (session->ended)
		return;
	session->ended = TRUE;
	if (session->jid)
		magpie_router_session_ended(session);
	magpie_session_unregister(session);
	magpie_session_free_slots(session);
	/* session->sasl may have an operation in flight: freed with the
	 * session, whose last reference that operation holds. */
}

/* RFC 6120 §4.9: the error, then the closing tag, then close. */
static void
c2s_stream_error(MagpieSession *session, const char *condition, const char *text)
{
	if (session->state == C2S_STATE_CLOSED)
		return;
	if (!session->header_sent)
		send_header(session, NULL);
	g_autoptr(GString) out = g_string_new("<stream:error><");
	g_string_append_printf(out, "%s xmlns='" MAGPIE_NS_STREAMS "'/>", condition);
	if (text) {
		g_autofree char *esc = g_markup_escape_text(text, -1);
		g_string_append_printf(out, "<text xmlns='" MAGPIE_NS_STREAMS "'>%s</text>", esc);
	}
	g_string_append(out, "</stream:error></stream:stream>");
	write_str(session, out->str);
	g_info("c2s %s (%s): stream error <%s/>%s%s", session->peer,
	       session->jid ? magpie_jid_string(session->jid) : "unbound", condition,
	       text ? ": " : "", text ? text : "");
	session->state = C2S_STATE_CLOSED;
	session_end(session);
	magpie_conn_close(session->conn, 2000);
}

void
magpie_session_close(MagpieSession *session, const char *condition, const char *text)
{
	g_return_if_fail(session != NULL && condition != NULL);
	c2s_stream_error(session, condition, text);
}

void
magpie_session_hold(MagpieSession *session)
{
	session->hold_count++;
}

static gboolean
resume_reading(gpointer data)
{
	MagpieSession *session = data;

	if (session->state != C2S_STATE_CLOSED && session->hold_count == 0 && session->conn)
		magpie_conn_set_reading(session->conn, TRUE);
	return G_SOURCE_REMOVE;
}

void
magpie_session_release(MagpieSession *session)
{
	g_return_if_fail(session->hold_count > 0);
	if (--session->hold_count == 0)
		g_idle_add_full(G_PRIORITY_DEFAULT, resume_reading, magpie_session_ref(session),
		                (GDestroyNotify) magpie_session_unref);
}

/* Features (RFC 6120 §4.3.2), by how far the stream has come. */
static void
send_features(MagpieSession *session)
{
	g_autoptr(GString) out = g_string_new("<stream:features>");

	if (!magpie_conn_is_tls(session->conn)) {
		g_string_append(out, "<starttls xmlns='" NS_TLS "'><required/></starttls>");
		session->state = C2S_STATE_STARTTLS;
	} else if (!session->username) {
		g_autoptr(GError) error = NULL;
		g_clear_pointer(&session->sasl, magpie_sasl_free);
		session->sasl = magpie_sasl_new(session->host, session->conn, &error);
		if (!session->sasl) {
			g_message("c2s %s: SASL unavailable: %s", session->peer, error->message);
			c2s_stream_error(session, "internal-server-error", NULL);
			return;
		}
		g_auto(GStrv) mechs = magpie_sasl_mechanisms(session->sasl);
		g_auto(GStrv) cbs = magpie_sasl_channel_binding_types(session->sasl);
		g_string_append(out, "<mechanisms xmlns='" NS_SASL "'>");
		for (guint i = 0; mechs && mechs[i]; i++)
			g_string_append_printf(out, "<mechanism>%s</mechanism>", mechs[i]);
		g_string_append(out, "</mechanisms>");
		if (cbs && cbs[0]) {
			/* XEP-0440 */
			g_string_append(out, "<sasl-channel-binding xmlns='" NS_SASL_CB "'>");
			for (guint i = 0; cbs[i]; i++)
				g_string_append_printf(out, "<channel-binding type='%s'/>", cbs[i]);
			g_string_append(out, "</sasl-channel-binding>");
		}
		session->state = C2S_STATE_AUTH;
	} else {
		g_string_append(out, "<bind xmlns='" NS_BIND "'/>"
		                     "<session xmlns='" NS_SESSION "'><optional/></session>");
		session->state = C2S_STATE_BIND;
	}
	if (magpie_conn_is_tls(session->conn) &&
	    magpie_hook_has_handlers(MAGPIE_EVENT_STREAM_FEATURES)) {
		/* Modules' features (e.g. XEP-0077 registration). */
		g_autoptr(MagpieStanza) features = magpie_stanza_new("features", MAGPIE_NS_STREAM);
		g_autoptr(MagpieJid) host = magpie_jid_new(NULL, session->host, NULL, NULL);
		magpie_hook_fire(MAGPIE_EVENT_STREAM_FEATURES, features, session, NULL, host);
		for (MagpieElement *el = magpie_element_first_child(magpie_stanza_root(features));
		     el; el = magpie_element_next_sibling(el))
			magpie_element_serialize(el, MAGPIE_NS_STREAM, out);
	}
	g_string_append(out, "</stream:features>");
	write_str(session, out->str);
}

static void
on_stream_start(gpointer user_data, MagpieStanza *header, const char *default_ns)
{
	MagpieSession *session = user_data;
	const char *to = magpie_stanza_get_attr(header, "to");
	const char *version = magpie_stanza_get_attr(header, "version");
	const char *from = magpie_stanza_get_attr(header, "from");
	g_autofree char *host = NULL;

	/* Answer with our header first so that any error is inside a stream. */
	if (to && *to) {
		g_autoptr(GError) error = NULL;
		host = magpie_jid_nameprep(to, &error);
	} else {
		host = g_strdup(session->host ? session->host : magpie_default_host());
	}
	if (host && magpie_config_is_local_host(host) &&
	    (!session->host || g_str_equal(session->host, host))) {
		g_free(session->host);
		session->host = g_steal_pointer(&host);
	}
	g_autoptr(MagpieJid) from_jid = from ? magpie_jid_parse(from, NULL) : NULL;
	send_header(session, from_jid ? magpie_jid_string(from_jid) : NULL);

	if (g_strcmp0(default_ns, MAGPIE_NS_CLIENT) != 0) {
		c2s_stream_error(session, "invalid-namespace", "This port serves jabber:client");
		return;
	}
	if (host) {
		/* Still set: not a host of ours, or a different one after a restart. */
		c2s_stream_error(session, "host-unknown", NULL);
		return;
	}
	if (!version || strtod(version, NULL) < 1.0) {
		c2s_stream_error(session, "unsupported-version", "XMPP 1.0 is required");
		return;
	}
	send_features(session);
}

static void
c2s_starttls(MagpieSession *session)
{
	MagpieTls *tls = magpie_tls_get_default();

	if (!tls) {
		write_str(session, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		session->state = C2S_STATE_CLOSED;
		session_end(session);
		magpie_conn_close(session->conn, 1000);
		return;
	}
	write_str(session, "<proceed xmlns='" NS_TLS "'/>");
	session->state = C2S_STATE_TLS;
	session->inject_check = TRUE;
	session->restart = TRUE;
	magpie_conn_start_tls(session->conn, tls);
}

static void
sasl_failure(MagpieSession *session, const char *condition, const char *text)
{
	g_autoptr(GString) out = g_string_new("<failure xmlns='" NS_SASL "'><");
	g_string_append_printf(out, "%s/>", condition);
	if (text) {
		g_autofree char *esc = g_markup_escape_text(text, -1);
		g_string_append_printf(out, "<text>%s</text>", esc);
	}
	g_string_append(out, "</failure>");
	write_str(session, out->str);
}

static void
sasl_step_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	MagpieSession *session = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) output = NULL;
	MagpieSaslStatus status;

	if (session->state == C2S_STATE_CLOSED || !session->sasl) {
		magpie_session_release(session);
		magpie_session_unref(session);
		return;
	}
	if (!magpie_sasl_step_finish(session->sasl, result, &status, &output, &error)) {
		const char *condition = "not-authorized";
		if (error->domain == MAGPIE_SASL_ERROR)
			condition = magpie_sasl_condition(error->code);
		magpie_stats.auth_failures++;
		g_info("c2s %s: authentication failed: %s", session->peer, error->message);
		sasl_failure(session, condition,
		             g_str_equal(condition, "temporary-auth-failure") ? "Try again later"
		                                                              : NULL);
		g_clear_pointer(&session->sasl, magpie_sasl_free);
		session->state = C2S_STATE_AUTH;
		if (++session->sasl_failures >= MAX_SASL_FAILURES)
			c2s_stream_error(session, "policy-violation",
			                 "Too many authentication failures");
	} else {
		gsize len = 0;
		const guint8 *data = output ? g_bytes_get_data(output, &len) : NULL;
		g_autofree char *b64 = len ? g_base64_encode(data, len) : NULL;
		const char *element = status == MAGPIE_SASL_SUCCESS ? "success" : "challenge";
		g_autofree char *xml = b64 ? g_strdup_printf("<%s xmlns='" NS_SASL "'>%s</%s>",
		                                             element, b64, element)
		                           : g_strdup_printf("<%s xmlns='" NS_SASL "'/>", element);
		write_str(session, xml);
		if (status == MAGPIE_SASL_SUCCESS) {
			session->username = g_strdup(magpie_sasl_username(session->sasl));
			session->mechanism = g_strdup(magpie_sasl_mechanism_used(session->sasl));
			g_info("c2s %s: authenticated as %s@%s with %s", session->peer,
			       session->username, session->host, session->mechanism);
			g_clear_pointer(&session->sasl, magpie_sasl_free);
			session->state = C2S_STATE_HEADER;
			session->restart = TRUE; /* RFC 6120 §6.4.6 */
		} else {
			session->state = C2S_STATE_SASL;
		}
	}
	magpie_session_release(session);
	magpie_session_unref(session);
}

/* Element text as SASL data: absent = no initial response, "=" = empty. */
static gboolean
decode_sasl_data(MagpieElement *el, GBytes **data_out)
{
	g_autofree char *text = magpie_element_get_text(el);

	g_strstrip(text);
	*data_out = NULL;
	if (!*text)
		return TRUE;
	if (g_str_equal(text, "=")) {
		*data_out = g_bytes_new(NULL, 0);
		return TRUE;
	}
	for (const char *p = text; *p; p++) {
		if (!g_ascii_isalnum(*p) && *p != '+' && *p != '/' && *p != '=')
			return FALSE;
	}
	if (strlen(text) % 4 != 0)
		return FALSE;
	gsize len;
	guchar *raw = g_base64_decode(text, &len);
	*data_out = g_bytes_new_take(raw, len);
	return TRUE;
}

static void
c2s_sasl(MagpieSession *session, MagpieStanza *stanza)
{
	const char *name = magpie_stanza_name(stanza);
	MagpieElement *root = magpie_stanza_root(stanza);
	g_autoptr(GBytes) data = NULL;

	if (g_str_equal(name, "abort")) {
		g_clear_pointer(&session->sasl, magpie_sasl_free);
		sasl_failure(session, "aborted", NULL);
		session->state = C2S_STATE_AUTH;
		return;
	}
	if (!decode_sasl_data(root, &data)) {
		sasl_failure(session, "incorrect-encoding", NULL);
		g_clear_pointer(&session->sasl, magpie_sasl_free);
		session->state = C2S_STATE_AUTH;
		return;
	}
	if (g_str_equal(name, "auth") && session->state == C2S_STATE_AUTH) {
		const char *mech = magpie_element_get_attr(root, "mechanism");
		if (!mech) {
			sasl_failure(session, "invalid-mechanism", NULL);
			return;
		}
		if (!session->sasl) {
			g_autoptr(GError) error = NULL;
			session->sasl = magpie_sasl_new(session->host, session->conn, &error);
			if (!session->sasl) {
				g_message("c2s %s: SASL unavailable: %s", session->peer,
				          error->message);
				sasl_failure(session, "temporary-auth-failure", NULL);
				return;
			}
		}
		session->state = C2S_STATE_SASL;
		magpie_session_hold(session);
		magpie_sasl_start_async(session->sasl, mech, data, NULL, sasl_step_done,
		                        magpie_session_ref(session));
	} else if (g_str_equal(name, "response") && session->state == C2S_STATE_SASL &&
	           session->sasl) {
		magpie_session_hold(session);
		magpie_sasl_step_async(session->sasl, data, NULL, sasl_step_done,
		                       magpie_session_ref(session));
	} else {
		sasl_failure(session, "malformed-request", NULL);
	}
}

static MagpieStanza *
iq_result_for(MagpieStanza *iq)
{
	MagpieStanza *result = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);

	magpie_stanza_set_attr(result, "type", "result");
	magpie_stanza_set_attr(result, "id", magpie_stanza_get_attr(iq, "id"));
	return result;
}

static void
send_iq_error(MagpieSession *session, MagpieStanza *iq, const char *type, const char *condition)
{
	g_autoptr(MagpieStanza) error = magpie_stanza_error_new(iq, type, condition, NULL);

	if (error) {
		/* Answered by the server for the account: no 'from' needed. */
		magpie_stanza_set_attr(error, "from", NULL);
		magpie_session_send(session, error);
	}
}

static char *
random_resource(void)
{
	guint8 raw[6];

	gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof raw);
	return g_strdup_printf("magpie-%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3],
	                       raw[4], raw[5]);
}

/* RFC 6120 §7: bind a resource; the new session wins a conflict. */
static void
c2s_bind(MagpieSession *session, MagpieStanza *iq, MagpieElement *bind)
{
	g_autofree char *wanted = magpie_element_get_child_text(bind, "resource", NS_BIND);
	g_autofree char *resource = NULL;
	g_autoptr(GError) error = NULL;

	if (wanted)
		g_strstrip(wanted);
	if (wanted && *wanted) {
		resource = magpie_jid_resourceprep(wanted, &error);
		if (!resource) {
			send_iq_error(session, iq, "modify", "bad-request");
			return;
		}
	} else {
		resource = random_resource();
	}
	g_autoptr(MagpieJid) full =
	        magpie_jid_new(session->username, session->host, resource, &error);
	if (!full) {
		send_iq_error(session, iq, "modify", "bad-request");
		return;
	}
	g_autoptr(MagpieSession) old = magpie_session_bind(session, full);
	if (old) {
		g_info("c2s: %s logged in again; closing the older session",
		       magpie_jid_string(full));
		magpie_session_close(old, "conflict", "Replaced by a new connection");
	}
	session->state = C2S_STATE_BOUND;

	g_autoptr(MagpieStanza) result = iq_result_for(iq);
	MagpieElement *b = magpie_element_add_child(magpie_stanza_root(result), "bind", NS_BIND);
	MagpieElement *j = magpie_element_add_child(b, "jid", NULL);
	magpie_element_add_text(j, magpie_jid_string(full), -1);
	magpie_session_send(session, result);
	g_info("c2s %s: bound %s", session->peer, magpie_jid_string(full));
	magpie_hook_fire(MAGPIE_EVENT_SESSION_BOUND, NULL, session, session->jid, NULL);
}

/* Is @stanza an iq set/get whose only child is @name in @ns? */
static MagpieElement *
iq_payload(MagpieStanza *stanza, const char *name, const char *ns)
{
	if (!g_str_equal(magpie_stanza_name(stanza), "iq"))
		return NULL;
	MagpieElement *child = magpie_element_first_child(magpie_stanza_root(stanza));
	if (!child || !g_str_equal(magpie_element_name(child), name) ||
	    g_strcmp0(magpie_element_ns(child), ns) != 0)
		return NULL;
	return child;
}

static gboolean
valid_iq(MagpieStanza *stanza)
{
	const char *type = magpie_stanza_get_attr(stanza, "type");

	if (!magpie_stanza_get_attr(stanza, "id") || !type)
		return FALSE;
	if (g_str_equal(type, "get") || g_str_equal(type, "set"))
		return magpie_element_count_children(magpie_stanza_root(stanza)) == 1;
	return g_str_equal(type, "result") || g_str_equal(type, "error");
}

static void
c2s_stanza_bound(MagpieSession *session, MagpieStanza *stanza)
{
	const char *name = magpie_stanza_name(stanza);
	const char *from = magpie_stanza_get_attr(stanza, "from");
	const char *to = magpie_stanza_get_attr(stanza, "to");
	g_autoptr(MagpieJid) to_jid = NULL;

	if (from) {
		/* RFC 6120 §8.1.2.1: the server stamps or checks 'from'. */
		g_autoptr(MagpieJid) claimed = magpie_jid_parse(from, NULL);
		if (!claimed || (!magpie_jid_equal(claimed, session->jid) &&
		                 !magpie_jid_equal(claimed, session->bare))) {
			c2s_stream_error(session, "invalid-from", NULL);
			return;
		}
	}
	magpie_stanza_set_attr(stanza, "from", magpie_jid_string(session->jid));

	if (g_str_equal(name, "iq") && !valid_iq(stanza)) {
		send_iq_error(session, stanza, "modify", "bad-request");
		return;
	}
	if (to) {
		to_jid = magpie_jid_parse(to, NULL);
		if (!to_jid) {
			g_autoptr(MagpieStanza) error =
			        magpie_stanza_error_new(stanza, "modify", "jid-malformed", NULL);
			if (error) {
				magpie_stanza_set_attr(error, "from", NULL);
				magpie_session_send(session, error);
			}
			return;
		}
		magpie_stanza_set_attr(stanza, "to", magpie_jid_string(to_jid));
	}
	if (g_str_equal(name, "iq") && !to_jid) {
		/* Legacy RFC 3921 session establishment: a no-op. */
		if (iq_payload(stanza, "session", NS_SESSION)) {
			g_autoptr(MagpieStanza) result = iq_result_for(stanza);
			magpie_session_send(session, result);
			return;
		}
		if (iq_payload(stanza, "bind", NS_BIND)) {
			send_iq_error(session, stanza, "cancel", "not-allowed");
			return;
		}
	}
	if (g_str_equal(name, "presence") && !to_jid)
		magpie_router_self_presence(session, stanza);
	else
		magpie_router_from_session(stanza, session, to_jid);
}

static void
on_stanza(gpointer user_data, MagpieStanza *stanza)
{
	MagpieSession *session = user_data;
	const char *name = magpie_stanza_name(stanza);
	const char *ns = magpie_element_ns(magpie_stanza_root(stanza));

	magpie_stats.stanzas_in++;
	switch (session->state) {
	case C2S_STATE_STARTTLS:
		if (g_str_equal(name, "starttls") && g_strcmp0(ns, NS_TLS) == 0) {
			c2s_starttls(session);
		} else if (g_strcmp0(ns, NS_SASL) == 0) {
			/* No mechanisms are offered before TLS (DESIGN §9). */
			sasl_failure(session, "encryption-required", NULL);
		} else {
			c2s_stream_error(session, "policy-violation", "STARTTLS is required");
		}
		break;
	case C2S_STATE_AUTH:
	case C2S_STATE_SASL:
		if (g_strcmp0(ns, NS_SASL) == 0) {
			c2s_sasl(session, stanza);
		} else if (session->state == C2S_STATE_AUTH && g_str_equal(name, "iq") &&
		           g_strcmp0(ns, MAGPIE_NS_CLIENT) == 0 && valid_iq(stanza)) {
			/* Only IQ handlers marked preauth answer here (XEP-0077);
			 * the rest get service-unavailable. */
			g_autoptr(MagpieJid) host = magpie_jid_new(NULL, session->host, NULL, NULL);
			magpie_stanza_set_attr(stanza, "from", NULL);
			magpie_iq_dispatch(stanza, session, NULL, host, TRUE);
		} else {
			c2s_stream_error(session, "not-authorized", NULL);
		}
		break;
	case C2S_STATE_BIND: {
		MagpieElement *bind = iq_payload(stanza, "bind", NS_BIND);
		const char *type = magpie_stanza_get_attr(stanza, "type");
		if (bind && g_strcmp0(type, "set") == 0 && magpie_stanza_get_attr(stanza, "id"))
			c2s_bind(session, stanza, bind);
		else if (g_str_equal(name, "iq") && valid_iq(stanza))
			send_iq_error(session, stanza, "auth", "not-authorized");
		else
			c2s_stream_error(session, "not-authorized", "Bind a resource first");
		break;
	}
	case C2S_STATE_BOUND:
		if (g_strcmp0(ns, MAGPIE_NS_CLIENT) != 0 ||
		    (!g_str_equal(name, "message") && !g_str_equal(name, "presence") &&
		     !g_str_equal(name, "iq"))) {
			c2s_stream_error(session, "unsupported-stanza-type", NULL);
			break;
		}
		c2s_stanza_bound(session, stanza);
		break;
	default:
		c2s_stream_error(session, "not-authorized", NULL);
		break;
	}
	/* Stop at this stanza when the stream may not read on: a restart, an
	 * exchange in progress, or a hook pending on one of its stanzas. */
	if (session->state == C2S_STATE_CLOSED || session->restart || session->hold_count > 0)
		magpie_xml_stream_pause(session->xs);
}

static void
on_stream_end(gpointer user_data)
{
	MagpieSession *session = user_data;

	if (session->state == C2S_STATE_CLOSED)
		return;
	g_info("c2s %s (%s): client closed the stream", session->peer,
	       session->jid ? magpie_jid_string(session->jid) : "unbound");
	write_str(session, "</stream:stream>");
	session->state = C2S_STATE_CLOSED;
	session_end(session);
	magpie_conn_close(session->conn, 2000);
}

static void
on_parse_error(gpointer user_data, const char *condition, const char *text)
{
	MagpieSession *session = user_data;

	g_info("c2s %s: %s", session->peer, text ? text : condition);
	c2s_stream_error(session, condition, NULL);
}

static const MagpieXmlStreamCallbacks stream_callbacks = {
	.stream_start = on_stream_start,
	.stanza = on_stanza,
	.stream_end = on_stream_end,
	.error = on_parse_error,
};

static gsize
whitespace_prefix(const char *buf, gsize len)
{
	gsize n = 0;

	while (n < len && (buf[n] == ' ' || buf[n] == '\t' || buf[n] == '\r' || buf[n] == '\n'))
		n++;
	return n;
}

static void
close_injected(MagpieSession *session)
{
	/* RFC 6120 §5.4.3.3: nothing but the TLS handshake may follow
	 * <starttls/>; plaintext there is an injection attempt. */
	g_message("c2s %s: plaintext after <starttls/>: closing", session->peer);
	session->state = C2S_STATE_CLOSED;
	session_end(session);
	magpie_conn_close(session->conn, 0);
}

static gsize
on_data(gpointer user_data, const char *buf, gsize len)
{
	MagpieSession *session = user_data;
	gsize skipped = 0;

	if (session->state == C2S_STATE_CLOSED)
		return len; /* discard: the stream is over */
	if (session->hold_count > 0)
		return 0;
	if (session->inject_check) {
		/* Whitespace after an element is common (go-xmpp ends every
		 * element with a newline) and harmless; anything else is not. */
		if (whitespace_prefix(buf, len) == len)
			return len;
		close_injected(session);
		return len;
	}
	if (session->restart) {
		magpie_xml_stream_reset(session->xs);
		session->restart = FALSE;
		session->skip_whitespace = TRUE;
	}
	if (session->skip_whitespace) {
		/* A new stream starts with its XML declaration or header: the
		 * whitespace a client left after </auth> is not part of it. */
		skipped = whitespace_prefix(buf, len);
		if (skipped == len)
			return len;
		session->skip_whitespace = FALSE;
	}
	gsize consumed =
	        skipped + magpie_xml_stream_feed(session->xs, buf + skipped, len - skipped);
	magpie_stats.bytes_in += consumed;
	if (session->state == C2S_STATE_CLOSED)
		return len;
	if (consumed < len) {
		if (session->inject_check) {
			if (whitespace_prefix(buf + consumed, len - consumed) == len - consumed)
				return len;
			close_injected(session);
			return len;
		}
		if (session->hold_count == 0)
			g_idle_add_full(G_PRIORITY_DEFAULT, resume_reading,
			                magpie_session_ref(session),
			                (GDestroyNotify) magpie_session_unref);
	}
	return consumed;
}

static void
on_tls_established(gpointer user_data)
{
	MagpieSession *session = user_data;

	session->inject_check = FALSE;
	if (session->state == C2S_STATE_CLOSED)
		return;
	session->state = C2S_STATE_HEADER;
	if (!session->host && magpie_conn_tls_sni(session->conn) &&
	    magpie_config_is_local_host(magpie_conn_tls_sni(session->conn)))
		session->host = g_strdup(magpie_conn_tls_sni(session->conn));
	g_debug("c2s %s: %s established", session->peer, magpie_conn_tls_version(session->conn));
}

/* Closed sessions are freed from one idle source, not one each: GLib
 * walks every attached source at every loop pass, and idle sources wait
 * while connections keep the loop busy, so a mass disconnect (19k
 * sessions) made thousands of them and the loop quadratic. */
static GPtrArray *closed_sessions;
static guint closed_sessions_idle;

static gboolean
free_closed_sessions(gpointer data)
{
	g_autoptr(GPtrArray) batch = g_steal_pointer(&closed_sessions);

	closed_sessions_idle = 0;
	for (guint i = 0; i < batch->len; i++)
		magpie_session_unref(batch->pdata[i]);
	return G_SOURCE_REMOVE;
}

static void
on_closed(gpointer user_data, const char *reason)
{
	MagpieSession *session = user_data;

	if (session->state != C2S_STATE_CLOSED)
		g_info("c2s %s (%s): %s", session->peer,
		       session->jid ? magpie_jid_string(session->jid) : "unbound", reason);
	session->state = C2S_STATE_CLOSED;
	session_end(session);
	magpie_listener_release(session->peer);
	/* Not from inside the connection's own callback. */
	if (closed_sessions == NULL)
		closed_sessions = g_ptr_array_new();
	g_ptr_array_add(closed_sessions, session);
	if (closed_sessions_idle == 0)
		closed_sessions_idle = g_idle_add(free_closed_sessions, NULL);
}

static const MagpieConnCallbacks conn_callbacks = {
	.data = on_data,
	.tls_established = on_tls_established,
	.closed = on_closed,
};

/* Give the pages of freed parser contexts back to the system. They were
 * allocated during the login, between the long-lived allocations of the
 * sessions logging in at the same time, so they are holes in the middle
 * of the heap that free() never returns (10k idle sessions: 42 of 184 MB
 * of heap free; malloc_trim() gave 16 MB back, docs/performance.md). Only
 * whole free pages are returned; a context rebuilt later faults a few
 * pages in again. */
static void
trim_heap(guint released)
{
	gint64 start = g_get_monotonic_time();

	malloc_trim(0);
	g_debug("c2s: %u parser contexts and sessions freed, heap trimmed in %" G_GINT64_FORMAT
	        " us",
	        released, g_get_monotonic_time() - start);
}

/* One timer for all streams: unauthenticated streams past auth-timeout and
 * streams silent past idle-timeout are closed. Whitespace keepalives count
 * as activity (they are bytes read). */
static gboolean
sweep(gpointer data)
{
	g_autoptr(GPtrArray) victims =
	        g_ptr_array_new_with_free_func((GDestroyNotify) magpie_session_unref);
	gint64 now = g_get_monotonic_time();
	gint64 now_s = g_get_real_time() / G_USEC_PER_SEC;
	gint64 idle_us = magpie_core_int("c2s", "idle-timeout") * 1000;
	gint64 auth_us = magpie_core_int("c2s", "auth-timeout") * 1000;
	g_autoptr(GPtrArray) all = magpie_sessions_all_streams();
	guint released = 0;

	max_output_queue = magpie_core_int("c2s", "max-output-queue");
	for (guint i = 0; i < all->len; i++) {
		MagpieSession *s = all->pdata[i];
		if (s->state == C2S_STATE_CLOSED || !s->conn)
			continue;
		gint64 silent = now - magpie_conn_last_read(s->conn);
		gint64 age = (now_s - s->connected_at) * G_USEC_PER_SEC;
		if ((s->state < C2S_STATE_BOUND && age > auth_us) ||
		    (idle_us > 0 && silent > idle_us))
			g_ptr_array_add(victims, magpie_session_ref(s));
		else if (s->state == C2S_STATE_BOUND && silent > PARSER_RELEASE_US &&
		         magpie_xml_stream_release(s->xs))
			/* An idle stream needs no parser context (about 10 KiB):
			 * it is rebuilt at the next byte (crux.md §2). */
			released++;
	}
	guint freed = released + sessions_freed;
	sessions_freed = 0;
	untrimmed += freed;
	if ((freed >= TRIM_MIN_RELEASED && now - last_trim >= TRIM_INTERVAL_US) ||
	    (freed == 0 && untrimmed >= TRIM_MIN_RELEASED)) {
		trim_heap(untrimmed);
		untrimmed = 0;
		last_trim = now;
	}
	for (guint i = 0; i < victims->len; i++)
		c2s_stream_error(victims->pdata[i], "connection-timeout", NULL);
	return G_SOURCE_CONTINUE;
}

void
magpie_c2s_accept(int fd, const char *peer, gboolean direct_tls)
{
	MagpieSession *session = g_new0(MagpieSession, 1);

	session->refcount = 1;
	session->peer = g_strdup(peer);
	session->connected_at = g_get_real_time() / G_USEC_PER_SEC;
	session->state = C2S_STATE_HEADER;

	MagpieXmlStreamLimits limits = {
		.max_stanza_size = magpie_core_int("c2s", "max-stanza-size"),
	};
	session->xs = magpie_xml_stream_new(&stream_callbacks, session, &limits);
	session->conn = magpie_conn_new(fd, peer, &conn_callbacks, session);
	magpie_session_register(session);
	magpie_stats.connections_total++;
	if (!sweep_source) {
		max_output_queue = magpie_core_int("c2s", "max-output-queue");
		/* A walk over every stream: about 6 ms with 19k of them
		 * (cache misses), 0.3% of a core at this period. */
		sweep_source = g_timeout_source_new_seconds(2);
		g_source_set_callback(sweep_source, sweep, NULL, NULL);
		g_source_attach(sweep_source, NULL);
	}
	if (direct_tls) {
		MagpieTls *tls = magpie_tls_get_default();
		if (!tls) {
			session->state = C2S_STATE_CLOSED;
			session_end(session);
			magpie_conn_close(session->conn, 0);
			return;
		}
		session->state = C2S_STATE_TLS;
		magpie_conn_start_tls(session->conn, tls);
	}
}

void
magpie_c2s_shutdown(void)
{
	g_autoptr(GPtrArray) all = magpie_sessions_all_streams();

	for (guint i = 0; i < all->len; i++)
		c2s_stream_error(all->pdata[i], "system-shutdown", NULL);
	if (sweep_source) {
		g_source_destroy(sweep_source);
		g_clear_pointer(&sweep_source, g_source_unref);
	}
}
