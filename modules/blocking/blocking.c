/* Blocking Command (XEP-0191): a per-account list of blocked JIDs,
 * enforced in both directions in stanza.pre.
 *
 * The list lives in the table blocklist (sql/blocking/). While an account
 * has sessions its list is cached here, so enforcement never waits for SQL;
 * lists of accounts without sessions are loaded on demand (the stanza waits,
 * PENDING) and kept for a minute. Every change, by IQ or by SQL, reaches the
 * cache the same way: the trigger's NOTIFY (or the IQ's write callback)
 * reloads the list, and the difference is pushed to the interested
 * resources (XEP-0191 §3.3, §3.4) and turned into presence.
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_BLOCKING        "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define BLOCKING_CHANNEL   "magpie_blocking"

/* A list whose account has no session stays cached this long after use. */
#define IDLE_LIFETIME_US  (60 * G_USEC_PER_SEC)
#define SWEEP_INTERVAL_MS 15000
/* Stanzas this module routes past its own outbound check (the unavailable
 * presence sent on block) are forgotten after this, should an earlier
 * stanza.pre handler have dropped them before we saw them again. */
#define BYPASS_LIFETIME_US (10 * G_USEC_PER_SEC)

typedef struct _Blocking Blocking;
typedef struct _BlockList BlockList;

/* @ok FALSE: the list could not be loaded (database unavailable). */
typedef void (*ListReadyFunc)(BlockList *list, gboolean ok, gpointer data);

typedef struct {
	guint64 min_seq; /* run once a load numbered >= this is applied or failed */
	ListReadyFunc func;
	gpointer data;
	GDestroyNotify destroy;
} Waiter;

typedef struct {
	char *raw;      /* as stored in SQL */
	MagpieJid *jid; /* parsed and prepared */
} BlockItem;

struct _BlockList {
	gint ref;
	Blocking *blocking; /* NULL once evicted from the cache */
	MagpieJid *owner;   /* bare */
	GPtrArray *items;   /* BlockItem, NULL until the first load */
	guint64 issued;     /* number of the last load started */
	guint64 applied;    /* number of the last load applied */
	GPtrArray *waiters; /* Waiter */
	guint unblock_all;  /* "unblock all" requests being written */
	gint64 last_used;
};

struct _Blocking {
	MagpieModule *mod;
	GHashTable *lists;  /* owner bare JID string -> BlockList */
	GHashTable *bypass; /* MagpieStanza (ref) -> gint64 expiry, in a GINT64 box */
	/* The sender judged last and its list (both referenced): a presence
	 * broadcast asks for the same sender's list once per contact. */
	MagpieJid *last_from;
	BlockList *last_from_list;
	guint listen_id;
	GCancellable *cancellable;
	guint push_counter;
};

/* Per-session slot: the resource retrieved the blocklist (XEP-0191 §3.3
 * "resources that have requested the blocklist"). */
#define INTERESTED GINT_TO_POINTER(1)

static void
block_item_free(gpointer data)
{
	BlockItem *item = data;

	g_free(item->raw);
	magpie_jid_unref(item->jid);
	g_free(item);
}

static void
waiter_free(gpointer data)
{
	Waiter *w = data;

	if (w->destroy && w->data)
		w->destroy(w->data);
	g_free(w);
}

static BlockList *
block_list_ref(BlockList *list)
{
	g_atomic_int_inc(&list->ref);
	return list;
}

static void
block_list_unref(BlockList *list)
{
	if (!g_atomic_int_dec_and_test(&list->ref))
		return;
	g_clear_pointer(&list->items, g_ptr_array_unref);
	g_ptr_array_unref(list->waiters);
	magpie_jid_unref(list->owner);
	g_free(list);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BlockList, block_list_unref)

/* Evicted from the cache: waiters are told the list is gone. */
static void
block_list_evict(gpointer data)
{
	BlockList *list = data;
	g_autoptr(GPtrArray) waiters = list->waiters;

	list->blocking = NULL;
	list->waiters = g_ptr_array_new_with_free_func(waiter_free);
	for (guint i = 0; i < waiters->len; i++) {
		Waiter *w = waiters->pdata[i];
		w->func(list, FALSE, w->data);
	}
	block_list_unref(list);
}

/* JID matching (XEP-0191 §4, as XEP-0016): full, bare, domain/resource,
 * then domain, which also matches its subdomains. */
static gboolean
item_matches(const MagpieJid *item, const MagpieJid *jid)
{
	const char *inode = magpie_jid_node(item);
	const char *ires = magpie_jid_resource(item);
	const char *idomain = magpie_jid_domain(item);
	const char *domain = magpie_jid_domain(jid);

	if (inode) {
		if (ires)
			return magpie_jid_equal(item, jid);
		return magpie_jid_bare_equal(item, jid);
	}
	if (ires) {
		return !magpie_jid_node(jid) && g_str_equal(idomain, domain) &&
		       g_strcmp0(ires, magpie_jid_resource(jid)) == 0;
	}
	if (g_str_equal(idomain, domain))
		return TRUE;
	size_t dl = strlen(domain), il = strlen(idomain);
	return dl > il + 1 && domain[dl - il - 1] == '.' && g_str_equal(domain + dl - il, idomain);
}

