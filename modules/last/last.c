/* Last Activity (XEP-0012).
 *
 * - To the host: the server's uptime in seconds (XEP-0012 §5).
 * - To a local user's bare JID (XEP-0012 §4, "offline user query"): the
 *   seconds since the account last logged out and the status text of its
 *   last unavailable presence. Only the user and the contacts allowed to see
 *   the user's presence (subscription 'from' or 'both' in
 *   magpie_roster_view, owner = the user) may ask; anyone else gets
 *   auth/forbidden, whether or not the account exists (no probing). When
 *   the user has an available resource, the answer is seconds='0' without
 *   text: the user is active now (XEP-0012 §4 lets the server answer on
 *   the user's behalf). A user who never logged out: cancel/item-not-found.
 * - To a full JID: the core delivers the IQ to that client.
 *
 * "Logout" is recorded when the account's last available resource sends
 * unavailable presence (or its session ends, which the core turns into
 * unavailable presence), and when its last session ends.
 */
#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_LAST "jabber:iq:last"

static gint64
last_now_seconds(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

static void
last_write_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autofree char *who = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);

	if (rows == NULL)
		g_info("last: could not record the logout of %s: %s", who, error->message);
}

/* @status NULL and @keep_status: only the time changes on an existing row.
 * @now: last_now_seconds(). */
static void
last_record(MagpieJid *jid, gint64 now, const char *status, gboolean keep_status)
{
	g_autofree char *epoch = g_strdup_printf("%" G_GINT64_FORMAT, now);
	const char *params[] = { magpie_jid_domain(jid), magpie_jid_node(jid), epoch, status };

	if (magpie_jid_node(jid) == NULL)
		return;
	magpie_pg_query_async(
	        keep_status ? "INSERT INTO last_activity (host, username, logout_epoch, status)"
	                      " VALUES ($1, $2, $3::bigint, $4)"
	                      " ON CONFLICT (host, username)"
	                      " DO UPDATE SET logout_epoch = EXCLUDED.logout_epoch"
	                    : "INSERT INTO last_activity (host, username, logout_epoch, status)"
	                      " VALUES ($1, $2, $3::bigint, $4)"
	                      " ON CONFLICT (host, username) DO UPDATE"
	                      " SET logout_epoch = EXCLUDED.logout_epoch, status = EXCLUDED.status",
	        4, params, NULL, last_write_done, g_strdup(magpie_jid_bare_string(jid)));
}

/* Does the account have a session other than @except that is available
 * (or merely bound, with @any_bound)? */
static gboolean
last_has_other_session(MagpieJid *jid, MagpieSession *except, gboolean any_bound)
{
	g_autoptr(MagpieJid) bare = magpie_jid_bare(jid);
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(bare);

	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *s = sessions->pdata[i];

		if (s == except)
			continue;
		if (any_bound || magpie_session_is_available(s))
			return TRUE;
	}
	return FALSE;
}

static MagpieHookResult
last_on_broadcast(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *presence = magpie_event_stanza(ev);
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *jid = session ? magpie_session_jid(session) : magpie_event_from(ev);
	const char *type = presence ? magpie_stanza_get_attr(presence, "type") : NULL;
	g_autofree char *status = NULL;

	if (jid == NULL || type == NULL || !g_str_equal(type, "unavailable"))
		return MAGPIE_HOOK_CONTINUE;
	if (last_has_other_session(jid, session, FALSE))
		return MAGPIE_HOOK_CONTINUE;
	status = magpie_element_get_child_text(magpie_stanza_root(presence), "status", NULL);
	if (status != NULL && *status == '\0')
		g_clear_pointer(&status, g_free);
	gint64 now = last_now_seconds();
	last_record(jid, now, status, FALSE);
	/* A session that ends while available broadcasts unavailable first:
	 * session.end then has nothing new to write within the same second. */
	if (session != NULL)
		magpie_session_set_data(session, mod, GSIZE_TO_POINTER((gsize) now), NULL);
	return MAGPIE_HOOK_CONTINUE;
}

static MagpieHookResult
last_on_session_end(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *jid = session ? magpie_session_jid(session) : magpie_event_from(ev);
	gint64 now = last_now_seconds();

	if (jid == NULL || last_has_other_session(jid, session, TRUE))
		return MAGPIE_HOOK_CONTINUE;
	if (session != NULL &&
	    GPOINTER_TO_SIZE(magpie_session_get_data(session, mod)) == (gsize) now)
		return MAGPIE_HOOK_CONTINUE; /* written by the broadcast just now */
	last_record(jid, now, NULL, TRUE);
	return MAGPIE_HOOK_CONTINUE;
}

