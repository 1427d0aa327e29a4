/* Presence (RFC 6121 §3, §4, Appendix A): the subscription state machine,
 * presence broadcast to subscribers, probes, directed presence.
 *
 * The subscription states live in the roster module's table; the state
 * transitions of Appendix A are the roster's SQL functions
 * magpie_roster_subscription_out() and _in(), each one atomic statement,
 * so concurrent stanzas for one roster item cannot lose an update. The
 * roster module pushes the resulting items to the user's resources.
 *
 * For users with a session, the contacts' subscription states are cached
 * here (loaded at the first presence broadcast, kept up to date from our
 * own transitions and from "roster.changed"), so that broadcasting a
 * presence and answering a probe never wait for the database.
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define EVENT_ROSTER_CHANGED "roster.changed"

enum {
	SUB_TO = 1 << 0,
	SUB_FROM = 1 << 1,
};

/* A contact with a subscription, and its address parsed once for the
 * broadcasts. */
typedef struct {
	int flags;      /* SUB_* */
	MagpieJid *jid; /* NULL if the stored address does not parse */
} Contact;

typedef struct {
	GHashTable *contacts; /* bare JID string -> Contact * */
	gboolean loaded;
	gboolean loading;
	gboolean reload;    /* a change arrived while loading */
	GPtrArray *waiting; /* BroadcastWait *, events parked until loaded */
} UserCache;

typedef struct {
	MagpieModule *mod;
	GHashTable *users; /* owner bare JID string -> UserCache * */
	gint max_items;
	gboolean unloading;
} PresenceData;

/* Per session: directed presence recipients (RFC 6121 §4.6). */
typedef struct {
	GHashTable *directed; /* JID string set */
} PresenceSession;

typedef struct {
	MagpieStanzaEvent *ev;
	GHashTable *directed; /* stolen from the session when unavailable */
} BroadcastWait;

static int
sub_flags(const char *subscription)
{
	if (!subscription)
		return 0;
	if (g_str_equal(subscription, "both"))
		return SUB_TO | SUB_FROM;
	if (g_str_equal(subscription, "to"))
		return SUB_TO;
	if (g_str_equal(subscription, "from"))
		return SUB_FROM;
	return 0;
}

static void
contact_free(gpointer data)
{
	Contact *c = data;

	if (c->jid)
		magpie_jid_unref(c->jid);
	g_free(c);
}

static void
contacts_set(GHashTable *contacts, const char *contact, int flags)
{
	Contact *c = g_new(Contact, 1);

	c->flags = flags;
	c->jid = magpie_jid_parse(contact, NULL);
	g_hash_table_insert(contacts, g_strdup(contact), c);
}

static int
contact_flags(GHashTable *contacts, const char *contact)
{
	Contact *c = g_hash_table_lookup(contacts, contact);

	return c ? c->flags : 0;
}

static void
broadcast_wait_free(gpointer data)
{
	BroadcastWait *wait = data;

	if (wait->ev)
		magpie_event_unref(wait->ev);
	if (wait->directed)
		g_hash_table_unref(wait->directed);
	g_free(wait);
}

static void
user_cache_free(gpointer data)
{
	UserCache *cache = data;

	g_hash_table_unref(cache->contacts);
	g_ptr_array_unref(cache->waiting);
	g_free(cache);
}

static void
presence_session_free(gpointer data)
{
	PresenceSession *ps = data;

	if (ps->directed)
		g_hash_table_unref(ps->directed);
	g_free(ps);
}

static PresenceData *
presence_data(MagpieModule *mod)
{
	return magpie_module_get_data(mod);
}

static UserCache *
cache_lookup(MagpieModule *mod, MagpieJid *owner)
{
	PresenceData *pd = presence_data(mod);

	return pd ? g_hash_table_lookup(pd->users, magpie_jid_bare_string(owner)) : NULL;
}