static gboolean
list_blocks(BlockList *list, const MagpieJid *jid)
{
	for (guint i = 0; list->items && i < list->items->len; i++) {
		BlockItem *item = list->items->pdata[i];
		if (item_matches(item->jid, jid))
			return TRUE;
	}
	return FALSE;
}

static gboolean
list_has(GPtrArray *items, const char *prepared)
{
	for (guint i = 0; items && i < items->len; i++) {
		BlockItem *item = items->pdata[i];
		if (g_str_equal(magpie_jid_string(item->jid), prepared))
			return TRUE;
	}
	return FALSE;
}

/* Pushes (XEP-0191 §3.3-§3.5). */

static void
push_to_interested(Blocking *blocking, BlockList *list, const char *element, GPtrArray *jids)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(list->owner);

	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *s = sessions->pdata[i];

		if (magpie_session_get_data(s, blocking->mod) != INTERESTED)
			continue;
		g_autoptr(MagpieStanza) iq = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
		g_autofree char *id = g_strdup_printf("block-push-%u", ++blocking->push_counter);
		magpie_stanza_set_attr(iq, "type", "set");
		magpie_stanza_set_attr(iq, "id", id);
		magpie_stanza_set_attr(iq, "from", magpie_jid_string(list->owner));
		magpie_stanza_set_attr(iq, "to", magpie_jid_string(magpie_session_jid(s)));
		MagpieElement *el =
		        magpie_element_add_child(magpie_stanza_root(iq), element, NS_BLOCKING);
		for (guint j = 0; jids && j < jids->len; j++) {
			MagpieElement *item = magpie_element_add_child(el, "item", NULL);
			magpie_element_set_attr(item, "jid", jids->pdata[j]);
		}
		magpie_session_send(s, iq);
	}
}

/* Presence on block and unblock (XEP-0191 §3.3, §3.4): contacts allowed to
 * see the user's presence (subscription from or both, from the roster
 * module's view) get unavailable presence from every available resource
 * when blocked, and the current presence again when unblocked. */
typedef struct {
	Blocking *blocking;
	BlockList *list;
	GPtrArray *blocked;   /* MagpieJid: items added */
	GPtrArray *unblocked; /* MagpieJid: items removed */
} PresenceChange;

static void
presence_change_free(PresenceChange *pc)
{
	block_list_unref(pc->list);
	g_ptr_array_unref(pc->blocked);
	g_ptr_array_unref(pc->unblocked);
	g_free(pc);
}

static gboolean
any_matches(GPtrArray *items, MagpieJid *jid)
{
	for (guint i = 0; i < items->len; i++) {
		if (item_matches(items->pdata[i], jid))
			return TRUE;
	}
	return FALSE;
}

static void
route_bypassing(Blocking *blocking, MagpieStanza *stanza, MagpieJid *from)
{
	gint64 *expiry = g_new(gint64, 1);

	*expiry = g_get_monotonic_time() + BYPASS_LIFETIME_US;
	g_hash_table_replace(blocking->bypass, magpie_stanza_ref(stanza), expiry);
	magpie_route(stanza, from);
}

static void
presence_change_send(PresenceChange *pc, MagpieJid *contact)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(pc->list->owner);
	gboolean blocked = any_matches(pc->blocked, contact) && list_blocks(pc->list, contact);
	gboolean unblocked =
	        !blocked && any_matches(pc->unblocked, contact) && !list_blocks(pc->list, contact);

	if (!blocked && !unblocked)
		return;
	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *s = sessions->pdata[i];
		MagpieStanza *current = magpie_session_presence(s);
		g_autoptr(MagpieStanza) p = NULL;

		if (!magpie_session_is_available(s))
			continue;
		if (blocked) {
			p = magpie_stanza_new("presence", MAGPIE_NS_CLIENT);
			magpie_stanza_set_attr(p, "type", "unavailable");
		} else if (current) {
			p = magpie_stanza_copy(current);
		} else {
			continue;
		}
		magpie_stanza_set_attr(p, "to", magpie_jid_string(contact));
		if (blocked)
			route_bypassing(pc->blocking, p, magpie_session_jid(s));
		else
			magpie_route(p, magpie_session_jid(s));
	}
}

static void
presence_change_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	PresenceChange *pc = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) result = magpie_pg_query_finish(res, &error);

	if (!result) {
		/* Without the roster module there is no subscription to honour. */
		if (!g_error_matches(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CANCELLED))
			g_debug("blocking: no presence on (un)block for %s: %s",
			        magpie_jid_string(pc->list->owner), error->message);
		presence_change_free(pc);
		return;
	}
	if (pc->list->blocking) {
		for (int r = 0; r < magpie_pg_result_rows(result); r++) {
			g_autoptr(MagpieJid) contact =
			        magpie_jid_parse(magpie_pg_result_get(result, r, 0), NULL);
			if (contact)
				presence_change_send(pc, contact);
		}
	}
	presence_change_free(pc);
}

