/* Offline messages: XEP-0160 (store chat/normal messages for accounts with
 * no available resource, deliver them at the next login), XEP-0203 (a
 * <delay/> stamp with the storage time) and XEP-0013 (flexible offline
 * message retrieval: count, headers, view, remove, fetch, purge).
 *
 * Durability: a message is accepted (the event answers STOP) only after
 * its INSERT committed; a database error or a full quota lets the event go
 * on, so the core bounces it with service-unavailable. Delivery selects a
 * batch in id order, hands each message to the session, and only then
 * deletes up to the last id handed over, so a connection or server dying
 * half-way loses nothing (the rest is delivered at the next login).
 *
 * The XEP-0013 node of a message is its id in decimal.
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_OFFLINE     "http://jabber.org/protocol/offline"
#define NS_DELAY       "urn:xmpp:delay"
#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_DATA        "jabber:x:data"
#define NS_CHATSTATES  "http://jabber.org/protocol/chatstates"
#define NS_HINTS       "urn:xmpp:hints"

/* Messages per SELECT while flooding a session: bounds memory per login. */
#define OFFLINE_BATCH 100
/* More nodes than this in one XEP-0013 request is a bad request. */
#define OFFLINE_MAX_NODES 1000

/* Columns: id, stanza, stamp (XEP-0082 UTC), sender. */
#define OFFLINE_COLUMNS                                                                            \
	"id, stanza, "                                                                             \
	"to_char(stored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), sender "

/* One statement, so the quota check and the insert see the same snapshot
 * per sender stream; the account must exist (no row for strangers). */
static const char SQL_STORE[] =
        "INSERT INTO offline_message (host, username, sender, stanza, size) "
        "SELECT a.host, a.username, $3, $4, $5::integer FROM accounts a "
        "WHERE a.host = $1 AND a.username = $2 "
        "AND (SELECT count(*) FROM offline_message o "
        "     WHERE o.host = $1 AND o.username = $2) < $6::bigint "
        "AND ($7::bigint <= 0 OR (SELECT coalesce(sum(o.size), 0) FROM offline_message o "
        "     WHERE o.host = $1 AND o.username = $2) + $5::bigint <= $7::bigint) "
        "RETURNING id";
static const char SQL_BATCH[] = "SELECT " OFFLINE_COLUMNS "FROM offline_message "
                                "WHERE host = $1 AND username = $2 AND id > $3::bigint "
                                "ORDER BY id LIMIT $4::integer";
static const char SQL_DELETE_UPTO[] = "DELETE FROM offline_message "
                                      "WHERE host = $1 AND username = $2 AND id <= $3::bigint";
static const char SQL_SELECT_IDS[] = "SELECT " OFFLINE_COLUMNS "FROM offline_message "
                                     "WHERE host = $1 AND username = $2 "
                                     "AND id = ANY($3::bigint[]) ORDER BY id";
static const char SQL_DELETE_IDS[] = "DELETE FROM offline_message "
                                     "WHERE host = $1 AND username = $2 "
                                     "AND id = ANY($3::bigint[]) RETURNING id";
static const char SQL_PURGE[] = "DELETE FROM offline_message WHERE host = $1 AND username = $2";
static const char SQL_COUNT[] = "SELECT count(*) FROM offline_message "
                                "WHERE host = $1 AND username = $2";
static const char SQL_HEADERS[] = "SELECT id, sender FROM offline_message "
                                  "WHERE host = $1 AND username = $2 ORDER BY id";

/* Module state shared with callbacks still in flight at unload. */
typedef struct {
	gint ref_count;
	GCancellable *cancellable;
	GHashTable *flushing; /* bare JIDs being flooded right now */
} OfflineState;

/* Per-session slot. */
typedef struct {
	gboolean flexible;     /* XEP-0013 used: never flood this session */
	gboolean initial_done; /* session.available has run */
	gboolean dirty;        /* had a negative priority since the last flood */
} OfflineSession;

static OfflineState *
offline_state_ref(OfflineState *state)
{
	g_atomic_int_inc(&state->ref_count);
	return state;
}