static void
cache_set(MagpieModule *mod, MagpieJid *owner, const char *contact, const char *subscription)
{
	UserCache *cache = cache_lookup(mod, owner);

	if (!cache)
		return;
	if (cache->loading)
		cache->reload = TRUE;
	int flags = sub_flags(subscription);
	if (flags)
		contacts_set(cache->contacts, contact, flags);
	else
		g_hash_table_remove(cache->contacts, contact);
}

/* Sending. */

/* Route a bodiless presence of @type (NULL = available) from @from to @to. */
static void
send_presence_type(const char *type, MagpieJid *from, const char *to)
{
	g_autoptr(MagpieStanza) p = magpie_stanza_new("presence", MAGPIE_NS_CLIENT);

	if (type)
		magpie_stanza_set_attr(p, "type", type);
	magpie_stanza_set_attr(p, "to", to);
	magpie_route(p, from);
}

/* The user's current presence, from each available resource, to @to
 * (RFC 6121 §3.1.5 after an approval, §4.3.2 for a probe). */
static void
send_current_presence(MagpieJid *owner, const char *to)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(owner);

	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *session = sessions->pdata[i];
		MagpieStanza *last = magpie_session_presence(session);

		if (!magpie_session_is_available(session) || !last || !magpie_session_jid(session))
			continue;
		g_autoptr(MagpieStanza) copy = magpie_stanza_copy(last);
		magpie_stanza_set_attr(copy, "to", to);
		magpie_route(copy, magpie_session_jid(session));
	}
}

/* Unavailable from each available resource (RFC 6121 §3.2.2, §3.3.3: the
 * contact lost its subscription to the user). */
static void
send_unavailable_from_resources(MagpieJid *owner, const char *to)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(owner);

	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *session = sessions->pdata[i];

		if (!magpie_session_is_available(session) || !magpie_session_jid(session))
			continue;
		send_presence_type("unavailable", magpie_session_jid(session), to);
	}
}

static gboolean
has_available(MagpieJid *owner)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(owner);

	for (guint i = 0; i < sessions->len; i++) {
		if (magpie_session_is_available(sessions->pdata[i]))
			return TRUE;
	}
	return FALSE;
}

static void
deliver_to_available(MagpieJid *owner, MagpieStanza *stanza)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(owner);

	for (guint i = 0; i < sessions->len; i++) {
		if (magpie_session_is_available(sessions->pdata[i]))
			magpie_session_send(sessions->pdata[i], stanza);
	}
}

/* What a subscription change means for presence, whoever made it:
 * the contact gaining or losing 'from' gets our presence or unavailable. */
static void
apply_from_change(MagpieJid *owner, const char *contact, int old_flags, int new_flags)
{
	if (g_str_equal(contact, magpie_jid_bare_string(owner)))
		return;
	if (!(old_flags & SUB_FROM) && (new_flags & SUB_FROM))
		send_current_presence(owner, contact);
	else if ((old_flags & SUB_FROM) && !(new_flags & SUB_FROM))
		send_unavailable_from_resources(owner, contact);
}

/* Outbound subscription stanzas (RFC 6121 §3, Appendix A.2). */

typedef struct {
	MagpieModule *mod;
	MagpieStanzaEvent *ev;
	MagpieJid *owner;   /* bare */
	MagpieJid *contact; /* bare */
	char *type;
} SubCall;

static void
sub_call_free(SubCall *call)
{
	magpie_event_unref(call->ev);
	magpie_jid_unref(call->owner);
	magpie_jid_unref(call->contact);
	g_free(call->type);
	g_free(call);
}

static void
out_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	SubCall *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (!res || magpie_pg_result_rows(res) != 1) {
		g_message("presence: outbound %s from %s: %s", call->type,
		          magpie_jid_string(call->owner), error ? error->message : "no row");
		magpie_stanza_reply_error(magpie_event_stanza(call->ev), "wait",
		                          "internal-server-error", NULL);
		magpie_hook_resume(call->ev, MAGPIE_HOOK_STOP);
		sub_call_free(call);
		return;
	}
	gboolean route = magpie_pg_result_get(res, 0, 0)[0] == 't';
	const char *old_sub = magpie_pg_result_get(res, 0, 1);
	const char *new_sub = magpie_pg_result_get(res, 0, 2);
	const char *contact = magpie_jid_string(call->contact);

	cache_set(call->mod, call->owner, contact, new_sub);
	/* Resume first: the stanza is routed before the presence that follows
	 * it (approval: our presence; cancellation: unavailable). */
	magpie_hook_resume(call->ev, route ? MAGPIE_HOOK_CONTINUE : MAGPIE_HOOK_STOP);
	apply_from_change(call->owner, contact, sub_flags(old_sub), sub_flags(new_sub));
	sub_call_free(call);
}