static void
presence_change_start(Blocking *blocking, BlockList *list, GPtrArray *blocked, GPtrArray *unblocked)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(list->owner);
	gboolean any_available = FALSE;

	for (guint i = 0; i < sessions->len; i++)
		any_available |= magpie_session_is_available(sessions->pdata[i]);
	if (!any_available)
		return;
	PresenceChange *pc = g_new0(PresenceChange, 1);
	pc->blocking = blocking;
	pc->list = block_list_ref(list);
	pc->blocked = g_ptr_array_ref(blocked);
	pc->unblocked = g_ptr_array_ref(unblocked);
	const char *params[] = { magpie_jid_string(list->owner) };
	magpie_pg_query_async("SELECT contact FROM magpie_roster_view"
	                      " WHERE owner = $1 AND subscription IN ('from', 'both')",
	                      1, params, blocking->cancellable, presence_change_cb, pc);
}

/* Loading. */

static GPtrArray *
items_from_result(BlockList *list, MagpiePgResult *result)
{
	GPtrArray *items = g_ptr_array_new_with_free_func(block_item_free);

	for (int r = 0; r < magpie_pg_result_rows(result); r++) {
		const char *raw = magpie_pg_result_get(result, r, 0);
		g_autoptr(GError) error = NULL;
		MagpieJid *jid = raw ? magpie_jid_parse(raw, &error) : NULL;

		if (!jid) {
			g_message("blocking: ignoring the invalid JID in the blocklist of %s: %s",
			          magpie_jid_string(list->owner), error ? error->message : "NULL");
			continue;
		}
		BlockItem *item = g_new0(BlockItem, 1);
		item->raw = g_strdup(raw);
		item->jid = jid;
		g_ptr_array_add(items, item);
	}
	return items;
}

/* The changes between two loads, as prepared JID strings (each once). */
static void
diff_items(GPtrArray *from, GPtrArray *to, GPtrArray *out_strings, GPtrArray *out_jids)
{
	g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

	for (guint i = 0; i < to->len; i++) {
		BlockItem *item = to->pdata[i];
		const char *s = magpie_jid_string(item->jid);

		if (list_has(from, s) || g_hash_table_contains(seen, s))
			continue;
		g_hash_table_add(seen, (gpointer) s);
		g_ptr_array_add(out_strings, g_strdup(s));
		g_ptr_array_add(out_jids, magpie_jid_ref(item->jid));
	}
}

static void
apply_load(Blocking *blocking, BlockList *list, GPtrArray *items)
{
	g_autoptr(GPtrArray) old = list->items;
	gboolean first = old == NULL;

	list->items = items;
	if (first)
		return;
	g_autoptr(GPtrArray) added = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) added_jids =
	        g_ptr_array_new_with_free_func((GDestroyNotify) magpie_jid_unref);
	g_autoptr(GPtrArray) removed = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) removed_jids =
	        g_ptr_array_new_with_free_func((GDestroyNotify) magpie_jid_unref);
	diff_items(old, items, added, added_jids);
	diff_items(items, old, removed, removed_jids);

	if (added->len > 0) {
		g_info("blocking: %s blocked %u JID(s)", magpie_jid_string(list->owner),
		       added->len);
		push_to_interested(blocking, list, "block", added);
	}
	if (removed->len > 0) {
		g_info("blocking: %s unblocked %u JID(s)", magpie_jid_string(list->owner),
		       removed->len);
		/* XEP-0191 §3.5: "unblock all" is pushed as an empty <unblock/>. */
		if (items->len == 0 && list->unblock_all > 0)
			push_to_interested(blocking, list, "unblock", NULL);
		else
			push_to_interested(blocking, list, "unblock", removed);
	}
	if (added->len > 0 || removed->len > 0)
		presence_change_start(blocking, list, added_jids, removed_jids);
}

static void
run_waiters(BlockList *list, guint64 seq, gboolean ok)
{
	g_autoptr(GPtrArray) ready = g_ptr_array_new_with_free_func(waiter_free);

	for (guint i = 0; i < list->waiters->len;) {
		Waiter *w = list->waiters->pdata[i];

		if (w->min_seq <= seq) {
			g_ptr_array_add(ready, g_ptr_array_steal_index(list->waiters, i));
		} else {
			i++;
		}
	}
	for (guint i = 0; i < ready->len; i++) {
		Waiter *w = ready->pdata[i];
		w->func(list, ok, w->data);
	}
}

typedef struct {
	BlockList *list;
	guint64 seq;
} LoadCall;