static void
offline_state_unref(OfflineState *state)
{
	if (!g_atomic_int_dec_and_test(&state->ref_count))
		return;
	g_object_unref(state->cancellable);
	g_hash_table_unref(state->flushing);
	g_free(state);
}

/* Module data destroy: after unload() the callbacks still in flight see
 * a cancelled operation and touch nothing of the module. */
static void
offline_state_release(gpointer data)
{
	OfflineState *state = data;

	g_cancellable_cancel(state->cancellable);
	offline_state_unref(state);
}

static gboolean
offline_error_is_cancel(const GError *error)
{
	return g_error_matches(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CANCELLED) ||
	       g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

static OfflineSession *
offline_session(MagpieModule *mod, MagpieSession *session)
{
	OfflineSession *os = magpie_session_get_data(session, mod);

	if (os == NULL) {
		os = g_new0(OfflineSession, 1);
		magpie_session_set_data(session, mod, os, g_free);
	}
	return os;
}

/* A stored row as the stanza to hand out: the message with our XEP-0203
 * stamp, and with @node the XEP-0013 <offline><item node/></offline>.
 * NULL when the stored text does not parse (logged). */
static MagpieStanza *
offline_row_stanza(const MagpiePgResult *res, int row, const char *host, gboolean with_node)
{
	const char *id = magpie_pg_result_get(res, row, 0);
	const char *xml = magpie_pg_result_get(res, row, 1);
	const char *stamp = magpie_pg_result_get(res, row, 2);
	g_autoptr(GError) error = NULL;
	MagpieStanza *stanza;
	MagpieElement *root, *delay;

	stanza = magpie_stanza_parse(xml, -1, MAGPIE_NS_CLIENT, &error);
	if (stanza == NULL) {
		g_message("offline message %s cannot be parsed, dropping it: %s", id,
		          error->message);
		return NULL;
	}
	root = magpie_stanza_root(stanza);
	if (with_node) {
		MagpieElement *offline = magpie_element_add_child(root, "offline", NS_OFFLINE);
		MagpieElement *item = magpie_element_add_child(offline, "item", NULL);

		magpie_element_set_attr(item, "node", id);
	}
	/* XEP-0203 §3 / XEP-0160 §4: who delayed it and since when. */
	delay = magpie_element_add_child(root, "delay", NS_DELAY);
	magpie_element_set_attr(delay, "from", host);
	magpie_element_set_attr(delay, "stamp", stamp);
	magpie_element_add_text(delay, "Offline Storage", -1);
	return stanza;
}

/* Storing */

static gboolean
offline_should_drop(MagpieStanza *stanza)
{
	MagpieElement *root = magpie_stanza_root(stanza);
	gboolean has_body = magpie_stanza_find_child(stanza, "body", MAGPIE_NS_CLIENT) != NULL;
	gboolean has_state = FALSE;

	if (has_body)
		return FALSE;
	/* XEP-0085 §5.6: chat state notifications alone are not stored. */
	for (MagpieElement *c = magpie_element_first_child(root); c != NULL;
	     c = magpie_element_next_sibling(c)) {
		if (g_strcmp0(magpie_element_ns(c), NS_CHATSTATES) == 0)
			has_state = TRUE;
	}
	return has_state;
}

typedef struct {
	OfflineState *state;
	MagpieModule *mod; /* valid while state->cancellable is not cancelled */
	MagpieStanzaEvent *ev;
} OfflineStore;

static void
offline_store_free(OfflineStore *store)
{
	offline_state_unref(store->state);
	magpie_event_unref(store->ev);
	g_free(store);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(OfflineStore, offline_store_free)

static void offline_flush_start(MagpieModule *mod, MagpieSession *session);
static gboolean offline_session_wants_messages(MagpieSession *session);

/* A resource may have come online (or to a non-negative priority) while
 * the INSERT was under way, after its flood had already read the table:
 * hand it what was just stored rather than keep it until the next login. */
static void
offline_flush_late(MagpieModule *mod, MagpieJid *to)
{
	g_autoptr(MagpieJid) bare = magpie_jid_bare(to);
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(bare);

	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *session = sessions->pdata[i];
		OfflineSession *os = magpie_session_get_data(session, mod);

		if (os != NULL && os->initial_done && !os->flexible &&
		    offline_session_wants_messages(session)) {
			offline_flush_start(mod, session);
			return;
		}
	}
}

static void
offline_store_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(OfflineStore) store = user_data;
	MagpieStanzaEvent *ev = store->ev;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (res == NULL) {
		if (!offline_error_is_cancel(error))
			g_message("cannot store an offline message for %s: %s",
			          magpie_jid_bare_string(magpie_event_to(ev)), error->message);
		/* Not stored: the sender gets service-unavailable. */
		magpie_hook_resume(ev, MAGPIE_HOOK_CONTINUE);
		return;
	}
	if (magpie_pg_result_rows(res) != 1) {
		g_info("offline message for %s refused (no such account or storage full)",
		       magpie_jid_bare_string(magpie_event_to(ev)));
		magpie_hook_resume(ev, MAGPIE_HOOK_CONTINUE);
		return;
	}
	magpie_hook_resume(ev, MAGPIE_HOOK_STOP);
	if (!g_cancellable_is_cancelled(store->state->cancellable))
		offline_flush_late(store->mod, magpie_event_to(ev));
}

