/* Rosters (RFC 6121 §2) with roster versioning (XEP-0237).
 *
 * The rows live in sql/roster/0001_roster.sql. Every change, whoever made
 * it (a client's roster set, the presence module's subscription state
 * machine, an operator's SQL), is announced by a trigger with NOTIFY
 * magpie_roster; this module LISTENs, pushes the item to the owner's
 * interested resources (§2.1.6) and fires "roster.changed" for other
 * modules (presence). One path for every push keeps them in commit order.
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_ROSTER     "jabber:iq:roster"
#define NS_ROSTERVER  "urn:xmpp:features:rosterver"
#define NS_CHANGE     "urn:xmpp:magpie:roster-change"
#define EVENT_CHANGED "roster.changed"
#define GROUP_SEP     "\x01" /* cannot occur in XML character data */

typedef struct {
	MagpieModule *mod;
	gint64 max_items;
	gint64 max_name_length;
	gint64 max_groups;
	gint64 max_group_length;
	guint listen_id;
	guint64 push_counter;
	gboolean unloading;
} RosterData;

/* One SQL round trip of an IQ. */
typedef struct {
	MagpieModule *mod;
	MagpieIqRequest *req;
	char *host;
	char *username;
	char *ver; /* get: the client's version, or NULL */
} RosterCall;

static void
roster_call_free(RosterCall *call)
{
	magpie_iq_request_unref(call->req);
	g_free(call->host);
	g_free(call->username);
	g_free(call->ver);
	g_free(call);
}

/* Items. */

static void
roster_item_fill(MagpieElement *item, const char *contact, const char *name,
                 const char *subscription, gboolean ask, gboolean approved, const char *groups)
{
	magpie_element_set_attr(item, "jid", contact);
	if (name && *name)
		magpie_element_set_attr(item, "name", name);
	magpie_element_set_attr(item, "subscription", subscription);
	if (ask)
		magpie_element_set_attr(item, "ask", "subscribe");
	if (approved)
		magpie_element_set_attr(item, "approved", "true");
	if (groups && *groups) {
		g_auto(GStrv) list = g_strsplit(groups, GROUP_SEP, -1);
		for (guint i = 0; list[i]; i++) {
			MagpieElement *g = magpie_element_add_child(item, "group", NULL);
			magpie_element_add_text(g, list[i], -1);
		}
	}
}

static gboolean
pg_bool(const char *value)
{
	return value && value[0] == 't';
}

/* Pushes (RFC 6121 §2.1.6): an IQ set to each interested resource; the
 * answers come back to the account's bare JID and are dropped there. */
static void
roster_push(RosterData *rd, MagpieJid *owner, MagpieStanza *query_stanza)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(owner);

	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *session = sessions->pdata[i];
		MagpieJid *full = magpie_session_jid(session);

		if (!full || !magpie_session_is_interested(session) ||
		    !magpie_session_is_alive(session))
			continue;
		g_autoptr(MagpieStanza) iq = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
		g_autofree char *id = g_strdup_printf("push-%" G_GUINT64_FORMAT "-%08x",
		                                      ++rd->push_counter, g_random_int());
		magpie_stanza_set_attr(iq, "type", "set");
		magpie_stanza_set_attr(iq, "id", id);
		magpie_stanza_set_attr(iq, "from", magpie_jid_bare_string(owner));
		magpie_stanza_set_attr(iq, "to", magpie_jid_string(full));
		magpie_element_append_copy(magpie_stanza_root(iq),
		                           magpie_stanza_root(query_stanza));
		magpie_session_send(session, iq);
	}
}

/* A <query ver=...><item .../></query> for one contact's current state:
 * @row NULL or not visible means removed. Columns: version, name,
 * subscription, ask_out, approved, groups, in_roster. */
