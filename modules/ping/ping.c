/* XMPP Ping (XEP-0199): answer pings addressed to the server (and, on
 * their behalf, to local accounts' bare JIDs), and ping clients whose
 * stream has been silent for `interval`; a client that does not answer
 * within `timeout` is disconnected with <connection-timeout/>.
 *
 * Any answer proves liveness, an error included: a client without ping
 * support replies service-unavailable (XEP-0199 §4.2).
 */
#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_PING "urn:xmpp:ping"

typedef struct {
	gint64 interval_us; /* 0: no server-initiated pings */
	guint timeout_ms;
} PingData;

/* Per-session slot: a ping is in flight. */
typedef struct {
	gboolean outstanding;
} PingSession;

typedef struct {
	MagpieModule *mod;
	MagpieSession *session;
} PingRequest;

static void
ping_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	magpie_iq_reply(req, NULL);
}

static void
ping_request_free(gpointer data)
{
	PingRequest *request = data;

	magpie_session_unref(request->session);
	g_free(request);
}

static void
ping_response(MagpieStanza *response, gpointer user_data)
{
	PingRequest *request = user_data;
	PingSession *ps;

	if (response == NULL) {
		if (magpie_session_is_alive(request->session)) {
			g_info("%s did not answer a ping: closing",
			       magpie_session_jid(request->session)
			               ? magpie_jid_string(magpie_session_jid(request->session))
			               : "(unbound)");
			magpie_session_close(request->session, "connection-timeout",
			                     "no answer to ping");
		}
		return;
	}
	ps = magpie_session_get_data(request->session, request->mod);
	if (ps != NULL)
		ps->outstanding = FALSE;
}

static void
ping_check_session(MagpieSession *session, gpointer user_data)
{
	MagpieModule *mod = user_data;
	PingData *pd = magpie_module_get_data(mod);
	PingSession *ps;
	MagpieJid *full = magpie_session_jid(session);
	g_autoptr(MagpieStanza) iq = NULL;
	g_autoptr(MagpieJid) host = NULL;
	PingRequest *request;

	if (full == NULL || !magpie_session_is_alive(session))
		return;
	ps = magpie_session_get_data(session, mod);
	if (ps != NULL && ps->outstanding)
		return;
	if (g_get_monotonic_time() - magpie_session_last_activity(session) < pd->interval_us)
		return;
	host = magpie_jid_new(NULL, magpie_session_host(session), NULL, NULL);
	if (host == NULL)
		return;
	if (ps == NULL) {
		ps = g_new0(PingSession, 1);
		magpie_session_set_data(session, mod, ps, g_free);
	}
	ps->outstanding = TRUE;

	iq = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
	magpie_stanza_set_attr(iq, "type", "get");
	magpie_stanza_set_attr(iq, "to", magpie_jid_string(full));
	magpie_element_add_child(magpie_stanza_root(iq), "ping", NS_PING);

	request = g_new0(PingRequest, 1);
	request->mod = mod;
	request->session = magpie_session_ref(session);
	magpie_iq_send(mod, iq, host, pd->timeout_ms, ping_response, request, ping_request_free);
}

static gboolean
ping_tick(gpointer user_data)
{
	magpie_sessions_foreach(ping_check_session, user_data);
	return G_SOURCE_CONTINUE;
}

static gboolean
ping_load(MagpieModule *mod, GError **error)
{
	PingData *pd = g_new0(PingData, 1);
	gint64 interval_ms = magpie_module_config_int(mod, "interval");

	pd->interval_us = interval_ms * 1000;
	pd->timeout_ms = (guint) magpie_module_config_int(mod, "timeout");
	magpie_module_set_data(mod, pd, g_free);

	if (interval_ms > 0) {
		/* Silence is noticed within half an interval, checked at most
		 * every 30 s: one pass over the sessions, not a timer each. */
		guint tick_ms = (guint) CLAMP(interval_ms / 2, 100, 30 * 1000);

		magpie_module_add_timeout(mod, tick_ms, ping_tick, mod, NULL);
	}
	return TRUE;
}

static const MagpieIqSpec ping_iqs[] = {
	{ NS_PING, "ping", MAGPIE_IQ_GET, ping_handle, FALSE },
	{ NULL },
};

static const MagpieConfigKey ping_config[] = {
	{ "interval", MAGPIE_CONFIG_DURATION, "5m", 0, 24 * 3600 * 1000,
	  "Silence on a client stream before the server pings it; 0 = never" },
	{ "timeout", MAGPIE_CONFIG_DURATION, "60s", 1000, 3600 * 1000,
	  "Time to wait for the answer before closing the stream" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_ping = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "ping",
	.description = "XMPP Ping (XEP-0199), and pings to silent clients",
	.iqs = ping_iqs,
	.config = ping_config,
	.disco_features = (const char *const[]){ NS_PING, NULL },
	.load = ping_load,
};
