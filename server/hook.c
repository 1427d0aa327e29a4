/* Events and hook chains.
 *
 * Each event name has a chain of handlers sorted by priority (lower first),
 * ties in registration order. Running an event takes a snapshot of the
 * chain (each entry referenced), so a handler removed while the event is
 * under way is skipped (marked dead) rather than called after its module
 * was closed. A handler answering PENDING parks the event: its session is
 * held (the stream is not read) until magpie_hook_resume(), and the rest of
 * the chain runs in a later main-loop iteration.
 */
#include <string.h>

#include "module-host.h"
#include "module-internal.h"
#include "session-private.h"

typedef struct {
	gint ref_count;
	MagpieModule *mod; /* NULL: core handler */
	MagpieHookFunc func;
	int priority;
	gboolean dead; /* removed from its chain */
} HookEntry;

typedef struct {
	/* HookEntry, sorted; holds a ref on each. Never changed in place:
	 * adding or removing a handler builds a new array, so a running
	 * event's snapshot is simply a reference to the array of its time. */
	GPtrArray *entries;
	const char *name; /* the key in hook_chains */
} HookChain;

struct _MagpieStanzaEvent {
	gint ref_count;
	HookChain *chain;
	const char *name; /* the chain's */
	MagpieStanza *stanza;
	MagpieSession *session;
	MagpieJid *from;
	MagpieJid *to;

	/* Run state. */
	gboolean running;
	GPtrArray *snapshot; /* a HookChain's entries when the run started, or NULL */
	guint position;      /* index of the handler being run / pending */
	gboolean in_handler;
	int early_resume; /* resumed from inside the handler before it returned */
	gboolean pending;
	gboolean in_pending_set; /* in pending_events */
	gboolean held;
	MagpieHookResult resume_result;
	GSource *resume_source;
	MagpieHookDoneFunc done;
	gpointer done_data;
};

/* Event name -> HookChain. A chain, once made, lives as long as the
 * process (with no handlers it is empty), so events and the name cache
 * below may point at it. The names are the fixed set the code uses. */
static GHashTable *hook_chains;
static GHashTable *pending_events; /* MagpieStanzaEvent set (PENDING, not yet resumed) */

static const MagpieHookSessionOps default_session_ops = {
	magpie_session_ref,
	magpie_session_unref,
	magpie_session_hold,
	magpie_session_release,
};
static const MagpieHookSessionOps *session_ops = &default_session_ops;

void
magpie_hook_set_session_ops(const MagpieHookSessionOps *ops)
{
	session_ops = ops ? ops : &default_session_ops;
}

static HookEntry *
hook_entry_ref(HookEntry *entry)
{
	g_atomic_int_inc(&entry->ref_count);
	return entry;
}

static void
hook_entry_unref(gpointer data)
{
	HookEntry *entry = data;

	if (g_atomic_int_dec_and_test(&entry->ref_count))
		g_free(entry);
}

static GPtrArray *
hook_entries_new(guint reserved)
{
	return g_ptr_array_new_full(reserved, hook_entry_unref);
}

/* A copy of @entries without the element at @skip (G_MAXUINT: none), with
 * room for one more. */
static GPtrArray *
hook_entries_copy(GPtrArray *entries, guint skip)
{
	GPtrArray *copy = hook_entries_new(entries->len + 1);

	for (guint i = 0; i < entries->len; i++) {
		if (i != skip)
			g_ptr_array_add(copy, hook_entry_ref(entries->pdata[i]));
	}
	return copy;
}

static void
hook_chain_free(gpointer data)
{
	HookChain *chain = data;

	for (guint i = 0; i < chain->entries->len; i++)
		((HookEntry *) chain->entries->pdata[i])->dead = TRUE;
	g_ptr_array_unref(chain->entries);
	g_free(chain);
}

static void
hook_ensure_tables(void)
{
	if (hook_chains)
		return;
	hook_chains = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, hook_chain_free);
	pending_events = g_hash_table_new(g_direct_hash, g_direct_equal);
}

/* Events are made for every stanza, each time with one of a few string
 * constants as the name: a small cache keyed by the constant's address
 * spares hashing the name each time. The address alone proves nothing
 * (an unloaded module's constant may be reused by another), so a hit is
 * confirmed by comparing the strings. */