static MagpieStanza *
roster_query_for(const char *contact, const MagpiePgResult *res, int row)
{
	MagpieStanza *query = magpie_stanza_new("query", NS_ROSTER);
	MagpieElement *item = magpie_element_add_child(magpie_stanza_root(query), "item", NULL);

	magpie_stanza_set_attr(query, "ver", magpie_pg_result_get(res, row, 0));
	if (magpie_pg_result_get(res, row, 2) == NULL ||
	    !pg_bool(magpie_pg_result_get(res, row, 6))) {
		magpie_element_set_attr(item, "jid", contact);
		magpie_element_set_attr(item, "subscription", "remove");
	} else {
		roster_item_fill(item, contact, magpie_pg_result_get(res, row, 1),
		                 magpie_pg_result_get(res, row, 2),
		                 pg_bool(magpie_pg_result_get(res, row, 3)),
		                 pg_bool(magpie_pg_result_get(res, row, 4)),
		                 magpie_pg_result_get(res, row, 5));
	}
	return query;
}

#define ITEM_STATE_SQL                                                                             \
	"SELECT coalesce((SELECT version FROM roster_version WHERE host = $1 AND username = $2), " \
	"0)::text, i.name, i.subscription, i.ask_out::text, i.approved::text, "                    \
	"array_to_string(i.groups, chr(1)), i.in_roster::text "                                    \
	"FROM (SELECT 1) AS one LEFT JOIN roster_item i "                                          \
	"ON i.host = $1 AND i.username = $2 AND i.contact = $3"

/* A NOTIFY: the payload, then the row's current state. */
typedef struct {
	MagpieModule *mod;
	MagpieJid *owner;
	MagpieJid *contact;
	char **fields; /* owner contact origin old-sub old-ask-out old-ask-in old-visible */
} RosterNotice;

static void
roster_notice_free(RosterNotice *notice)
{
	g_clear_pointer(&notice->owner, magpie_jid_unref);
	g_clear_pointer(&notice->contact, magpie_jid_unref);
	g_strfreev(notice->fields);
	g_free(notice);
}

static void
roster_notice_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	RosterNotice *notice = user_data;
	RosterData *rd = magpie_module_get_data(notice->mod);
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (!res) {
		g_message("roster: reading the change of %s for %s: %s",
		          magpie_jid_string(notice->contact), magpie_jid_string(notice->owner),
		          error->message);
		roster_notice_free(notice);
		return;
	}
	if (rd == NULL || rd->unloading || magpie_pg_result_rows(res) < 1) {
		roster_notice_free(notice);
		return;
	}
	const char *contact = magpie_jid_string(notice->contact);
	gboolean present = magpie_pg_result_get(res, 0, 2) != NULL;
	gboolean visible = present && pg_bool(magpie_pg_result_get(res, 0, 6));
	gboolean was_visible = pg_bool(notice->fields[6]);

	if (visible || was_visible) {
		g_autoptr(MagpieStanza) query = roster_query_for(contact, res, 0);
		roster_push(rd, notice->owner, query);
	}

	/* roster.changed: the old and new state, for the presence module. */
	g_autoptr(MagpieStanza) change = magpie_stanza_new("roster-change", NS_CHANGE);
	magpie_stanza_set_attr(change, "owner", magpie_jid_string(notice->owner));
	magpie_stanza_set_attr(change, "contact", contact);
	magpie_stanza_set_attr(change, "origin", notice->fields[2]);
	if (!g_str_equal(notice->fields[3], "-")) {
		magpie_stanza_set_attr(change, "old-subscription", notice->fields[3]);
		magpie_stanza_set_attr(change, "old-ask",
		                       pg_bool(notice->fields[4]) ? "true" : "false");
		magpie_stanza_set_attr(change, "old-pending-in",
		                       pg_bool(notice->fields[5]) ? "true" : "false");
	} else {
		magpie_stanza_set_attr(change, "old-subscription", "none");
	}
	magpie_stanza_set_attr(change, "subscription",
	                       present ? magpie_pg_result_get(res, 0, 2) : "none");
	magpie_stanza_set_attr(change, "ask",
	                       present && pg_bool(magpie_pg_result_get(res, 0, 3)) ? "true"
	                                                                           : "false");
	if (!present)
		magpie_stanza_set_attr(change, "removed", "true");
	magpie_stanza_set_attr(change, "version", magpie_pg_result_get(res, 0, 0));
	magpie_hook_fire(EVENT_CHANGED, change, NULL, notice->owner, notice->contact);
	roster_notice_free(notice);
}