static void
load_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	LoadCall *call = user_data;
	g_autoptr(BlockList) list = call->list;
	guint64 seq = call->seq;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) result = magpie_pg_query_finish(res, &error);

	g_free(call);
	if (!list->blocking)
		return; /* evicted, or the module is unloading */
	if (!result) {
		g_message("blocking: cannot load the blocklist of %s: %s",
		          magpie_jid_string(list->owner), error->message);
		run_waiters(list, seq, FALSE);
		return;
	}
	/* Loads run on any pool connection and may finish out of order; each
	 * one started after a commit sees it, so the newest applied wins. */
	if (seq > list->applied) {
		list->applied = seq;
		apply_load(list->blocking, list, items_from_result(list, result));
	}
	run_waiters(list, seq, TRUE);
}

static guint64
block_list_load(Blocking *blocking, BlockList *list)
{
	LoadCall *call = g_new0(LoadCall, 1);
	const char *params[] = { magpie_jid_domain(list->owner), magpie_jid_node(list->owner) };

	call->list = block_list_ref(list);
	call->seq = ++list->issued;
	magpie_pg_query_async("SELECT jid FROM blocklist WHERE host = $1 AND username = $2"
	                      " ORDER BY created_at, jid",
	                      2, params, blocking->cancellable, load_cb, call);
	return call->seq;
}

/* The cached list of @bare (created on first use; not loaded yet when
 * ->items is NULL). (transfer none) */
static BlockList *
block_list_get(Blocking *blocking, MagpieJid *bare)
{
	BlockList *list = g_hash_table_lookup(blocking->lists, magpie_jid_bare_string(bare));

	if (!list) {
		list = g_new0(BlockList, 1);
		list->ref = 1;
		list->blocking = blocking;
		list->owner = magpie_jid_bare(bare);
		list->waiters = g_ptr_array_new_with_free_func(waiter_free);
		g_hash_table_insert(blocking->lists, g_strdup(magpie_jid_string(list->owner)),
		                    list);
	}
	list->last_used = g_get_monotonic_time();
	return list;
}

static void
block_list_wait(BlockList *list, guint64 min_seq, ListReadyFunc func, gpointer data,
                GDestroyNotify destroy)
{
	Waiter *w = g_new0(Waiter, 1);

	w->min_seq = min_seq;
	w->func = func;
	w->data = data;
	w->destroy = destroy;
	g_ptr_array_add(list->waiters, w);
}

/* Wait until the list is loaded: a load in flight, or a new one. */
static void
block_list_when_loaded(Blocking *blocking, BlockList *list, ListReadyFunc func, gpointer data,
                       GDestroyNotify destroy)
{
	guint64 seq = list->issued > list->applied ? list->issued : block_list_load(blocking, list);

	block_list_wait(list, seq, func, data, destroy);
}

/* Enforcement (XEP-0191 §3.3). */

typedef enum {
	VERDICT_PASS,
	VERDICT_WAIT, /* a list is loading */
	VERDICT_UNAVAILABLE,
	VERDICT_INBOUND,  /* from a JID the recipient blocked */
	VERDICT_OUTBOUND, /* to a JID the sender blocked */
} Verdict;

static gboolean
is_local_account(MagpieJid *jid)
{
	return magpie_jid_node(jid) && magpie_config_is_local_host(magpie_jid_domain(jid));
}

/* block_list_get() for a stanza's sender, remembering the last one: the
 * same JID object (a session's) means the same account. */
static BlockList *
sender_list_get(Blocking *blocking, MagpieJid *from)
{
	BlockList *list = blocking->last_from_list;

	if (blocking->last_from == from && list->blocking != NULL) {
		list->last_used = g_get_monotonic_time();
		return list;
	}
	list = block_list_get(blocking, from);
	g_clear_pointer(&blocking->last_from, magpie_jid_unref);
	g_clear_pointer(&blocking->last_from_list, block_list_unref);
	blocking->last_from = magpie_jid_ref(from);
	blocking->last_from_list = block_list_ref(list);
	return list;
}

/* @need_out: the list to wait for when the verdict is WAIT. */
static Verdict
judge(Blocking *blocking, MagpieStanzaEvent *ev, BlockList **need_out)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *from = magpie_event_from(ev);
	MagpieJid *to = magpie_event_to(ev);

	*need_out = NULL;
	if (!stanza || !from || !to)
		return VERDICT_PASS;
	/* An account never blocks itself, and the server is never blocked. */
	if (magpie_jid_bare_equal(from, to))
		return VERDICT_PASS;
	if (!magpie_jid_node(from) && magpie_config_is_local_host(magpie_jid_domain(from)))
		return VERDICT_PASS;
	if (!magpie_jid_node(to) && magpie_config_is_local_host(magpie_jid_domain(to)))
		return VERDICT_PASS;

	if (is_local_account(from)) {
		BlockList *list = sender_list_get(blocking, from);
		if (!list->items) {
			*need_out = list;
			return VERDICT_WAIT;
		}
		if (list_blocks(list, to))
			return VERDICT_OUTBOUND;
	}
	if (is_local_account(to)) {
		BlockList *list = block_list_get(blocking, to);
		if (!list->items) {
			*need_out = list;
			return VERDICT_WAIT;
		}
		if (list_blocks(list, from))
			return VERDICT_INBOUND;
	}
	return VERDICT_PASS;
}