#define HOOK_NAME_CACHE 32

static struct {
	const char *name;
	HookChain *chain;
} hook_name_cache[HOOK_NAME_CACHE];

static HookChain *
hook_chain_get(const char *event)
{
	guint slot = (guint) (GPOINTER_TO_SIZE(event) >> 3) % HOOK_NAME_CACHE;
	HookChain *chain;

	if (hook_name_cache[slot].name == event &&
	    strcmp(hook_name_cache[slot].chain->name, event) == 0)
		return hook_name_cache[slot].chain;
	hook_ensure_tables();
	chain = g_hash_table_lookup(hook_chains, event);
	if (chain == NULL) {
		char *name = g_strdup(event);

		chain = g_new0(HookChain, 1);
		chain->entries = hook_entries_new(1);
		chain->name = name;
		g_hash_table_insert(hook_chains, name, chain);
	}
	hook_name_cache[slot].name = event;
	hook_name_cache[slot].chain = chain;
	return chain;
}

void
magpie_hook_add_internal(MagpieModule *mod, const char *event, MagpieHookFunc func, int priority)
{
	HookChain *chain;
	HookEntry *entry;
	guint i;

	g_return_if_fail(event != NULL);
	g_return_if_fail(func != NULL);

	chain = hook_chain_get(event);
	entry = g_new0(HookEntry, 1);
	entry->ref_count = 1;
	entry->mod = mod;
	entry->func = func;
	entry->priority = priority;

	/* After every entry of the same or a lower priority: ties run in
	 * registration (module load) order. */
	for (i = 0; i < chain->entries->len; i++) {
		HookEntry *other = chain->entries->pdata[i];

		if (other->priority > priority)
			break;
	}
	GPtrArray *entries = hook_entries_copy(chain->entries, G_MAXUINT);
	g_ptr_array_insert(entries, (gint) i, entry);
	g_ptr_array_unref(chain->entries);
	chain->entries = entries;
}

void
magpie_hook_add_core(const char *event, MagpieHookFunc func, int priority)
{
	magpie_hook_add_internal(NULL, event, func, priority);
}

static void hook_schedule_resume(MagpieStanzaEvent *ev, MagpieHookResult result);

/* Events parked on a handler that just died would wait for a resume that
 * never comes: resume them with CONTINUE. */
static void
hook_resume_orphans(void)
{
	g_autoptr(GPtrArray) orphans = g_ptr_array_new();
	GHashTableIter iter;
	gpointer key;

	if (pending_events == NULL)
		return;
	g_hash_table_iter_init(&iter, pending_events);
	while (g_hash_table_iter_next(&iter, &key, NULL)) {
		MagpieStanzaEvent *ev = key;
		HookEntry *entry = ev->snapshot->pdata[ev->position];

		if (entry->dead)
			g_ptr_array_add(orphans, ev);
	}
	for (guint i = 0; i < orphans->len; i++) {
		MagpieStanzaEvent *ev = orphans->pdata[i];

		g_debug("event %s: pending handler removed, continuing", ev->name);
		hook_schedule_resume(ev, MAGPIE_HOOK_CONTINUE);
	}
}

static void
hook_chain_remove_if(const char *event, MagpieModule *mod, MagpieHookFunc func)
{
	GHashTableIter iter;
	gpointer key, value;

	if (hook_chains == NULL)
		return;
	g_hash_table_iter_init(&iter, hook_chains);
	while (g_hash_table_iter_next(&iter, &key, &value)) {
		HookChain *chain = value;

		if (event != NULL && strcmp(key, event) != 0)
			continue;
		for (guint i = 0; i < chain->entries->len;) {
			HookEntry *entry = chain->entries->pdata[i];

			if (entry->mod == mod && (func == NULL || entry->func == func)) {
				entry->dead = TRUE;
				GPtrArray *entries = hook_entries_copy(chain->entries, i);
				g_ptr_array_unref(chain->entries);
				chain->entries = entries;
				if (func != NULL)
					break; /* core: one registration per call */
				continue;
			}
			i++;
		}
	}
	hook_resume_orphans();
}