static MagpieHookResult
presence_out(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	const char *type = magpie_stanza_get_attr(stanza, "type");
	MagpieJid *from = magpie_event_from(ev);
	MagpieJid *to = magpie_event_to(ev);

	if (!type || g_str_equal(type, "probe") || !from || !to || !magpie_jid_node(from))
		return MAGPIE_HOOK_CONTINUE;

	SubCall *call = g_new0(SubCall, 1);
	call->mod = mod;
	call->ev = magpie_event_ref(ev);
	call->owner = magpie_jid_bare(from);
	call->contact = magpie_jid_bare(to);
	call->type = g_strdup(type);
	/* §3.1.2: stamped with bare JIDs both ways. */
	magpie_stanza_set_attr(stanza, "to", magpie_jid_string(call->contact));
	magpie_stanza_set_attr(stanza, "from", magpie_jid_string(call->owner));

	const char *params[] = { magpie_jid_domain(call->owner), magpie_jid_node(call->owner),
		                 magpie_jid_string(call->contact), type };
	magpie_pg_query_async("SELECT route::text, old_sub, new_sub FROM "
	                      "magpie_roster_subscription_out($1, $2, $3, $4)",
	                      4, params, NULL, out_done, call);
	return MAGPIE_HOOK_PENDING;
}

/* Inbound subscription stanzas (Appendix A.3) and probes (§4.3). */

static void
in_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	SubCall *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	MagpieStanza *stanza = magpie_event_stanza(call->ev);
	const char *contact = magpie_jid_string(call->contact);

	if (!res || magpie_pg_result_rows(res) != 1) {
		g_message("presence: inbound %s for %s: %s", call->type,
		          magpie_jid_string(call->owner), error ? error->message : "no row");
		magpie_stanza_reply_error(stanza, "wait", "internal-server-error", NULL);
		magpie_hook_resume(call->ev, MAGPIE_HOOK_STOP);
		sub_call_free(call);
		return;
	}
	const char *action = magpie_pg_result_get(res, 0, 0);
	const char *old_sub = magpie_pg_result_get(res, 0, 1);
	const char *new_sub = magpie_pg_result_get(res, 0, 2);

	if (new_sub)
		cache_set(call->mod, call->owner, contact, new_sub);
	if (g_str_equal(action, "deliver")) {
		g_autoptr(MagpieStanza) copy = magpie_stanza_copy(stanza);
		magpie_stanza_set_attr(copy, "from", contact);
		magpie_stanza_set_attr(copy, "to", magpie_jid_string(call->owner));
		deliver_to_available(call->owner, copy);
	} else if (g_str_equal(action, "autoreply")) {
		/* §3.1.3 already subscribed, §3.4 pre-approved. */
		send_presence_type("subscribed", call->owner, contact);
	} else if (g_str_equal(action, "full")) {
		magpie_stanza_reply_error(stanza, "wait", "resource-constraint",
		                          "The contact's roster is full");
	}
	if (old_sub && new_sub)
		apply_from_change(call->owner, contact, sub_flags(old_sub), sub_flags(new_sub));
	magpie_hook_resume(call->ev, MAGPIE_HOOK_STOP);
	sub_call_free(call);
}