static MagpieHookResult
offline_store(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	OfflineState *state = magpie_module_get_data(mod);
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *to = magpie_event_to(ev);
	const char *type = magpie_stanza_get_attr(stanza, "type");
	const char *sender = magpie_stanza_get_attr(stanza, "from");
	g_autoptr(GString) xml = g_string_new(NULL);
	g_autofree char *size = NULL, *max_messages = NULL, *max_bytes = NULL;

	/* XEP-0160 §3: only normal and chat; groupchat, headline and errors
	 * never reach offline storage. */
	if (g_strcmp0(magpie_stanza_name(stanza), "message") != 0 ||
	    (type != NULL && strcmp(type, "chat") != 0 && strcmp(type, "normal") != 0))
		return MAGPIE_HOOK_CONTINUE;
	if (to == NULL || magpie_jid_node(to) == NULL ||
	    !magpie_config_is_local_host(magpie_jid_domain(to)))
		return MAGPIE_HOOK_CONTINUE;
	if (offline_should_drop(stanza))
		return MAGPIE_HOOK_STOP;
	/* XEP-0334: the sender asked us not to store it. */
	if (magpie_stanza_find_child(stanza, "no-store", NS_HINTS) != NULL ||
	    magpie_stanza_find_child(stanza, "no-permanent-store", NS_HINTS) != NULL)
		return MAGPIE_HOOK_CONTINUE;
	if (sender == NULL && magpie_event_from(ev) != NULL)
		sender = magpie_jid_string(magpie_event_from(ev));
	if (sender == NULL)
		return MAGPIE_HOOK_CONTINUE;

	magpie_stanza_serialize(stanza, MAGPIE_NS_CLIENT, xml);
	size = g_strdup_printf("%" G_GSIZE_FORMAT, xml->len);
	max_messages =
	        g_strdup_printf("%" G_GINT64_FORMAT, magpie_module_config_int(mod, "max-messages"));
	max_bytes =
	        g_strdup_printf("%" G_GINT64_FORMAT, magpie_module_config_int(mod, "max-bytes"));

	const char *params[] = {
		magpie_jid_domain(to), magpie_jid_node(to), sender, xml->str, size,
		max_messages,          max_bytes,
	};
	OfflineStore *store = g_new0(OfflineStore, 1);

	store->state = offline_state_ref(state);
	store->mod = mod;
	store->ev = magpie_event_ref(ev);
	magpie_pg_query_async(SQL_STORE, G_N_ELEMENTS(params), params, state->cancellable,
	                      offline_store_done, store);
	return MAGPIE_HOOK_PENDING;
}

/* Flooding a session at login (XEP-0160 §4) */

typedef struct {
	OfflineState *state;
	MagpieSession *session;
	char *host;
	char *username;
	char *bare;
	gint64 last_id; /* the last id handed to the session */
	gboolean more;  /* the last batch was full */
	gboolean again; /* something was stored meanwhile: look once more */
} OfflineFlush;