static void
roster_notify(const char *channel, const char *payload, gpointer user_data)
{
	MagpieModule *mod = user_data;
	RosterNotice *notice;
	g_auto(GStrv) fields = g_strsplit(payload, " ", -1);

	if (g_strv_length(fields) != 7) {
		g_message("roster: ignoring a malformed NOTIFY %s payload", channel);
		return;
	}
	g_autoptr(MagpieJid) owner = magpie_jid_parse(fields[0], NULL);
	g_autoptr(MagpieJid) contact = magpie_jid_parse(fields[1], NULL);
	if (!owner || !contact || !magpie_jid_node(owner)) {
		g_message("roster: ignoring a NOTIFY %s with bad JIDs", channel);
		return;
	}
	/* Pushes are for online resources; roster.changed matters to presence
	 * only for SQL and client changes (its own it has applied already),
	 * so a change for an offline owner made by presence needs no query. */
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(owner);
	if (sessions->len == 0 && g_str_equal(fields[2], "presence"))
		return;

	notice = g_new0(RosterNotice, 1);
	notice->mod = mod;
	notice->owner = g_steal_pointer(&owner);
	notice->contact = g_steal_pointer(&contact);
	notice->fields = g_steal_pointer(&fields);
	const char *params[] = { magpie_jid_domain(notice->owner), magpie_jid_node(notice->owner),
		                 notice->fields[1] };
	magpie_pg_query_async(ITEM_STATE_SQL, 3, params, NULL, roster_notice_done, notice);
}

/* Roster get (RFC 6121 §2.2, XEP-0237 §4). */

static void
roster_changes_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	RosterCall *call = user_data;
	RosterData *rd = magpie_module_get_data(call->mod);
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (!res) {
		g_message("roster: incremental roster of %s@%s: %s", call->username, call->host,
		          error->message);
		roster_call_free(call);
		return;
	}
	g_autoptr(MagpieJid) owner = magpie_jid_new(call->username, call->host, NULL, NULL);
	for (int i = 0; owner && rd && i < magpie_pg_result_rows(res); i++) {
		/* Columns: version of the contact's last change, name, subscription,
		 * ask_out, approved, groups, in_roster, contact. */
		const char *contact = magpie_pg_result_get(res, i, 7);
		g_autoptr(MagpieStanza) query = roster_query_for(contact, res, i);
		MagpieSession *session = magpie_iq_request_session(call->req);
		MagpieJid *full = session ? magpie_session_jid(session) : NULL;
		if (!full)
			break;
		g_autoptr(MagpieStanza) iq = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
		g_autofree char *id = g_strdup_printf("push-%" G_GUINT64_FORMAT "-%08x",
		                                      ++rd->push_counter, g_random_int());
		magpie_stanza_set_attr(iq, "type", "set");
		magpie_stanza_set_attr(iq, "id", id);
		magpie_stanza_set_attr(iq, "from", magpie_jid_bare_string(owner));
		magpie_stanza_set_attr(iq, "to", magpie_jid_string(full));
		magpie_element_append_copy(magpie_stanza_root(iq), magpie_stanza_root(query));
		magpie_session_send(session, iq);
	}
	roster_call_free(call);
}