static void
probe_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	SubCall *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	const char *reply_to = magpie_stanza_get_attr(magpie_event_stanza(call->ev), "from");

	if (!res) {
		g_message("presence: probe for %s: %s", magpie_jid_string(call->owner),
		          error->message);
	} else if (reply_to) {
		/* Columns: account exists, subscription (NULL: no item). */
		gboolean exists = magpie_pg_result_get(res, 0, 0)[0] == 't';
		int flags = sub_flags(magpie_pg_result_get(res, 0, 1));

		if (!exists || !(flags & SUB_FROM))
			send_presence_type("unsubscribed", call->owner, reply_to);
		else if (has_available(call->owner))
			send_current_presence(call->owner, reply_to);
		else /* §4.3.2: subscribed, no available resource. */
			send_presence_type("unavailable", call->owner, reply_to);
	}
	magpie_hook_resume(call->ev, MAGPIE_HOOK_STOP);
	sub_call_free(call);
}

static MagpieHookResult
presence_probe(MagpieModule *mod, MagpieStanzaEvent *ev, MagpieJid *owner, MagpieJid *contact)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	const char *reply_to = magpie_stanza_get_attr(stanza, "from");
	UserCache *cache = cache_lookup(mod, owner);

	if (!reply_to || magpie_jid_bare_equal(owner, contact))
		return MAGPIE_HOOK_STOP;
	if (cache && cache->loaded && has_available(owner)) {
		int flags = contact_flags(cache->contacts, magpie_jid_string(contact));
		if (flags & SUB_FROM)
			send_current_presence(owner, reply_to);
		else
			send_presence_type("unsubscribed", owner, reply_to);
		return MAGPIE_HOOK_STOP;
	}
	SubCall *call = g_new0(SubCall, 1);
	call->mod = mod;
	call->ev = magpie_event_ref(ev);
	call->owner = magpie_jid_ref(owner);
	call->contact = magpie_jid_ref(contact);
	call->type = g_strdup("probe");
	const char *params[] = { magpie_jid_domain(owner), magpie_jid_node(owner),
		                 magpie_jid_string(contact) };
	magpie_pg_query_async(
	        "SELECT EXISTS (SELECT 1 FROM accounts WHERE host = $1 AND username = $2)::text, "
	        "(SELECT subscription FROM roster_item WHERE host = $1 AND username = $2 "
	        "AND contact = $3)",
	        3, params, NULL, probe_done, call);
	return MAGPIE_HOOK_PENDING;
}

static MagpieHookResult
presence_in(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	PresenceData *pd = presence_data(mod);
	MagpieStanza *stanza = magpie_event_stanza(ev);
	const char *type = magpie_stanza_get_attr(stanza, "type");
	MagpieJid *from = magpie_event_from(ev);
	MagpieJid *to = magpie_event_to(ev);

	if (!type || !from || !to || !magpie_jid_node(to))
		return MAGPIE_HOOK_CONTINUE;
	g_autoptr(MagpieJid) owner = magpie_jid_bare(to);
	g_autoptr(MagpieJid) contact = magpie_jid_bare(from);

	if (g_str_equal(type, "probe"))
		return presence_probe(mod, ev, owner, contact);

	SubCall *call = g_new0(SubCall, 1);
	call->mod = mod;
	call->ev = magpie_event_ref(ev);
	call->owner = g_steal_pointer(&owner);
	call->contact = g_steal_pointer(&contact);
	call->type = g_strdup(type);

	/* The request as it will be redelivered at the next login. */
	g_autofree char *stored = NULL;
	if (g_str_equal(type, "subscribe")) {
		g_autoptr(MagpieStanza) copy = magpie_stanza_copy(stanza);
		magpie_stanza_set_attr(copy, "from", magpie_jid_string(call->contact));
		magpie_stanza_set_attr(copy, "to", magpie_jid_string(call->owner));
		GBytes *bytes = magpie_stanza_to_bytes(copy);
		gsize len;
		const char *data = g_bytes_get_data(bytes, &len);
		stored = g_strndup(data, len);
	}
	g_autofree char *max = g_strdup_printf("%d", pd->max_items);
	const char *params[] = { magpie_jid_domain(call->owner),
		                 magpie_jid_node(call->owner),
		                 magpie_jid_string(call->contact),
		                 type,
		                 stored,
		                 max };
	magpie_pg_query_async("SELECT action, old_sub, new_sub FROM "
	                      "magpie_roster_subscription_in($1, $2, $3, $4, $5, $6::integer)",
	                      6, params, NULL, in_done, call);
	return MAGPIE_HOOK_PENDING;
}