void
magpie_hook_remove_core(const char *event, MagpieHookFunc func)
{
	g_return_if_fail(event != NULL);
	g_return_if_fail(func != NULL);

	hook_chain_remove_if(event, NULL, func);
}

void
magpie_hook_remove_module(MagpieModule *mod)
{
	g_return_if_fail(mod != NULL);

	hook_chain_remove_if(NULL, mod, NULL);
}

gboolean
magpie_hook_has_handlers(const char *event)
{
	g_return_val_if_fail(event != NULL, FALSE);

	return hook_chain_get(event)->entries->len > 0;
}

MagpieStanzaEvent *
magpie_event_new(const char *name, MagpieStanza *stanza, MagpieSession *session, MagpieJid *from,
                 MagpieJid *to)
{
	MagpieStanzaEvent *ev;

	g_return_val_if_fail(name != NULL, NULL);

	/* One per stanza and hop: g_malloc (which glibc serves from its
	 * per-thread cache) rather than g_malloc0 (which it does not). */
	HookChain *chain = hook_chain_get(name);
	ev = g_new(MagpieStanzaEvent, 1);
	*ev = (MagpieStanzaEvent){
		.ref_count = 1,
		.chain = chain,
		.name = chain->name,
		.stanza = stanza ? magpie_stanza_ref(stanza) : NULL,
		.session = session ? session_ops->ref(session) : NULL,
		.from = from ? magpie_jid_ref(from) : NULL,
		.to = to ? magpie_jid_ref(to) : NULL,
		.early_resume = -1,
	};
	return ev;
}

MagpieStanzaEvent *
magpie_event_ref(MagpieStanzaEvent *ev)
{
	g_return_val_if_fail(ev != NULL, NULL);

	g_atomic_int_inc(&ev->ref_count);
	return ev;
}

void
magpie_event_unref(MagpieStanzaEvent *ev)
{
	g_return_if_fail(ev != NULL);

	if (!g_atomic_int_dec_and_test(&ev->ref_count))
		return;
	/* A running event holds a ref until its chain has finished. */
	g_clear_pointer(&ev->snapshot, g_ptr_array_unref);
	g_clear_pointer(&ev->stanza, magpie_stanza_unref);
	if (ev->session)
		session_ops->unref(ev->session);
	g_clear_pointer(&ev->from, magpie_jid_unref);
	g_clear_pointer(&ev->to, magpie_jid_unref);
	g_free(ev);
}

const char *
magpie_event_name(MagpieStanzaEvent *ev)
{
	g_return_val_if_fail(ev != NULL, NULL);
	return ev->name;
}

MagpieStanza *
magpie_event_stanza(MagpieStanzaEvent *ev)
{
	g_return_val_if_fail(ev != NULL, NULL);
	return ev->stanza;
}

MagpieSession *
magpie_event_session(MagpieStanzaEvent *ev)
{
	g_return_val_if_fail(ev != NULL, NULL);
	return ev->session;
}

MagpieJid *
magpie_event_from(MagpieStanzaEvent *ev)
{
	g_return_val_if_fail(ev != NULL, NULL);
	return ev->from;
}

MagpieJid *
magpie_event_to(MagpieStanzaEvent *ev)
{
	g_return_val_if_fail(ev != NULL, NULL);
	return ev->to;
}

static void
hook_finish(MagpieStanzaEvent *ev, MagpieHookResult result)
{
	MagpieHookDoneFunc done = ev->done;
	gpointer done_data = ev->done_data;

	ev->running = FALSE;
	ev->pending = FALSE;
	ev->done = NULL;
	ev->done_data = NULL;
	if (ev->in_pending_set) {
		ev->in_pending_set = FALSE;
		g_hash_table_remove(pending_events, ev);
	}
	g_clear_pointer(&ev->snapshot, g_ptr_array_unref);

	if (done)
		done(ev, result, done_data);
	/* Released after the default action, so the stream's next stanza
	 * cannot overtake this one. */
	if (ev->held) {
		ev->held = FALSE;
		session_ops->release(ev->session);
	}
	magpie_event_unref(ev); /* the run's ref */
}