static void
offline_flush_free(OfflineFlush *flush)
{
	g_hash_table_remove(flush->state->flushing, flush->bare);
	offline_state_unref(flush->state);
	magpie_session_unref(flush->session);
	g_free(flush->host);
	g_free(flush->username);
	g_free(flush->bare);
	g_free(flush);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(OfflineFlush, offline_flush_free)

static gboolean
offline_session_wants_messages(MagpieSession *session)
{
	return magpie_session_is_alive(session) && magpie_session_is_available(session) &&
	       magpie_session_priority(session) >= 0;
}

static void offline_flush_next(OfflineFlush *flush);

/* After a batch: the next one, or done. Consumes @flush. */
static void
offline_flush_continue(OfflineFlush *flush)
{
	if ((flush->more || flush->again) && offline_session_wants_messages(flush->session)) {
		flush->again = FALSE;
		offline_flush_next(flush);
		return;
	}
	offline_flush_free(flush);
}

static void
offline_flush_deleted(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(OfflineFlush) flush = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (res == NULL) {
		/* Delivered but still stored: they come again at the next
		 * login (at-least-once rather than lost). */
		if (!offline_error_is_cancel(error))
			g_message("cannot delete delivered offline messages of %s: %s", flush->bare,
			          error->message);
		return;
	}
	offline_flush_continue(g_steal_pointer(&flush));
}

static void
offline_flush_selected(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(OfflineFlush) flush = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	gint64 before = flush->last_id;
	int rows;

	if (res == NULL) {
		if (!offline_error_is_cancel(error))
			g_message("cannot read offline messages of %s: %s", flush->bare,
			          error->message);
		return;
	}
	rows = magpie_pg_result_rows(res);
	flush->more = rows >= OFFLINE_BATCH;
	for (int i = 0; i < rows; i++) {
		g_autoptr(MagpieStanza) stanza = NULL;

		if (!offline_session_wants_messages(flush->session)) {
			flush->more = FALSE;
			break;
		}
		stanza = offline_row_stanza(res, i, flush->host, FALSE);
		if (stanza != NULL)
			magpie_session_send(flush->session, stanza);
		flush->last_id = g_ascii_strtoll(magpie_pg_result_get(res, i, 0), NULL, 10);
	}
	if (flush->last_id == before) {
		offline_flush_continue(g_steal_pointer(&flush));
		return;
	}

	g_autofree char *upto = g_strdup_printf("%" G_GINT64_FORMAT, flush->last_id);
	const char *params[] = { flush->host, flush->username, upto };
	OfflineFlush *f = g_steal_pointer(&flush);

	magpie_pg_query_async(SQL_DELETE_UPTO, G_N_ELEMENTS(params), params, f->state->cancellable,
	                      offline_flush_deleted, f);
}

static void
offline_flush_next(OfflineFlush *flush)
{
	g_autofree char *after = g_strdup_printf("%" G_GINT64_FORMAT, flush->last_id);
	g_autofree char *limit = g_strdup_printf("%d", OFFLINE_BATCH);
	const char *params[] = { flush->host, flush->username, after, limit };

	magpie_pg_query_async(SQL_BATCH, G_N_ELEMENTS(params), params, flush->state->cancellable,
	                      offline_flush_selected, flush);
}

static void
offline_flush_start(MagpieModule *mod, MagpieSession *session)
{
	OfflineState *state = magpie_module_get_data(mod);
	MagpieJid *jid = magpie_session_jid(session);
	OfflineFlush *flush;

	if (jid == NULL || magpie_jid_node(jid) == NULL)
		return;
	/* The account is being flooded right now (maybe another resource):
	 * that flood looks again when it is done, so each message goes out
	 * once (RFC 6121 §8.5.2.1.1). */
	flush = g_hash_table_lookup(state->flushing, magpie_jid_bare_string(jid));
	if (flush != NULL) {
		flush->again = TRUE;
		return;
	}

	flush = g_new0(OfflineFlush, 1);
	flush->state = offline_state_ref(state);
	flush->session = magpie_session_ref(session);
	flush->host = g_strdup(magpie_jid_domain(jid));
	flush->username = g_strdup(magpie_jid_node(jid));
	flush->bare = g_strdup(magpie_jid_bare_string(jid));
	g_hash_table_insert(state->flushing, g_strdup(flush->bare), flush);
	offline_flush_next(flush);
}

/* session.available: initial presence. */
static MagpieHookResult
offline_session_available(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);
	OfflineSession *os;

	if (session == NULL)
		return MAGPIE_HOOK_CONTINUE;
	os = offline_session(mod, session);
	os->initial_done = TRUE;
	if (magpie_session_priority(session) < 0) {
		/* RFC 6121 §8.5.2.1.1: not for negative priorities; later. */
		os->dirty = TRUE;
		return MAGPIE_HOOK_CONTINUE;
	}
	if (!os->flexible && offline_session_wants_messages(session))
		offline_flush_start(mod, session);
	return MAGPIE_HOOK_CONTINUE;
}