static void
roster_get_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	RosterCall *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (!res) {
		g_message("roster: reading the roster of %s@%s: %s", call->username, call->host,
		          error->message);
		magpie_iq_reply_error(call->req, "wait", "internal-server-error", NULL);
		roster_call_free(call);
		return;
	}
	/* Columns: version, log_floor, contact, name, subscription, ask_out,
	 * approved, groups. One row with a NULL contact for an empty roster. */
	const char *version = magpie_pg_result_get(res, 0, 0);
	gint64 current = g_ascii_strtoll(version, NULL, 10);
	gint64 floor_version = g_ascii_strtoll(magpie_pg_result_get(res, 0, 1), NULL, 10);
	MagpieSession *session = magpie_iq_request_session(call->req);

	if (session)
		magpie_session_set_interested(session, TRUE);

	if (call->ver && *call->ver) {
		char *end = NULL;
		gint64 known = g_ascii_strtoll(call->ver, &end, 10);
		gboolean numeric = end && *end == '\0' && end != call->ver;

		if (numeric && known == current) {
			/* XEP-0237 §4: up to date, an empty result. */
			magpie_iq_reply(call->req, NULL);
			roster_call_free(call);
			return;
		}
		if (numeric && known >= floor_version && known < current) {
			/* Empty result, then the changes since as pushes. */
			magpie_iq_reply(call->req, NULL);
			g_autofree char *known_str = g_strdup_printf("%" G_GINT64_FORMAT, known);
			const char *params[] = { call->host, call->username, known_str };
			magpie_pg_query_async(
			        "SELECT c.version::text, i.name, i.subscription, i.ask_out::text, "
			        "i.approved::text, array_to_string(i.groups, chr(1)), "
			        "i.in_roster::text, c.contact "
			        "FROM (SELECT contact, max(version) AS version FROM roster_changes "
			        "WHERE host = $1 AND username = $2 AND version > $3::bigint "
			        "GROUP BY contact) c "
			        "LEFT JOIN roster_item i ON i.host = $1 AND i.username = $2 "
			        "AND i.contact = c.contact ORDER BY c.version",
			        3, params, NULL, roster_changes_done, call);
			return;
		}
	}

	g_autoptr(MagpieStanza) iq = magpie_iq_result_new(call->req);
	MagpieElement *query = magpie_element_add_child(magpie_stanza_root(iq), "query", NS_ROSTER);
	magpie_element_set_attr(query, "ver", version);
	for (int i = 0; i < magpie_pg_result_rows(res); i++) {
		const char *contact = magpie_pg_result_get(res, i, 2);
		if (!contact)
			continue;
		MagpieElement *item = magpie_element_add_child(query, "item", NULL);
		roster_item_fill(
		        item, contact, magpie_pg_result_get(res, i, 3),
		        magpie_pg_result_get(res, i, 4), pg_bool(magpie_pg_result_get(res, i, 5)),
		        pg_bool(magpie_pg_result_get(res, i, 6)), magpie_pg_result_get(res, i, 7));
	}
	magpie_iq_send_result(call->req, iq);
	roster_call_free(call);
}

/* Roster set (RFC 6121 §2.3, §2.5). */

static void
roster_set_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	RosterCall *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (!res) {
		g_message("roster: roster set of %s@%s: %s", call->username, call->host,
		          error->message);
		magpie_iq_reply_error(call->req, "wait", "internal-server-error", NULL);
	} else if (!pg_bool(magpie_pg_result_get(res, 0, 0))) {
		if (call->ver) /* remove */
			magpie_iq_reply_error(call->req, "cancel", "item-not-found", NULL);
		else
			magpie_iq_reply_error(call->req, "cancel", "not-allowed",
			                      "The roster is full");
	} else {
		magpie_iq_reply(call->req, NULL);
	}
	roster_call_free(call);
}

/* A PostgreSQL text[] literal. */
static char *
roster_array_literal(GPtrArray *groups)
{
	GString *out = g_string_new("{");

	for (guint i = 0; i < groups->len; i++) {
		const char *g = groups->pdata[i];
		if (i)
			g_string_append_c(out, ',');
		g_string_append_c(out, '"');
		for (const char *p = g; *p; p++) {
			if (*p == '"' || *p == '\\')
				g_string_append_c(out, '\\');
			g_string_append_c(out, *p);
		}
		g_string_append_c(out, '"');
	}
	g_string_append_c(out, '}');
	return g_string_free(out, FALSE);
}