static void
hook_continue(MagpieStanzaEvent *ev)
{
	while (ev->snapshot && ev->position < ev->snapshot->len) {
		HookEntry *entry = ev->snapshot->pdata[ev->position];
		MagpieHookResult result;

		if (entry->dead) {
			ev->position++;
			continue;
		}

		ev->in_handler = TRUE;
		ev->early_resume = -1;
		result = entry->func(entry->mod, ev);
		ev->in_handler = FALSE;

		switch (result) {
		case MAGPIE_HOOK_CONTINUE:
			ev->position++;
			break;
		case MAGPIE_HOOK_STOP:
			hook_finish(ev, MAGPIE_HOOK_STOP);
			return;
		case MAGPIE_HOOK_PENDING:
			ev->pending = TRUE;
			if (ev->session && !ev->held) {
				ev->held = TRUE;
				session_ops->hold(ev->session);
			}
			g_hash_table_add(pending_events, ev);
			ev->in_pending_set = TRUE;
			if (ev->early_resume >= 0)
				hook_schedule_resume(ev, (MagpieHookResult) ev->early_resume);
			else if (entry->dead)
				hook_schedule_resume(ev, MAGPIE_HOOK_CONTINUE);
			return;
		default:
			g_message("BUG: a handler of event %s returned %d; treated as CONTINUE",
			          ev->name, (int) result);
			ev->position++;
			break;
		}
	}
	hook_finish(ev, MAGPIE_HOOK_CONTINUE);
}

static gboolean
hook_resume_cb(gpointer data)
{
	MagpieStanzaEvent *ev = data;

	g_clear_pointer(&ev->resume_source, g_source_unref);
	if (ev->resume_result == MAGPIE_HOOK_STOP) {
		hook_finish(ev, MAGPIE_HOOK_STOP);
	} else {
		ev->position++;
		hook_continue(ev);
	}
	return G_SOURCE_REMOVE;
}

static void
hook_schedule_resume(MagpieStanzaEvent *ev, MagpieHookResult result)
{
	ev->pending = FALSE;
	if (ev->in_pending_set) {
		ev->in_pending_set = FALSE;
		g_hash_table_remove(pending_events, ev);
	}
	ev->resume_result = result;
	ev->resume_source = g_idle_source_new();
	g_source_set_priority(ev->resume_source, G_PRIORITY_DEFAULT);
	g_source_set_callback(ev->resume_source, hook_resume_cb, ev, NULL);
	g_source_set_static_name(ev->resume_source, "magpie hook resume");
	g_source_attach(ev->resume_source, NULL);
}

void
magpie_hook_resume(MagpieStanzaEvent *ev, MagpieHookResult result)
{
	g_return_if_fail(ev != NULL);

	if (result != MAGPIE_HOOK_CONTINUE && result != MAGPIE_HOOK_STOP) {
		g_message("BUG: magpie_hook_resume(%s) with result %d; treated as CONTINUE",
		          ev->name, (int) result);
		result = MAGPIE_HOOK_CONTINUE;
	}
	if (ev->in_handler && !ev->pending) {
		/* Resumed before the handler even returned PENDING. */
		ev->early_resume = (int) result;
		return;
	}
	if (!ev->pending) {
		/* Also the case after the pending handler's module was unloaded
		 * and the event went on without it. */
		g_debug("magpie_hook_resume(%s): event is not pending; ignored", ev->name);
		return;
	}
	hook_schedule_resume(ev, result);
}

void
magpie_hook_run(MagpieStanzaEvent *ev, MagpieHookDoneFunc done, gpointer user_data)
{
	g_return_if_fail(ev != NULL);
	g_return_if_fail(!ev->running);

	magpie_event_ref(ev); /* dropped by hook_finish() */
	ev->running = TRUE;
	ev->done = done;
	ev->done_data = user_data;
	ev->position = 0;
	ev->snapshot = ev->chain->entries->len > 0 ? g_ptr_array_ref(ev->chain->entries) : NULL;
	hook_continue(ev);
}

void
magpie_hook_fire(const char *event, MagpieStanza *stanza, MagpieSession *session, MagpieJid *from,
                 MagpieJid *to)
{
	g_autoptr(MagpieStanzaEvent) ev = NULL;

	g_return_if_fail(event != NULL);

	if (!magpie_hook_has_handlers(event))
		return;
	ev = magpie_event_new(event, stanza, session, from, to);
	magpie_hook_run(ev, NULL, NULL);
}