/* Broadcast (RFC 6121 §4.2, §4.4, §4.5). */

static void
broadcast_now(MagpieModule *mod, MagpieStanzaEvent *ev, GHashTable *directed)
{
	MagpieSession *session = magpie_event_session(ev);
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *full = magpie_event_from(ev);

	if (!full)
		return;
	g_autoptr(MagpieJid) owner = magpie_jid_bare(full);
	UserCache *cache = cache_lookup(mod, owner);
	GHashTableIter iter;
	gpointer key, value;

	if (cache) {
		/* References: routing may change the cache (a roster change). */
		g_autoptr(GPtrArray) to = g_ptr_array_new_full(g_hash_table_size(cache->contacts),
		                                               (GDestroyNotify) magpie_jid_unref);
		g_hash_table_iter_init(&iter, cache->contacts);
		while (g_hash_table_iter_next(&iter, &key, &value)) {
			Contact *c = value;
			if (!(c->flags & SUB_FROM) || !c->jid ||
			    g_str_equal(key, magpie_jid_string(owner)))
				continue;
			g_ptr_array_add(to, magpie_jid_ref(c->jid));
		}
		magpie_route_each(stanza, full, (MagpieJid *const *) to->pdata, to->len);
	}
	/* §4.6.3: directed presence recipients that are not subscribers hear
	 * about the unavailability too. */
	if (directed) {
		g_hash_table_iter_init(&iter, directed);
		while (g_hash_table_iter_next(&iter, &key, NULL)) {
			g_autoptr(MagpieJid) target = magpie_jid_parse(key, NULL);
			if (!target)
				continue;
			g_autoptr(MagpieJid) target_bare = magpie_jid_bare(target);
			if (cache &&
			    (contact_flags(cache->contacts, magpie_jid_string(target_bare)) &
			     SUB_FROM))
				continue;
			if (magpie_jid_bare_equal(target, owner))
				continue;
			send_presence_type("unavailable", full, key);
		}
	}
	(void) session;
}

static void cache_load(MagpieModule *mod, MagpieJid *owner, UserCache *cache);

typedef struct {
	MagpieModule *mod;
	MagpieJid *owner;
} LoadCall;

static void
cache_loaded(GObject *source, GAsyncResult *result, gpointer user_data)
{
	LoadCall *call = user_data;
	PresenceData *pd = presence_data(call->mod);
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);
	UserCache *cache =
	        pd ? g_hash_table_lookup(pd->users, magpie_jid_string(call->owner)) : NULL;

	if (cache) {
		cache->loading = FALSE;
		if (!res) {
			g_message("presence: loading the subscriptions of %s: %s",
			          magpie_jid_string(call->owner), error->message);
		} else if (cache->reload) {
			cache_load(call->mod, call->owner, cache);
			magpie_jid_unref(call->owner);
			g_free(call);
			return;
		} else {
			g_hash_table_remove_all(cache->contacts);
			for (int i = 0; i < magpie_pg_result_rows(res); i++) {
				int flags = sub_flags(magpie_pg_result_get(res, i, 1));
				if (flags)
					contacts_set(cache->contacts,
					             magpie_pg_result_get(res, i, 0), flags);
			}
		}
		/* Even after an error: broadcast to what we know rather than
		 * keep the streams waiting. */
		cache->loaded = TRUE;
		g_autoptr(GPtrArray) waiting = g_steal_pointer(&cache->waiting);
		cache->waiting = g_ptr_array_new_with_free_func(broadcast_wait_free);
		for (guint i = 0; i < waiting->len; i++) {
			BroadcastWait *wait = waiting->pdata[i];
			broadcast_now(call->mod, wait->ev, wait->directed);
			magpie_hook_resume(wait->ev, MAGPIE_HOOK_CONTINUE);
		}
	}
	magpie_jid_unref(call->owner);
	g_free(call);
}