static void
roster_set(RosterData *rd, RosterCall *call, MagpieElement *query)
{
	MagpieElement *item = NULL;
	guint n_items = 0;

	for (MagpieElement *el = magpie_element_first_child(query); el;
	     el = magpie_element_next_sibling(el)) {
		if (g_str_equal(magpie_element_name(el), "item") &&
		    g_strcmp0(magpie_element_ns(el), NS_ROSTER) == 0) {
			item = el;
			n_items++;
		}
	}
	if (n_items != 1) {
		/* §2.3.3 */
		magpie_iq_reply_error(call->req, "modify", "bad-request",
		                      "A roster set holds exactly one item");
		roster_call_free(call);
		return;
	}
	const char *jid_attr = magpie_element_get_attr(item, "jid");
	g_autoptr(MagpieJid) contact = jid_attr ? magpie_jid_parse(jid_attr, NULL) : NULL;
	if (!contact) {
		magpie_iq_reply_error(call->req, "modify",
		                      jid_attr ? "jid-malformed" : "bad-request",
		                      "The item needs a valid 'jid'");
		roster_call_free(call);
		return;
	}
	if (magpie_jid_resource(contact)) {
		magpie_iq_reply_error(call->req, "modify", "bad-request",
		                      "Roster items are bare JIDs");
		roster_call_free(call);
		return;
	}
	const char *contact_str = magpie_jid_string(contact);

	if (g_strcmp0(magpie_element_get_attr(item, "subscription"), "remove") == 0) {
		const char *params[] = { call->host, call->username, contact_str };
		call->ver = g_strdup("remove");
		magpie_pg_query_async("SELECT magpie_roster_client_remove($1, $2, $3)::text", 3,
		                      params, NULL, roster_set_done, call);
		return;
	}

	/* Only name and groups are the client's (§2.1.2); subscription, ask
	 * and approved are ignored. */
	const char *name = magpie_element_get_attr(item, "name");
	if (name && (gint64) strlen(name) > rd->max_name_length) {
		magpie_iq_reply_error(call->req, "modify", "not-acceptable",
		                      "The name is too long");
		roster_call_free(call);
		return;
	}
	g_autoptr(GPtrArray) groups = g_ptr_array_new_with_free_func(g_free);
	for (MagpieElement *el = magpie_element_first_child(item); el;
	     el = magpie_element_next_sibling(el)) {
		if (!g_str_equal(magpie_element_name(el), "group"))
			continue;
		char *text = magpie_element_get_text(el);
		const char *problem = NULL;
		const char *condition = "not-acceptable";

		if (!text || !*text)
			problem = "A group name is empty";
		else if ((gint64) strlen(text) > rd->max_group_length)
			problem = "A group name is too long";
		else if ((gint64) groups->len >= rd->max_groups)
			problem = "Too many groups";
		for (guint i = 0; !problem && i < groups->len; i++) {
			if (g_str_equal(groups->pdata[i], text)) {
				problem = "Duplicate group";
				condition = "bad-request";
			}
		}
		if (problem) {
			g_free(text);
			magpie_iq_reply_error(call->req, "modify", condition, problem);
			roster_call_free(call);
			return;
		}
		g_ptr_array_add(groups, text);
	}
	g_autofree char *array = roster_array_literal(groups);
	g_autofree char *max = g_strdup_printf("%" G_GINT64_FORMAT, rd->max_items);
	const char *params[] = { call->host,  call->username,
		                 contact_str, name && *name ? name : NULL,
		                 array,       max };
	magpie_pg_query_async("SELECT magpie_roster_client_set($1, $2, $3, $4, $5::text[], "
	                      "$6::integer)::text",
	                      6, params, NULL, roster_set_done, call);
}