/* presence.broadcast: a presence update from negative to non-negative
 * priority gets what was stored meanwhile. */
static MagpieHookResult
offline_presence_update(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);
	OfflineSession *os;

	if (session == NULL || !magpie_session_is_available(session))
		return MAGPIE_HOOK_CONTINUE;
	os = offline_session(mod, session);
	if (magpie_session_priority(session) < 0) {
		os->dirty = TRUE;
		return MAGPIE_HOOK_CONTINUE;
	}
	/* The initial presence is session.available's. */
	if (!os->initial_done || !os->dirty || os->flexible)
		return MAGPIE_HOOK_CONTINUE;
	os->dirty = FALSE;
	offline_flush_start(mod, session);
	return MAGPIE_HOOK_CONTINUE;
}

/* XEP-0013 */

/* May @from look at the offline storage @to names? Only its own: its bare
 * JID, no address, or its own host. */
static gboolean
offline_is_own_storage(MagpieJid *from, MagpieJid *to)
{
	if (from == NULL || magpie_jid_node(from) == NULL ||
	    !magpie_config_is_local_host(magpie_jid_domain(from)))
		return FALSE;
	if (to == NULL)
		return TRUE;
	if (magpie_jid_resource(to) != NULL)
		return FALSE;
	if (magpie_jid_node(to) == NULL)
		return g_strcmp0(magpie_jid_domain(to), magpie_jid_domain(from)) == 0;
	return magpie_jid_bare_equal(from, to);
}

/* A node as we hand them out: a positive decimal id without leading
 * zeros, so that the same message cannot be named twice. */
static gboolean
offline_node_is_valid(const char *node)
{
	size_t len;

	if (node == NULL)
		return FALSE;
	len = strlen(node);
	if (len == 0 || len > 18 || node[0] == '0')
		return FALSE;
	for (size_t i = 0; i < len; i++) {
		if (!g_ascii_isdigit(node[i]))
			return FALSE;
	}
	return TRUE;
}

typedef enum {
	OFFLINE_OP_VIEW,
	OFFLINE_OP_REMOVE,
	OFFLINE_OP_FETCH,
	OFFLINE_OP_PURGE,
} OfflineOp;

typedef struct {
	OfflineState *state;
	MagpieIqRequest *req;
	OfflineOp op;
	guint n_nodes; /* distinct nodes named (view, remove) */
	char *host;
} OfflineIq;

static void
offline_iq_free(OfflineIq *oiq)
{
	offline_state_unref(oiq->state);
	magpie_iq_request_unref(oiq->req);
	g_free(oiq->host);
	g_free(oiq);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(OfflineIq, offline_iq_free)

static void
offline_iq_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(OfflineIq) oiq = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	MagpieSession *session = magpie_iq_request_session(oiq->req);
	int rows;

	if (res == NULL) {
		if (!offline_error_is_cancel(error))
			g_message("offline storage request failed: %s", error->message);
		magpie_iq_reply_error(oiq->req, "wait", "internal-server-error", NULL);
		return;
	}
	rows = magpie_pg_result_rows(res);
	switch (oiq->op) {
	case OFFLINE_OP_VIEW:
		/* XEP-0013 §2.4: an unknown node is item-not-found. */
		if ((guint) rows != oiq->n_nodes) {
			magpie_iq_reply_error(oiq->req, "cancel", "item-not-found", NULL);
			return;
		}
		G_GNUC_FALLTHROUGH;
	case OFFLINE_OP_FETCH:
		/* The messages first, then the result (XEP-0013 §2.4, §2.6):
		 * both go out on the requesting session's queue in order. */
		for (int i = 0; i < rows; i++) {
			g_autoptr(MagpieStanza) stanza =
			        offline_row_stanza(res, i, oiq->host, TRUE);

			if (stanza != NULL && session != NULL)
				magpie_session_send(session, stanza);
		}
		break;
	case OFFLINE_OP_REMOVE:
		if ((guint) rows != oiq->n_nodes) {
			magpie_iq_reply_error(oiq->req, "cancel", "item-not-found", NULL);
			return;
		}
		break;
	case OFFLINE_OP_PURGE:
		break;
	}
	magpie_iq_reply(oiq->req, NULL);
}