static const char *
stanza_type(MagpieStanza *stanza)
{
	const char *type = magpie_stanza_get_attr(stanza, "type");

	return type ? type : "";
}

/* XEP-0191 §3.3: the user's server refuses what the user sends to a JID
 * it blocked, with <not-acceptable/> and <blocked/>, straight back to the
 * sending session (routing it would meet the blocklist again). */
static void
refuse_outbound(MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieSession *session = magpie_event_session(ev);

	if (!session)
		return; /* the server on the user's behalf (broadcasts, probes): dropped */
	g_autoptr(MagpieStanza) error =
	        magpie_stanza_error_new(stanza, "cancel", "not-acceptable", NULL);
	if (!error)
		return;
	MagpieElement *el = magpie_element_find_child(magpie_stanza_root(error), "error", NULL);
	if (el)
		magpie_element_add_child(el, "blocked", NS_BLOCKING_ERRORS);
	magpie_session_send(session, error);
}

/* XEP-0191 §3.3: from a blocked JID, presence is dropped without an answer,
 * messages get service-unavailable (SHOULD), IQ get/set service-unavailable
 * (MUST), other IQs are dropped; the user looks offline. */
static void
refuse_inbound(MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	const char *name = magpie_stanza_name(stanza);
	const char *type = stanza_type(stanza);

	if (g_str_equal(name, "presence"))
		return;
	if (g_str_equal(name, "iq") && !g_str_equal(type, "get") && !g_str_equal(type, "set"))
		return;
	magpie_stanza_reply_error(stanza, "cancel", "service-unavailable", NULL);
}

static MagpieHookResult
act(MagpieStanzaEvent *ev, Verdict verdict)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	gboolean error = g_str_equal(stanza_type(stanza), "error");

	switch (verdict) {
	case VERDICT_PASS:
	case VERDICT_WAIT:
		return MAGPIE_HOOK_CONTINUE;
	case VERDICT_UNAVAILABLE:
		/* The database is away: a temporary error (DESIGN.md §7). */
		if (!g_str_equal(magpie_stanza_name(stanza), "presence"))
			magpie_stanza_reply_error(stanza, "wait", "internal-server-error",
			                          "The block list cannot be read right now");
		return MAGPIE_HOOK_STOP;
	case VERDICT_OUTBOUND:
		/* The server's own errors on the user's behalf (e.g. our
		 * service-unavailable to a blocked sender) still go out. */
		if (error && !magpie_event_session(ev))
			return MAGPIE_HOOK_CONTINUE;
		if (!error)
			refuse_outbound(ev);
		return MAGPIE_HOOK_STOP;
	case VERDICT_INBOUND:
		if (!error)
			refuse_inbound(ev);
		return MAGPIE_HOOK_STOP;
	}
	return MAGPIE_HOOK_CONTINUE;
}

typedef struct {
	Blocking *blocking;
	MagpieStanzaEvent *ev;
	gboolean done;
} PendingJudge;

static void
pending_judge_free(gpointer data)
{
	PendingJudge *pj = data;

	/* Evicted before it was judged: the module is unloading, and the core
	 * lets the event go on without us. */
	magpie_event_unref(pj->ev);
	g_free(pj);
}

static void
judge_again(BlockList *list, gboolean ok, gpointer data)
{
	PendingJudge *pj = data;
	BlockList *need = NULL;
	Verdict verdict;

	if (!list->blocking)
		return; /* unloading: see pending_judge_free() */
	verdict = ok ? judge(pj->blocking, pj->ev, &need) : VERDICT_UNAVAILABLE;
	if (verdict == VERDICT_WAIT) {
		/* The other side's list: wait again, keeping the data. */
		PendingJudge *next = g_new0(PendingJudge, 1);
		next->blocking = pj->blocking;
		next->ev = magpie_event_ref(pj->ev);
		block_list_when_loaded(pj->blocking, need, judge_again, next, pending_judge_free);
		return;
	}
	magpie_hook_resume(pj->ev, act(pj->ev, verdict));
}

static gboolean
bypass_take(Blocking *blocking, MagpieStanza *stanza)
{
	return g_hash_table_remove(blocking->bypass, stanza);
}

static MagpieHookResult
blocking_stanza_pre(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	Blocking *blocking = magpie_module_get_data(mod);
	BlockList *need = NULL;
	Verdict verdict;

	if (g_hash_table_size(blocking->bypass) > 0 &&
	    bypass_take(blocking, magpie_event_stanza(ev)))
		return MAGPIE_HOOK_CONTINUE;
	verdict = judge(blocking, ev, &need);
	if (verdict != VERDICT_WAIT)
		return act(ev, verdict);
	PendingJudge *pj = g_new0(PendingJudge, 1);
	pj->blocking = blocking;
	pj->ev = magpie_event_ref(ev);
	block_list_when_loaded(blocking, need, judge_again, pj, pending_judge_free);
	return MAGPIE_HOOK_PENDING;
}

/* Sessions: the list is loaded before the session goes on, so stanza.pre
 * finds it cached. */