static void
cache_load(MagpieModule *mod, MagpieJid *owner, UserCache *cache)
{
	LoadCall *call = g_new0(LoadCall, 1);

	call->mod = mod;
	call->owner = magpie_jid_ref(owner);
	cache->loading = TRUE;
	cache->reload = FALSE;
	const char *params[] = { magpie_jid_domain(owner), magpie_jid_node(owner) };
	magpie_pg_query_async("SELECT contact, subscription FROM roster_item "
	                      "WHERE host = $1 AND username = $2 AND subscription <> 'none'",
	                      2, params, NULL, cache_loaded, call);
}

static UserCache *
cache_ensure(MagpieModule *mod, MagpieJid *owner)
{
	PresenceData *pd = presence_data(mod);
	UserCache *cache = g_hash_table_lookup(pd->users, magpie_jid_bare_string(owner));

	if (cache)
		return cache;
	cache = g_new0(UserCache, 1);
	cache->contacts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, contact_free);
	cache->waiting = g_ptr_array_new_with_free_func(broadcast_wait_free);
	g_hash_table_insert(pd->users, g_strdup(magpie_jid_bare_string(owner)), cache);
	g_autoptr(MagpieJid) bare = magpie_jid_bare(owner);
	cache_load(mod, bare, cache);
	return cache;
}

static MagpieHookResult
presence_broadcast(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *full = magpie_event_from(ev);
	g_autoptr(GHashTable) directed = NULL;

	if (!session || !full)
		return MAGPIE_HOOK_CONTINUE;
	if (g_strcmp0(magpie_stanza_get_attr(stanza, "type"), "unavailable") == 0) {
		PresenceSession *ps = magpie_session_get_data(session, mod);
		if (ps && ps->directed)
			directed = g_steal_pointer(&ps->directed);
	}
	g_autoptr(MagpieJid) owner = magpie_jid_bare(full);
	UserCache *cache = cache_ensure(mod, owner);
	if (cache->loaded) {
		broadcast_now(mod, ev, directed);
		return MAGPIE_HOOK_CONTINUE;
	}
	BroadcastWait *wait = g_new0(BroadcastWait, 1);
	wait->ev = magpie_event_ref(ev);
	wait->directed = g_steal_pointer(&directed);
	g_ptr_array_add(cache->waiting, wait);
	return MAGPIE_HOOK_PENDING;
}

/* Initial presence (§4.2.2): probes to the contacts we are subscribed to,
 * and the subscription requests still waiting for an answer (§3.1.3). */

typedef struct {
	MagpieSession *session;
	MagpieJid *owner;
} PendingCall;

static void
pending_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	PendingCall *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	if (!res) {
		g_message("presence: pending requests of %s: %s", magpie_jid_string(call->owner),
		          error->message);
	} else if (magpie_session_is_alive(call->session)) {
		for (int i = 0; i < magpie_pg_result_rows(res); i++) {
			const char *contact = magpie_pg_result_get(res, i, 0);
			const char *xml = magpie_pg_result_get(res, i, 1);
			g_autoptr(MagpieStanza) request =
			        xml ? magpie_stanza_parse(xml, -1, MAGPIE_NS_CLIENT, NULL) : NULL;
			if (!request) {
				request = magpie_stanza_new("presence", MAGPIE_NS_CLIENT);
				magpie_stanza_set_attr(request, "type", "subscribe");
			}
			magpie_stanza_set_attr(request, "from", contact);
			magpie_stanza_set_attr(request, "to", magpie_jid_string(call->owner));
			magpie_session_send(call->session, request);
		}
	}
	magpie_session_unref(call->session);
	magpie_jid_unref(call->owner);
	g_free(call);
}