static void
offline_mark_flexible(MagpieModule *mod, MagpieSession *session)
{
	if (session != NULL && magpie_session_jid(session) != NULL)
		offline_session(mod, session)->flexible = TRUE;
}

static void
offline_handle_iq(MagpieModule *mod, MagpieIqRequest *req)
{
	OfflineState *state = magpie_module_get_data(mod);
	MagpieJid *from = magpie_iq_request_from(req);
	MagpieElement *payload = magpie_iq_request_payload(req);
	MagpieIqType type = magpie_iq_request_type(req);
	gboolean fetch = FALSE, purge = FALSE;
	g_autoptr(GHashTable) nodes = g_hash_table_new(g_str_hash, g_str_equal);
	g_autoptr(GString) array = g_string_new("{");
	const char *want_action = type == MAGPIE_IQ_GET ? "view" : "remove";
	OfflineIq *oiq;
	const char *sql;

	if (!offline_is_own_storage(from, magpie_iq_request_to(req)) ||
	    magpie_iq_request_session(req) == NULL) {
		magpie_iq_reply_error(req, "auth", "forbidden", NULL);
		return;
	}
	offline_mark_flexible(mod, magpie_iq_request_session(req));

	for (MagpieElement *c = magpie_element_first_child(payload); c != NULL;
	     c = magpie_element_next_sibling(c)) {
		const char *name = magpie_element_name(c);
		const char *node = magpie_element_get_attr(c, "node");

		if (g_strcmp0(magpie_element_ns(c), NS_OFFLINE) != 0)
			continue;
		if (strcmp(name, "fetch") == 0) {
			fetch = TRUE;
		} else if (strcmp(name, "purge") == 0) {
			purge = TRUE;
		} else if (strcmp(name, "item") == 0) {
			if (g_strcmp0(magpie_element_get_attr(c, "action"), want_action) != 0) {
				magpie_iq_reply_error(
				        req, "modify", "bad-request",
				        "Use action='view' with get, 'remove' with set");
				return;
			}
			if (!offline_node_is_valid(node)) {
				magpie_iq_reply_error(req, "cancel", "item-not-found", NULL);
				return;
			}
			if (g_hash_table_size(nodes) >= OFFLINE_MAX_NODES) {
				magpie_iq_reply_error(req, "modify", "not-acceptable",
				                      "Too many items in one request");
				return;
			}
			if (g_hash_table_add(nodes, (gpointer) node)) {
				if (array->len > 1)
					g_string_append_c(array, ',');
				g_string_append(array, node);
			}
		}
	}
	g_string_append_c(array, '}');

	oiq = g_new0(OfflineIq, 1);
	oiq->n_nodes = g_hash_table_size(nodes);
	if (type == MAGPIE_IQ_GET && fetch && !purge && oiq->n_nodes == 0) {
		oiq->op = OFFLINE_OP_FETCH;
		sql = "SELECT " OFFLINE_COLUMNS "FROM offline_message "
		      "WHERE host = $1 AND username = $2 ORDER BY id";
	} else if (type == MAGPIE_IQ_SET && purge && !fetch && oiq->n_nodes == 0) {
		oiq->op = OFFLINE_OP_PURGE;
		sql = SQL_PURGE;
	} else if (type == MAGPIE_IQ_GET && !fetch && !purge && oiq->n_nodes > 0) {
		oiq->op = OFFLINE_OP_VIEW;
		sql = SQL_SELECT_IDS;
	} else if (type == MAGPIE_IQ_SET && !fetch && !purge && oiq->n_nodes > 0) {
		oiq->op = OFFLINE_OP_REMOVE;
		sql = SQL_DELETE_IDS;
	} else {
		g_free(oiq);
		magpie_iq_reply_error(req, "modify", "bad-request", NULL);
		return;
	}
	oiq->state = offline_state_ref(state);
	oiq->req = magpie_iq_request_ref(req);
	oiq->host = g_strdup(magpie_jid_domain(from));

	const char *params[] = { magpie_jid_domain(from), magpie_jid_node(from), array->str };
	guint n_params = (oiq->op == OFFLINE_OP_VIEW || oiq->op == OFFLINE_OP_REMOVE) ? 3 : 2;

	magpie_pg_query_async(sql, n_params, params, state->cancellable, offline_iq_done, oiq);
}