static void
bound_ready(BlockList *list, gboolean ok, gpointer data)
{
	MagpieStanzaEvent *ev = data;

	if (list->blocking)
		magpie_hook_resume(ev, MAGPIE_HOOK_CONTINUE);
}

static MagpieHookResult
blocking_session_bound(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	Blocking *blocking = magpie_module_get_data(mod);
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *jid = session ? magpie_session_jid(session) : NULL;

	if (!jid)
		return MAGPIE_HOOK_CONTINUE;
	BlockList *list = block_list_get(blocking, jid);
	if (list->items)
		return MAGPIE_HOOK_CONTINUE;
	block_list_when_loaded(blocking, list, bound_ready, magpie_event_ref(ev),
	                       (GDestroyNotify) magpie_event_unref);
	return MAGPIE_HOOK_PENDING;
}

/* Drop lists of accounts without sessions once idle, and stale bypass
 * entries. */
static gboolean
blocking_sweep(gpointer data)
{
	Blocking *blocking = data;
	gint64 now = g_get_monotonic_time();
	GHashTableIter iter;
	gpointer key, value;

	g_hash_table_iter_init(&iter, blocking->lists);
	while (g_hash_table_iter_next(&iter, &key, &value)) {
		BlockList *list = value;

		if (now - list->last_used < IDLE_LIFETIME_US || list->waiters->len > 0 ||
		    list->issued > list->applied)
			continue;
		g_autoptr(GPtrArray) sessions = magpie_sessions_for(list->owner);
		if (sessions->len == 0)
			g_hash_table_iter_remove(&iter);
	}
	g_hash_table_iter_init(&iter, blocking->bypass);
	while (g_hash_table_iter_next(&iter, &key, &value)) {
		if (*(gint64 *) value < now)
			g_hash_table_iter_remove(&iter);
	}
	return G_SOURCE_CONTINUE;
}

/* NOTIFY magpie_blocking '<bare JID>': reload a cached list. */
static void
blocking_notify(const char *channel, const char *payload, gpointer user_data)
{
	Blocking *blocking = user_data;
	g_autoptr(MagpieJid) jid = payload ? magpie_jid_parse(payload, NULL) : NULL;

	if (!jid) {
		g_message("blocking: ignoring the notification \"%s\"", payload ? payload : "");
		return;
	}
	BlockList *list = g_hash_table_lookup(blocking->lists, magpie_jid_bare_string(jid));
	if (list)
		block_list_load(blocking, list);
}

/* IQ handlers (XEP-0191 §3.2-§3.5). */

typedef struct {
	Blocking *blocking;
	BlockList *list;
	MagpieIqRequest *req;
	GPtrArray *jids; /* prepared JID strings */
	gboolean unblock_all;
} IqCall;

static void
iq_call_free(gpointer data)
{
	IqCall *call = data;

	if (call->unblock_all && call->list->unblock_all > 0)
		call->list->unblock_all--;
	block_list_unref(call->list);
	magpie_iq_request_unref(call->req);
	g_clear_pointer(&call->jids, g_ptr_array_unref);
	g_free(call);
}

static IqCall *
iq_call_new(Blocking *blocking, BlockList *list, MagpieIqRequest *req)
{
	IqCall *call = g_new0(IqCall, 1);

	call->blocking = blocking;
	call->list = block_list_ref(list);
	call->req = magpie_iq_request_ref(req);
	return call;
}

/* Only the account itself, from one of its sessions, reads or changes its
 * list (the IQ has no 'to', or its own bare JID). */
static gboolean
check_own_account(MagpieIqRequest *req)
{
	MagpieJid *from = magpie_iq_request_from(req);
	MagpieJid *to = magpie_iq_request_to(req);

	if (!from || !to || !magpie_jid_node(to) || !magpie_jid_bare_equal(from, to)) {
		magpie_iq_reply_error(req, "cancel", "forbidden", NULL);
		return FALSE;
	}
	return TRUE;
}

static void
reply_blocklist(BlockList *list, MagpieIqRequest *req)
{
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
	g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
	MagpieElement *el =
	        magpie_element_add_child(magpie_stanza_root(result), "blocklist", NS_BLOCKING);

	for (guint i = 0; i < list->items->len; i++) {
		BlockItem *item = list->items->pdata[i];
		const char *s = magpie_jid_string(item->jid);

		if (!g_hash_table_add(seen, (gpointer) s))
			continue;
		magpie_element_set_attr(magpie_element_add_child(el, "item", NULL), "jid", s);
	}
	magpie_iq_send_result(req, result);
}

static void
get_ready(BlockList *list, gboolean ok, gpointer data)
{
	IqCall *call = data;
	MagpieSession *session = magpie_iq_request_session(call->req);

	if (!ok || !list->items) {
		magpie_iq_reply_error(call->req, "wait", "internal-server-error", NULL);
		return;
	}
	if (session)
		magpie_session_set_data(session, call->blocking->mod, INTERESTED, NULL);
	reply_blocklist(list, call->req);
}