static MagpieHookResult
presence_session_available(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *full = session ? magpie_session_jid(session) : NULL;

	if (!full)
		return MAGPIE_HOOK_CONTINUE;
	g_autoptr(MagpieJid) owner = magpie_jid_bare(full);
	UserCache *cache = cache_lookup(mod, owner);

	if (cache) {
		GHashTableIter iter;
		gpointer key, value;
		g_hash_table_iter_init(&iter, cache->contacts);
		while (g_hash_table_iter_next(&iter, &key, &value)) {
			if ((((Contact *) value)->flags & SUB_TO) &&
			    !g_str_equal(key, magpie_jid_string(owner)))
				send_presence_type("probe", owner, key);
		}
	}
	PendingCall *call = g_new0(PendingCall, 1);
	call->session = magpie_session_ref(session);
	call->owner = g_steal_pointer(&owner);
	const char *params[] = { magpie_jid_domain(call->owner), magpie_jid_node(call->owner) };
	magpie_pg_query_async("SELECT contact, stanza_in FROM roster_item "
	                      "WHERE host = $1 AND username = $2 AND ask_in ORDER BY contact",
	                      2, params, NULL, pending_done, call);
	return MAGPIE_HOOK_CONTINUE;
}

static MagpieHookResult
presence_session_end(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	PresenceData *pd = presence_data(mod);
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *full = magpie_event_from(ev);

	if (!session || !full || !pd)
		return MAGPIE_HOOK_CONTINUE;
	g_autoptr(MagpieJid) owner = magpie_jid_bare(full);
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(owner);
	for (guint i = 0; i < sessions->len; i++) {
		if (sessions->pdata[i] != session)
			return MAGPIE_HOOK_CONTINUE;
	}
	UserCache *cache = g_hash_table_lookup(pd->users, magpie_jid_string(owner));
	if (cache && !cache->loading && cache->waiting->len == 0)
		g_hash_table_remove(pd->users, magpie_jid_string(owner));
	return MAGPIE_HOOK_CONTINUE;
}

/* Directed presence (§4.6): remember who got available presence from a
 * session, to send them unavailable when it goes away. */
static MagpieHookResult
presence_stanza_pre(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieSession *session = magpie_event_session(ev);
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *to = magpie_event_to(ev);
	const char *type;

	if (!session || !to || !g_str_equal(magpie_stanza_name(stanza), "presence") ||
	    !magpie_stanza_get_attr(stanza, "to"))
		return MAGPIE_HOOK_CONTINUE;
	type = magpie_stanza_get_attr(stanza, "type");
	if (type && !g_str_equal(type, "unavailable"))
		return MAGPIE_HOOK_CONTINUE;
	MagpieJid *self = magpie_session_jid(session);
	if (self && magpie_jid_bare_equal(self, to))
		return MAGPIE_HOOK_CONTINUE;

	PresenceSession *ps = magpie_session_get_data(session, mod);
	if (!type) {
		if (!ps) {
			ps = g_new0(PresenceSession, 1);
			magpie_session_set_data(session, mod, ps, presence_session_free);
		}
		if (!ps->directed)
			ps->directed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
		if (g_hash_table_size(ps->directed) < 1000)
			g_hash_table_add(ps->directed, g_strdup(magpie_jid_string(to)));
	} else if (ps && ps->directed) {
		g_hash_table_remove(ps->directed, magpie_jid_string(to));
	}
	return MAGPIE_HOOK_CONTINUE;
}

/* roster.changed (fired by the roster module for every change). */

static gboolean
attr_true(MagpieStanza *stanza, const char *name)
{
	return g_strcmp0(magpie_stanza_get_attr(stanza, name), "true") == 0;
}