static void
last_reply_seconds(MagpieIqRequest *req, gint64 seconds, const char *text)
{
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
	MagpieElement *query =
	        magpie_element_add_child(magpie_stanza_root(result), "query", NS_LAST);
	g_autofree char *value = g_strdup_printf("%" G_GINT64_FORMAT, MAX(seconds, 0));

	magpie_element_set_attr(query, "seconds", value);
	if (text != NULL && *text != '\0')
		magpie_element_add_text(query, text, -1);
	magpie_iq_send_result(req, result);
}

static gboolean
last_is_available(MagpieJid *bare)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(bare);

	for (guint i = 0; i < sessions->len; i++) {
		if (magpie_session_is_available(sessions->pdata[i]))
			return TRUE;
	}
	return FALSE;
}

static void
last_query_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(MagpieIqRequest) req = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);
	const char *allowed, *epoch;
	g_autoptr(MagpieJid) bare = NULL;

	if (rows == NULL) {
		if (g_error_matches(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_QUERY)) {
			/* Without the roster module there is no magpie_roster_view,
			 * so nobody can be subscribed. */
			g_debug("last: %s", error->message);
			magpie_iq_reply_error(req, "auth", "forbidden", NULL);
		} else {
			g_info("last: query failed: %s", error->message);
			magpie_iq_reply_error(req, "wait", "internal-server-error", NULL);
		}
		return;
	}
	allowed = magpie_pg_result_rows(rows) > 0 ? magpie_pg_result_get(rows, 0, 0) : NULL;
	if (allowed == NULL || !g_str_equal(allowed, "t")) {
		magpie_iq_reply_error(req, "auth", "forbidden", NULL);
		return;
	}
	bare = magpie_jid_bare(magpie_iq_request_to(req));
	if (last_is_available(bare)) {
		last_reply_seconds(req, 0, NULL);
		return;
	}
	epoch = magpie_pg_result_get(rows, 0, 1);
	if (epoch == NULL) {
		magpie_iq_reply_error(req, "cancel", "item-not-found", NULL);
		return;
	}
	last_reply_seconds(req, last_now_seconds() - g_ascii_strtoll(epoch, NULL, 10),
	                   magpie_pg_result_get(rows, 0, 2));
}

static void
last_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	MagpieJid *from = magpie_iq_request_from(req);
	MagpieJid *to = magpie_iq_request_to(req);

	if (magpie_jid_node(to) == NULL) {
		/* XEP-0012 §5: a server's uptime. */
		last_reply_seconds(
		        req, (g_get_real_time() - magpie_server_start_time()) / G_USEC_PER_SEC,
		        NULL);
		return;
	}
	if (from == NULL) {
		magpie_iq_reply_error(req, "auth", "forbidden", NULL);
		return;
	}
	if (magpie_jid_bare_equal(from, to)) {
		const char *params[] = { magpie_jid_domain(to), magpie_jid_node(to) };

		magpie_pg_query_async("SELECT true, l.logout_epoch, l.status FROM (SELECT 1) AS one"
		                      " LEFT JOIN last_activity l"
		                      " ON l.host = $1 AND l.username = $2",
		                      2, params, NULL, last_query_done, magpie_iq_request_ref(req));
		return;
	}
	const char *params[] = { magpie_jid_bare_string(to), magpie_jid_bare_string(from),
		                 magpie_jid_domain(to), magpie_jid_node(to) };

	magpie_pg_query_async("SELECT EXISTS (SELECT 1 FROM magpie_roster_view"
	                      "               WHERE owner = $1 AND contact = $2"
	                      "               AND subscription IN ('from', 'both')),"
	                      " l.logout_epoch, l.status FROM (SELECT 1) AS one"
	                      " LEFT JOIN last_activity l ON l.host = $3 AND l.username = $4",
	                      4, params, NULL, last_query_done, magpie_iq_request_ref(req));
}

static const MagpieHookSpec last_hooks[] = {
	{ MAGPIE_EVENT_PRESENCE_BROADCAST, last_on_broadcast, MAGPIE_PRIORITY_LATE },
	{ MAGPIE_EVENT_SESSION_END, last_on_session_end, MAGPIE_PRIORITY_LATE },
	{ NULL },
};

static const MagpieIqSpec last_iqs[] = {
	{ NS_LAST, "query", MAGPIE_IQ_GET, last_handle, FALSE },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_last = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "last",
	.description = "Last Activity (XEP-0012): server uptime, users' last logout",
	.hooks = last_hooks,
	.iqs = last_iqs,
	.disco_features = (const char *const[]){ NS_LAST, NULL },
};