static void
blocking_get(MagpieModule *mod, MagpieIqRequest *req)
{
	Blocking *blocking = magpie_module_get_data(mod);

	if (!check_own_account(req))
		return;
	BlockList *list = block_list_get(blocking, magpie_iq_request_from(req));
	IqCall *call = iq_call_new(blocking, list, req);
	if (list->items) {
		get_ready(list, TRUE, call);
		iq_call_free(call);
		return;
	}
	block_list_when_loaded(blocking, list, get_ready, call, iq_call_free);
}

/* The write is committed: reload (a read issued after the commit sees it),
 * which pushes the difference; then answer. */
static void
write_ready(BlockList *list, gboolean ok, gpointer data)
{
	IqCall *call = data;

	if (!ok)
		magpie_iq_reply_error(call->req, "wait", "internal-server-error", NULL);
	else
		magpie_iq_reply(call->req, NULL);
}

static void
write_cb(GObject *source, GAsyncResult *res, gpointer user_data)
{
	IqCall *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) result = magpie_pg_query_finish(res, &error);

	if (!result) {
		if (g_error_matches(error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_CONSTRAINT)) {
			/* The account was deleted meanwhile. */
			magpie_iq_reply_error(call->req, "cancel", "item-not-found", NULL);
		} else {
			g_message("blocking: cannot change the blocklist of %s: %s",
			          magpie_jid_string(call->list->owner), error->message);
			magpie_iq_reply_error(call->req, "wait", "internal-server-error", NULL);
		}
		iq_call_free(call);
		return;
	}
	if (!call->list->blocking) {
		magpie_iq_reply(call->req, NULL);
		iq_call_free(call);
		return;
	}
	guint64 seq = block_list_load(call->blocking, call->list);
	block_list_wait(call->list, seq, write_ready, call, iq_call_free);
}

/* A PostgreSQL array literal: each element quoted, '"' and '\' escaped. */
static char *
pg_text_array(GPtrArray *strings)
{
	GString *out = g_string_new("{");

	for (guint i = 0; i < strings->len; i++) {
		const char *s = strings->pdata[i];

		if (i > 0)
			g_string_append_c(out, ',');
		g_string_append_c(out, '"');
		for (; *s; s++) {
			if (*s == '"' || *s == '\\')
				g_string_append_c(out, '\\');
			g_string_append_c(out, *s);
		}
		g_string_append_c(out, '"');
	}
	g_string_append_c(out, '}');
	return g_string_free(out, FALSE);
}

/* The items of <block/> or <unblock/>, prepared; FALSE after an error
 * reply. */
static gboolean
parse_items(MagpieIqRequest *req, GPtrArray *out)
{
	MagpieElement *payload = magpie_iq_request_payload(req);

	for (MagpieElement *el = magpie_element_first_child(payload); el;
	     el = magpie_element_next_sibling(el)) {
		if (!g_str_equal(magpie_element_name(el), "item") ||
		    g_strcmp0(magpie_element_ns(el), NS_BLOCKING) != 0)
			continue;
		const char *attr = magpie_element_get_attr(el, "jid");
		if (!attr) {
			magpie_iq_reply_error(req, "modify", "bad-request",
			                      "An item without a jid");
			return FALSE;
		}
		g_autoptr(MagpieJid) jid = magpie_jid_parse(attr, NULL);
		if (!jid) {
			magpie_iq_reply_error(req, "modify", "jid-malformed", NULL);
			return FALSE;
		}
		if (!g_ptr_array_find_with_equal_func(out, magpie_jid_string(jid), g_str_equal,
		                                      NULL))
			g_ptr_array_add(out, g_strdup(magpie_jid_string(jid)));
	}
	return TRUE;
}

/* The list is loaded: check the size limit, then write. */
static void
block_write(BlockList *list, gboolean ok, gpointer data)
{
	IqCall *call = data;
	Blocking *blocking = call->blocking;

	if (!ok || !list->items) {
		magpie_iq_reply_error(call->req, "wait", "internal-server-error", NULL);
		iq_call_free(call);
		return;
	}
	gint64 max = magpie_module_config_int(blocking->mod, "max-items");
	gint64 count = list->items->len;
	for (guint i = 0; i < call->jids->len; i++)
		count += list_has(list->items, call->jids->pdata[i]) ? 0 : 1;
	if (count > max) {
		magpie_iq_reply_error(call->req, "cancel", "resource-constraint",
		                      "The block list is full");
		iq_call_free(call);
		return;
	}
	g_autofree char *array = pg_text_array(call->jids);
	const char *params[] = { magpie_jid_domain(list->owner), magpie_jid_node(list->owner),
		                 array };
	magpie_pg_query_async("INSERT INTO blocklist (host, username, jid)"
	                      " SELECT $1, $2, unnest($3::text[])"
	                      " ON CONFLICT DO NOTHING",
	                      3, params, blocking->cancellable, write_cb, call);
}