static void
roster_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	RosterData *rd = magpie_module_get_data(mod);
	MagpieJid *from = magpie_iq_request_from(req);
	MagpieJid *to = magpie_iq_request_to(req);
	MagpieElement *query = magpie_iq_request_payload(req);

	/* §2.1.5 / §2.3.3: only the user manages their own roster. */
	if (!from || !to || !magpie_jid_node(from) || !magpie_jid_bare_equal(from, to) ||
	    !magpie_config_is_local_host(magpie_jid_domain(from))) {
		magpie_iq_reply_error(req, "auth", "forbidden", NULL);
		return;
	}
	RosterCall *call = g_new0(RosterCall, 1);
	call->mod = mod;
	call->req = magpie_iq_request_ref(req);
	call->host = g_strdup(magpie_jid_domain(from));
	call->username = g_strdup(magpie_jid_node(from));

	if (magpie_iq_request_type(req) == MAGPIE_IQ_SET) {
		roster_set(rd, call, query);
		return;
	}
	const char *ver = magpie_element_get_attr(query, "ver");
	call->ver = g_strdup(ver);
	const char *params[] = { call->host, call->username };
	magpie_pg_query_async(
	        "WITH v AS (SELECT coalesce(max(version), 0) AS version, "
	        "coalesce(max(log_floor), 0) AS log_floor FROM roster_version "
	        "WHERE host = $1 AND username = $2) "
	        "SELECT v.version::text, v.log_floor::text, i.contact, i.name, i.subscription, "
	        "i.ask_out::text, i.approved::text, array_to_string(i.groups, chr(1)) "
	        "FROM v LEFT JOIN roster_item i ON i.host = $1 AND i.username = $2 AND i.in_roster "
	        "ORDER BY i.contact",
	        2, params, NULL, roster_get_done, call);
}

/* XEP-0237 §3: advertised once the stream is authenticated. */
static MagpieHookResult
roster_stream_features(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);

	if (session && magpie_session_is_authenticated(session))
		magpie_element_add_child(magpie_stanza_root(magpie_event_stanza(ev)), "ver",
		                         NS_ROSTERVER);
	return MAGPIE_HOOK_CONTINUE;
}

static void
roster_data_free(gpointer data)
{
	g_free(data);
}

static gboolean
roster_load(MagpieModule *mod, GError **error)
{
	RosterData *rd = g_new0(RosterData, 1);

	rd->mod = mod;
	rd->max_items = magpie_module_config_int(mod, "max-items");
	rd->max_name_length = magpie_module_config_int(mod, "max-name-length");
	rd->max_groups = magpie_module_config_int(mod, "max-groups");
	rd->max_group_length = magpie_module_config_int(mod, "max-group-length");
	magpie_module_set_data(mod, rd, roster_data_free);
	rd->listen_id = magpie_pg_listen("magpie_roster", roster_notify, mod, NULL);
	return TRUE;
}

static void
roster_unload(MagpieModule *mod)
{
	RosterData *rd = magpie_module_get_data(mod);

	if (rd) {
		rd->unloading = TRUE;
		if (rd->listen_id)
			magpie_pg_unlisten(rd->listen_id);
		rd->listen_id = 0;
	}
}

static const MagpieHookSpec roster_hooks[] = {
	{ MAGPIE_EVENT_STREAM_FEATURES, roster_stream_features, MAGPIE_PRIORITY_DEFAULT },
	{ NULL },
};

static const MagpieIqSpec roster_iqs[] = {
	{ NS_ROSTER, "query", MAGPIE_IQ_GET | MAGPIE_IQ_SET, roster_handle, FALSE },
	{ NULL },
};

static const MagpieConfigKey roster_config[] = {
	{ "max-items", MAGPIE_CONFIG_INT, "1000", 1, 1000000,
	  "Items per roster; a roster set beyond it gets not-allowed" },
	{ "max-name-length", MAGPIE_CONFIG_INT, "1023", 1, 65535,
	  "Bytes in an item's name; longer gets not-acceptable" },
	{ "max-groups", MAGPIE_CONFIG_INT, "50", 0, 10000, "Groups per item" },
	{ "max-group-length", MAGPIE_CONFIG_INT, "1023", 1, 65535, "Bytes in a group name" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_roster = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "roster",
	.description = "Rosters (RFC 6121 §2) and roster versioning (XEP-0237)",
	.hooks = roster_hooks,
	.iqs = roster_iqs,
	.config = roster_config,
	.events = (const char *const[]){ EVENT_CHANGED, NULL },
	.load = roster_load,
	.unload = roster_unload,
};