/* disco#info / disco#items on the node http://jabber.org/protocol/offline
 * (XEP-0013 §2.2, §2.3). The disco module owns disco queries and knows no
 * nodes, so these are answered here, on iq.pre, before it sees them. */

typedef struct {
	OfflineState *state;
	MagpieStanzaEvent *ev;
	gboolean items;
} OfflineDisco;

static void
offline_disco_free(OfflineDisco *od)
{
	offline_state_unref(od->state);
	magpie_event_unref(od->ev);
	g_free(od);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(OfflineDisco, offline_disco_free)

static void
offline_disco_field(MagpieElement *x, const char *var, const char *type, const char *value)
{
	MagpieElement *field = magpie_element_add_child(x, "field", NULL);

	magpie_element_set_attr(field, "var", var);
	if (type != NULL)
		magpie_element_set_attr(field, "type", type);
	magpie_element_add_text(magpie_element_add_child(field, "value", NULL), value, -1);
}

static void
offline_disco_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(OfflineDisco) od = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	MagpieStanza *iq = magpie_event_stanza(od->ev);
	MagpieJid *from = magpie_event_from(od->ev);
	MagpieJid *to = magpie_event_to(od->ev);
	g_autoptr(MagpieStanza) reply = NULL;

	if (res == NULL) {
		if (!offline_error_is_cancel(error))
			g_message("offline storage disco failed: %s", error->message);
		reply = magpie_stanza_error_new(iq, "wait", "internal-server-error", NULL);
	} else {
		MagpieElement *query;
		const char *id = magpie_stanza_get_attr(iq, "id");

		reply = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
		magpie_stanza_set_attr(reply, "type", "result");
		if (id != NULL)
			magpie_stanza_set_attr(reply, "id", id);
		query = magpie_element_add_child(magpie_stanza_root(reply), "query",
		                                 od->items ? NS_DISCO_ITEMS : NS_DISCO_INFO);
		magpie_element_set_attr(query, "node", NS_OFFLINE);
		if (od->items) {
			g_autoptr(MagpieJid) bare = magpie_jid_bare(from);

			for (int i = 0; i < magpie_pg_result_rows(res); i++) {
				MagpieElement *item = magpie_element_add_child(query, "item", NULL);

				magpie_element_set_attr(item, "jid", magpie_jid_string(bare));
				magpie_element_set_attr(item, "node",
				                        magpie_pg_result_get(res, i, 0));
				magpie_element_set_attr(item, "name",
				                        magpie_pg_result_get(res, i, 1));
			}
		} else {
			MagpieElement *identity = magpie_element_add_child(query, "identity", NULL);
			MagpieElement *feature = magpie_element_add_child(query, "feature", NULL);
			MagpieElement *x = magpie_element_add_child(query, "x", NS_DATA);

			magpie_element_set_attr(identity, "category", "automation");
			magpie_element_set_attr(identity, "type", "message-list");
			magpie_element_set_attr(feature, "var", NS_OFFLINE);
			magpie_element_set_attr(x, "type", "result");
			offline_disco_field(x, "FORM_TYPE", "hidden", NS_OFFLINE);
			offline_disco_field(x, "number_of_messages", NULL,
			                    magpie_pg_result_get(res, 0, 0));
		}
	}
	if (reply != NULL) {
		magpie_stanza_set_attr(reply, "to", magpie_jid_string(from));
		magpie_route(reply, to);
	}
	magpie_hook_resume(od->ev, MAGPIE_HOOK_STOP);
}