static MagpieHookResult
presence_roster_changed(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *change = magpie_event_stanza(ev);
	MagpieJid *owner = magpie_event_from(ev);
	MagpieJid *contact_jid = magpie_event_to(ev);

	if (!change || !owner || !contact_jid)
		return MAGPIE_HOOK_CONTINUE;
	const char *origin = magpie_stanza_get_attr(change, "origin");
	const char *contact = magpie_jid_string(contact_jid);
	int old_flags = sub_flags(magpie_stanza_get_attr(change, "old-subscription"));
	int new_flags = sub_flags(magpie_stanza_get_attr(change, "subscription"));

	/* Our own transitions are in the cache already, and their presence
	 * consequences were handled when they happened. */
	if (g_strcmp0(origin, "presence") == 0)
		return MAGPIE_HOOK_CONTINUE;
	cache_set(mod, owner, contact, magpie_stanza_get_attr(change, "subscription"));
	if (magpie_jid_bare_equal(owner, contact_jid))
		return MAGPIE_HOOK_CONTINUE;

	if (g_strcmp0(origin, "client") == 0) {
		if (!attr_true(change, "removed"))
			return MAGPIE_HOOK_CONTINUE;
		/* RFC 6121 §2.5.3: removing an item cancels both directions. */
		if ((old_flags & SUB_FROM) || attr_true(change, "old-pending-in")) {
			apply_from_change(owner, contact, old_flags, 0);
			send_presence_type("unsubscribed", owner, contact);
		}
		if ((old_flags & SUB_TO) || attr_true(change, "old-ask"))
			send_presence_type("unsubscribe", owner, contact);
		return MAGPIE_HOOK_CONTINUE;
	}

	/* An operator changed the subscription in SQL: make presence follow. */
	apply_from_change(owner, contact, old_flags, new_flags);
	if (!(old_flags & SUB_TO) && (new_flags & SUB_TO) && has_available(owner)) {
		send_presence_type("probe", owner, contact);
	} else if ((old_flags & SUB_TO) && !(new_flags & SUB_TO)) {
		g_autoptr(MagpieStanza) gone = magpie_stanza_new("presence", MAGPIE_NS_CLIENT);
		magpie_stanza_set_attr(gone, "type", "unavailable");
		magpie_stanza_set_attr(gone, "from", contact);
		magpie_stanza_set_attr(gone, "to", magpie_jid_string(owner));
		deliver_to_available(owner, gone);
	}
	return MAGPIE_HOOK_CONTINUE;
}

static void
presence_data_free(gpointer data)
{
	PresenceData *pd = data;

	g_hash_table_unref(pd->users);
	g_free(pd);
}

static gboolean
presence_load(MagpieModule *mod, GError **error)
{
	PresenceData *pd = g_new0(PresenceData, 1);

	pd->mod = mod;
	pd->users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, user_cache_free);
	pd->max_items = (gint) magpie_module_config_int(mod, "max-pending-items");
	magpie_module_set_data(mod, pd, presence_data_free);
	return TRUE;
}

static const MagpieHookSpec presence_hooks[] = {
	{ MAGPIE_EVENT_PRESENCE_OUT, presence_out, MAGPIE_PRIORITY_DEFAULT },
	{ MAGPIE_EVENT_PRESENCE_IN, presence_in, MAGPIE_PRIORITY_DEFAULT },
	{ MAGPIE_EVENT_PRESENCE_BROADCAST, presence_broadcast, MAGPIE_PRIORITY_DEFAULT },
	{ MAGPIE_EVENT_SESSION_AVAILABLE, presence_session_available, MAGPIE_PRIORITY_DEFAULT },
	{ MAGPIE_EVENT_SESSION_END, presence_session_end, MAGPIE_PRIORITY_LATE },
	{ MAGPIE_EVENT_STANZA_PRE, presence_stanza_pre, MAGPIE_PRIORITY_LATE },
	{ EVENT_ROSTER_CHANGED, presence_roster_changed, MAGPIE_PRIORITY_DEFAULT },
	{ NULL },
};

static const MagpieConfigKey presence_config[] = {
	{ "max-pending-items", MAGPIE_CONFIG_INT, "1000", 1, 1000000,
	  "Roster size beyond which inbound subscription requests from strangers are "
	  "refused with resource-constraint (keep it equal to [roster] max-items)" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_presence = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "presence",
	.description = "Presence subscriptions and broadcast (RFC 6121 §3, §4)",
	.requires = (const char *const[]){ "roster", NULL },
	.hooks = presence_hooks,
	.config = presence_config,
	.load = presence_load,
};