static void
blocking_block(MagpieModule *mod, MagpieIqRequest *req)
{
	Blocking *blocking = magpie_module_get_data(mod);
	g_autoptr(GPtrArray) jids = g_ptr_array_new_with_free_func(g_free);

	if (!check_own_account(req) || !parse_items(req, jids))
		return;
	if (jids->len == 0) {
		/* XEP-0191 §3.3: at least one item. */
		magpie_iq_reply_error(req, "modify", "bad-request", NULL);
		return;
	}
	BlockList *list = block_list_get(blocking, magpie_iq_request_from(req));
	IqCall *call = iq_call_new(blocking, list, req);
	call->jids = g_steal_pointer(&jids);
	if (list->items)
		block_write(list, TRUE, call);
	else
		/* block_write() frees the call (no destroy here). */
		block_list_when_loaded(blocking, list, block_write, call, NULL);
}

static void
blocking_unblock(MagpieModule *mod, MagpieIqRequest *req)
{
	Blocking *blocking = magpie_module_get_data(mod);
	g_autoptr(GPtrArray) jids = g_ptr_array_new_with_free_func(g_free);

	if (!check_own_account(req) || !parse_items(req, jids))
		return;
	BlockList *list = block_list_get(blocking, magpie_iq_request_from(req));
	IqCall *call = iq_call_new(blocking, list, req);
	const char *params[] = { magpie_jid_domain(list->owner), magpie_jid_node(list->owner),
		                 NULL };

	if (jids->len == 0) {
		/* XEP-0191 §3.5: unblock all. */
		call->unblock_all = TRUE;
		list->unblock_all++;
		magpie_pg_query_async("DELETE FROM blocklist WHERE host = $1 AND username = $2", 2,
		                      params, blocking->cancellable, write_cb, call);
		return;
	}
	/* Rows written by SQL may spell a JID differently from its prepared
	 * form: delete those too. */
	for (guint i = 0; list->items && i < list->items->len; i++) {
		BlockItem *item = list->items->pdata[i];

		if (g_ptr_array_find_with_equal_func(jids, magpie_jid_string(item->jid),
		                                     g_str_equal, NULL) &&
		    !g_ptr_array_find_with_equal_func(jids, item->raw, g_str_equal, NULL))
			g_ptr_array_add(jids, g_strdup(item->raw));
	}
	g_autofree char *array = pg_text_array(jids);
	params[2] = array;
	magpie_pg_query_async("DELETE FROM blocklist"
	                      " WHERE host = $1 AND username = $2 AND jid = ANY($3::text[])",
	                      3, params, blocking->cancellable, write_cb, call);
}

static void
blocking_data_free(gpointer data)
{
	Blocking *blocking = data;

	if (blocking->listen_id)
		magpie_pg_unlisten(blocking->listen_id);
	g_cancellable_cancel(blocking->cancellable);
	g_hash_table_unref(blocking->lists);
	g_hash_table_unref(blocking->bypass);
	g_clear_pointer(&blocking->last_from, magpie_jid_unref);
	g_clear_pointer(&blocking->last_from_list, block_list_unref);
	g_object_unref(blocking->cancellable);
	g_free(blocking);
}

static gboolean
blocking_load(MagpieModule *mod, GError **error)
{
	Blocking *blocking = g_new0(Blocking, 1);

	blocking->mod = mod;
	blocking->lists = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, block_list_evict);
	blocking->bypass = g_hash_table_new_full(g_direct_hash, g_direct_equal,
	                                         (GDestroyNotify) magpie_stanza_unref, g_free);
	blocking->cancellable = g_cancellable_new();
	magpie_module_set_data(mod, blocking, blocking_data_free);
	blocking->listen_id = magpie_pg_listen(BLOCKING_CHANNEL, blocking_notify, blocking, NULL);
	magpie_module_add_timeout(mod, SWEEP_INTERVAL_MS, blocking_sweep, blocking, NULL);
	return TRUE;
}

static const MagpieHookSpec blocking_hooks[] = {
	{ MAGPIE_EVENT_STANZA_PRE, blocking_stanza_pre, MAGPIE_PRIORITY_EARLY },
	{ MAGPIE_EVENT_SESSION_BOUND, blocking_session_bound, MAGPIE_PRIORITY_DEFAULT },
	{ NULL },
};

static const MagpieIqSpec blocking_iqs[] = {
	{ NS_BLOCKING, "blocklist", MAGPIE_IQ_GET, blocking_get },
	{ NS_BLOCKING, "block", MAGPIE_IQ_SET, blocking_block },
	{ NS_BLOCKING, "unblock", MAGPIE_IQ_SET, blocking_unblock },
	{ NULL },
};

static const MagpieConfigKey blocking_config[] = {
	{ "max-items", MAGPIE_CONFIG_INT, "1000", 1, 100000,
	  "Most JIDs one account may block; a block beyond gets resource-constraint" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_blocking = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "blocking",
	.description = "Blocking Command (XEP-0191)",
	.hooks = blocking_hooks,
	.iqs = blocking_iqs,
	.config = blocking_config,
	.disco_features = (const char *const[]){ NS_BLOCKING, NULL },
	.load = blocking_load,
};