static MagpieHookResult
offline_iq_pre(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	OfflineState *state = magpie_module_get_data(mod);
	MagpieStanza *iq = magpie_event_stanza(ev);
	MagpieElement *root = magpie_stanza_root(iq);
	MagpieJid *from = magpie_event_from(ev);
	MagpieElement *payload;
	const char *ns;
	gboolean items;
	OfflineDisco *od;

	if (g_strcmp0(magpie_stanza_get_attr(iq, "type"), "get") != 0 ||
	    magpie_element_count_children(root) != 1)
		return MAGPIE_HOOK_CONTINUE;
	payload = magpie_element_first_child(root);
	ns = magpie_element_ns(payload);
	if (g_strcmp0(magpie_element_name(payload), "query") != 0 ||
	    g_strcmp0(magpie_element_get_attr(payload, "node"), NS_OFFLINE) != 0)
		return MAGPIE_HOOK_CONTINUE;
	if (g_strcmp0(ns, NS_DISCO_INFO) == 0)
		items = FALSE;
	else if (g_strcmp0(ns, NS_DISCO_ITEMS) == 0)
		items = TRUE;
	else
		return MAGPIE_HOOK_CONTINUE;
	/* Someone else's storage: the disco module says item-not-found. */
	if (!offline_is_own_storage(from, magpie_event_to(ev)))
		return MAGPIE_HOOK_CONTINUE;
	offline_mark_flexible(mod, magpie_event_session(ev));

	od = g_new0(OfflineDisco, 1);
	od->state = offline_state_ref(state);
	od->ev = magpie_event_ref(ev);
	od->items = items;

	const char *params[] = { magpie_jid_domain(from), magpie_jid_node(from) };

	magpie_pg_query_async(items ? SQL_HEADERS : SQL_COUNT, G_N_ELEMENTS(params), params,
	                      state->cancellable, offline_disco_done, od);
	return MAGPIE_HOOK_PENDING;
}

/* Module */

static gboolean
offline_load(MagpieModule *mod, GError **error)
{
	OfflineState *state = g_new0(OfflineState, 1);

	state->ref_count = 1;
	state->cancellable = g_cancellable_new();
	state->flushing = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	magpie_module_set_data(mod, state, offline_state_release);
	return TRUE;
}

static const MagpieHookSpec offline_hooks[] = {
	{ MAGPIE_EVENT_MESSAGE_OFFLINE, offline_store, MAGPIE_PRIORITY_FALLBACK },
	{ MAGPIE_EVENT_SESSION_AVAILABLE, offline_session_available, MAGPIE_PRIORITY_DEFAULT },
	{ MAGPIE_EVENT_PRESENCE_BROADCAST, offline_presence_update, MAGPIE_PRIORITY_EARLY },
	{ MAGPIE_EVENT_IQ_PRE, offline_iq_pre, MAGPIE_PRIORITY_EARLY },
	{ NULL },
};

static const MagpieIqSpec offline_iqs[] = {
	{ NS_OFFLINE, "offline", MAGPIE_IQ_GET | MAGPIE_IQ_SET, offline_handle_iq, FALSE },
	{ NULL },
};

static const MagpieConfigKey offline_config[] = {
	{ "max-messages", MAGPIE_CONFIG_INT, "500", 0, 100000,
	  "Stored messages per account; more bounce with service-unavailable" },
	{ "max-bytes", MAGPIE_CONFIG_SIZE, "0", 0, G_GINT64_CONSTANT(1) << 40,
	  "Stored bytes per account (0 = no limit); more bounce with service-unavailable" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_offline = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "offline",
	.description = "Offline messages (XEP-0160, XEP-0203, XEP-0013)",
	.hooks = offline_hooks,
	.iqs = offline_iqs,
	.config = offline_config,
	.disco_features = (const char *const[]){ "msgoffline", NS_OFFLINE, NULL },
	.load = offline_load,
};
