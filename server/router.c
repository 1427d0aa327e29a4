/* The router: docs/routing.md as code (RFC 6120 §8, RFC 6121 §8).
 *
 * Every stanza goes through route(): stanza.pre hooks, then the event of
 * its destination, then the default rule when no handler stopped it. The
 * default rules run as the events' completion callbacks, so a handler that
 * answers PENDING simply delays them.
 */
#include <string.h>

#include "c2s.h"
#include "module-host.h"
#include "router-private.h"
#include "session-private.h"
#include "stanza-private.h"

typedef enum {
	KIND_MESSAGE,
	KIND_PRESENCE,
	KIND_IQ,
} StanzaKind;

static StanzaKind
stanza_kind(MagpieStanza *stanza)
{
	const char *name = magpie_stanza_name(stanza);

	if (name[0] == 'm')
		return KIND_MESSAGE;
	if (name[0] == 'p')
		return KIND_PRESENCE;
	return KIND_IQ;
}

static const char *
stanza_type(MagpieStanza *stanza)
{
	const char *type = magpie_stanza_get_attr(stanza, "type");

	if (type)
		return type;
	return stanza_kind(stanza) == KIND_MESSAGE ? "normal" : "";
}

static gboolean
is_type(MagpieStanza *stanza, const char *type)
{
	return g_str_equal(stanza_type(stanza), type);
}

static gboolean
is_subscription_type(MagpieStanza *stanza)
{
	const char *t = magpie_stanza_get_attr(stanza, "type");

	if (!t) /* available presence, the most common */
		return FALSE;
	return g_str_equal(t, "subscribe") || g_str_equal(t, "subscribed") ||
	       g_str_equal(t, "unsubscribe") || g_str_equal(t, "unsubscribed") ||
	       g_str_equal(t, "probe");
}

/* Errors (RFC 6120 §8.3). */

MagpieStanza *
magpie_stanza_error_new(MagpieStanza *stanza, const char *type, const char *condition,
                        const char *text)
{
	g_return_val_if_fail(stanza != NULL && type != NULL && condition != NULL, NULL);

	if (is_type(stanza, "error"))
		return NULL;
	/* An IQ result never gets an error either: nobody waits for it. */
	if (stanza_kind(stanza) == KIND_IQ && is_type(stanza, "result"))
		return NULL;
	MagpieStanza *error = magpie_stanza_copy(stanza);
	const char *from = magpie_stanza_get_attr(stanza, "from");
	const char *to = magpie_stanza_get_attr(stanza, "to");
	magpie_stanza_set_attr(error, "from", to);
	magpie_stanza_set_attr(error, "to", from);
	magpie_stanza_set_attr(error, "type", "error");
	MagpieElement *el = magpie_element_add_child(magpie_stanza_root(error), "error", NULL);
	magpie_element_set_attr(el, "type", type);
	magpie_element_add_child(el, condition, MAGPIE_NS_STANZAS);
	if (text) {
		MagpieElement *t = magpie_element_add_child(el, "text", MAGPIE_NS_STANZAS);
		magpie_element_set_attr(t, "xml:lang", "en");
		magpie_element_add_text(t, text, -1);
	}
	return error;
}

static void route(MagpieStanza *stanza, MagpieSession *origin, MagpieJid *from, MagpieJid *to);

/* The error goes back from the address the original was sent to; for a
 * stanza without 'to' that is the sender's own account. */
void
magpie_stanza_reply_error(MagpieStanza *stanza, const char *type, const char *condition,
                          const char *text)
{
	g_autoptr(MagpieStanza) error = magpie_stanza_error_new(stanza, type, condition, text);

	if (!error)
		return;
	const char *sender = magpie_stanza_get_attr(stanza, "from");
	g_autoptr(MagpieJid) to = sender ? magpie_jid_parse(sender, NULL) : NULL;
	if (!to)
		return;
	const char *original_to = magpie_stanza_get_attr(stanza, "to");
	g_autoptr(MagpieJid) from =
	        original_to ? magpie_jid_parse(original_to, NULL) : magpie_jid_bare(to);
	if (!from)
		return;
	magpie_stanza_set_attr(error, "from", magpie_jid_string(from));
	route(error, NULL, from, to);
}

/* Delivery. */

gboolean
magpie_deliver_to_session(MagpieStanza *stanza, MagpieJid *full)
{
	g_return_val_if_fail(stanza != NULL && full != NULL, FALSE);

	MagpieSession *session = magpie_session_lookup(full);
	if (!session || !magpie_session_is_alive(session))
		return FALSE;
	magpie_session_send(session, stanza);
	return TRUE;
}

/* Sessions picked from the registry's list of an account, copied (on the
 * stack for the usual handful) before anything is sent to them: sending
 * may end a session and so change that list. */
#define TARGETS_ON_STACK 16

typedef struct {
	MagpieSession **v;
	guint len;
	MagpieSession *on_stack[TARGETS_ON_STACK];
} Targets;

static void
targets_init(Targets *t, guint capacity)
{
	t->v = capacity <= TARGETS_ON_STACK ? t->on_stack : g_new(MagpieSession *, capacity);
	t->len = 0;
}

static void
targets_clear(Targets *t)
{
	if (t->v != t->on_stack)
		g_free(t->v);
}

static void
targets_send(Targets *t, MagpieStanza *stanza)
{
	for (guint i = 0; i < t->len; i++)
		magpie_session_send(t->v[i], stanza);
}

/* The available resources of @bare's account. */
static void
select_available(MagpieJid *bare, Targets *out)
{
	const GPtrArray *all = magpie_sessions_peek(bare);

	targets_init(out, all ? all->len : 0);
	for (guint i = 0; all && i < all->len; i++) {
		MagpieSession *s = all->pdata[i];
		if (s->available)
			out->v[out->len++] = s;
	}
}

/* Available resources of @bare with non-negative priority: all of them, or
 * only those with the highest priority. */
static void
select_resources(MagpieJid *bare, gboolean highest_only, Targets *out)
{
	const GPtrArray *all = magpie_sessions_peek(bare);
	int best = -1;

	targets_init(out, all ? all->len : 0);
	if (!all)
		return;
	for (guint i = 0; i < all->len; i++) {
		MagpieSession *s = all->pdata[i];
		if (s->available && s->priority > best)
			best = s->priority;
	}
	for (guint i = 0; i < all->len; i++) {
		MagpieSession *s = all->pdata[i];
		if (!s->available || s->priority < 0)
			continue;
		if (highest_only && s->priority != best)
			continue;
		out->v[out->len++] = s;
	}
}

static void
bounce(MagpieStanzaEvent *ev, const char *type, const char *condition)
{
	magpie_stanza_reply_error(magpie_event_stanza(ev), type, condition, NULL);
}

static void
offline_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	if (result == MAGPIE_HOOK_CONTINUE)
		bounce(ev, "cancel", "service-unavailable");
}

static void
message_bare_default(MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *to = magpie_event_to(ev);
	const char *type = stanza_type(stanza);

	if (g_str_equal(type, "error"))
		return;
	if (g_str_equal(type, "groupchat")) {
		bounce(ev, "cancel", "service-unavailable");
		return;
	}
	gboolean headline = g_str_equal(type, "headline");
	Targets targets;
	select_resources(to, !headline, &targets);
	targets_send(&targets, stanza);
	targets_clear(&targets);
	if (targets.len > 0 || headline)
		return;
	/* chat or normal with nobody available: RFC 6121 §8.5.2.1.1 */
	g_autoptr(MagpieStanzaEvent) offline =
	        magpie_event_new(MAGPIE_EVENT_MESSAGE_OFFLINE, stanza, magpie_event_session(ev),
	                         magpie_event_from(ev), to);
	magpie_hook_run(offline, offline_done, NULL);
}

static void
presence_to_available(MagpieStanza *stanza, MagpieJid *to)
{
	Targets targets;

	if (is_type(stanza, "error"))
		return;
	select_available(to, &targets);
	targets_send(&targets, stanza);
	targets_clear(&targets);
}

static void
presence_bare_default(MagpieStanzaEvent *ev)
{
	presence_to_available(magpie_event_stanza(ev), magpie_event_to(ev));
}

static void
iq_to_account(MagpieStanzaEvent *ev, gboolean to_host)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);

	if (is_type(stanza, "get") || is_type(stanza, "set"))
		magpie_iq_dispatch(stanza, magpie_event_session(ev), magpie_event_from(ev),
		                   magpie_event_to(ev), to_host);
	else
		magpie_iq_handle_response(stanza, magpie_event_to(ev));
}

static void
bare_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	if (result == MAGPIE_HOOK_STOP)
		return;
	switch (stanza_kind(magpie_event_stanza(ev))) {
	case KIND_MESSAGE:
		message_bare_default(ev);
		break;
	case KIND_PRESENCE:
		presence_bare_default(ev);
		break;
	case KIND_IQ:
		iq_to_account(ev, FALSE);
		break;
	}
}

static void
full_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *to = magpie_event_to(ev);

	if (result == MAGPIE_HOOK_STOP)
		return;
	if (magpie_deliver_to_session(stanza, to))
		return;
	/* No such resource: RFC 6121 §8.5.3.2 */
	switch (stanza_kind(stanza)) {
	case KIND_MESSAGE:
		if (is_type(stanza, "groupchat")) {
			bounce(ev, "cancel", "service-unavailable");
		} else if (is_type(stanza, "normal") || is_type(stanza, "chat")) {
			message_bare_default(ev);
		}
		break;
	case KIND_PRESENCE:
		break;
	case KIND_IQ:
		if (is_type(stanza, "get") || is_type(stanza, "set"))
			bounce(ev, "cancel", "service-unavailable");
		break;
	}
}

static void
host_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);

	if (result == MAGPIE_HOOK_STOP)
		return;
	switch (stanza_kind(stanza)) {
	case KIND_MESSAGE:
		bounce(ev, "cancel", "service-unavailable");
		break;
	case KIND_PRESENCE:
		break;
	case KIND_IQ:
		iq_to_account(ev, TRUE);
		break;
	}
}

static void
run_event(const char *name, MagpieStanza *stanza, MagpieSession *origin, MagpieJid *from,
          MagpieJid *to, MagpieHookDoneFunc done)
{
	g_autoptr(MagpieStanzaEvent) ev = magpie_event_new(name, stanza, origin, from, to);

	magpie_hook_run(ev, done, NULL);
}

/* The destination, once stanza.pre has let the stanza through. */
static void
dispatch(MagpieStanza *stanza, MagpieSession *origin, MagpieJid *from, MagpieJid *to)
{
	StanzaKind kind = stanza_kind(stanza);

	if (!magpie_config_is_local_host(magpie_jid_domain(to))) {
		/* No federation yet: docs/routing.md "remote domain". */
		if (kind != KIND_PRESENCE)
			magpie_stanza_reply_error(stanza, "cancel", "remote-server-not-found",
			                          NULL);
		return;
	}
	if (!magpie_jid_node(to)) {
		if (magpie_jid_resource(to) && kind != KIND_IQ) {
			/* host/resource: nothing lives there. */
			if (kind == KIND_MESSAGE) {
				magpie_stanza_reply_error(stanza, "cancel", "service-unavailable",
				                          NULL);
			}
			return;
		}
		run_event(kind == KIND_MESSAGE    ? MAGPIE_EVENT_MESSAGE_HOST
		          : kind == KIND_PRESENCE ? MAGPIE_EVENT_PRESENCE_HOST
		                                  : MAGPIE_EVENT_IQ_HOST,
		          stanza, origin, from, to, host_done);
		return;
	}
	if (kind == KIND_PRESENCE && is_subscription_type(stanza)) {
		/* Subscription state lives with the account, whatever the resource. */
		g_autoptr(MagpieJid) bare = magpie_jid_bare(to);
		run_event(MAGPIE_EVENT_PRESENCE_IN, stanza, origin, from, bare, NULL);
		return;
	}
	if (magpie_jid_is_bare(to)) {
		/* Presence broadcasts come this way once per contact: without a
		 * presence.bare handler, the default rule needs no event. */
		if (kind == KIND_PRESENCE &&
		    !magpie_hook_has_handlers(MAGPIE_EVENT_PRESENCE_BARE)) {
			presence_to_available(stanza, to);
			return;
		}
		run_event(kind == KIND_MESSAGE    ? MAGPIE_EVENT_MESSAGE_BARE
		          : kind == KIND_PRESENCE ? MAGPIE_EVENT_PRESENCE_BARE
		                                  : MAGPIE_EVENT_IQ_BARE,
		          stanza, origin, from, to, bare_done);
	} else {
		run_event(kind == KIND_MESSAGE    ? MAGPIE_EVENT_MESSAGE_FULL
		          : kind == KIND_PRESENCE ? MAGPIE_EVENT_PRESENCE_FULL
		                                  : MAGPIE_EVENT_IQ_FULL,
		          stanza, origin, from, to, full_done);
	}
}

static void
pre_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	if (result == MAGPIE_HOOK_STOP)
		return;
	dispatch(magpie_event_stanza(ev), magpie_event_session(ev), magpie_event_from(ev),
	         magpie_event_to(ev));
}

static void
route(MagpieStanza *stanza, MagpieSession *origin, MagpieJid *from, MagpieJid *to)
{
	if (magpie_hook_has_handlers(MAGPIE_EVENT_STANZA_PRE))
		run_event(MAGPIE_EVENT_STANZA_PRE, stanza, origin, from, to, pre_done);
	else
		dispatch(stanza, origin, from, to);
}

void
magpie_route(MagpieStanza *stanza, MagpieJid *from)
{
	g_return_if_fail(stanza != NULL && from != NULL);

	magpie_stanza_set_attr(stanza, "from", magpie_jid_string(from));
	const char *to_attr = magpie_stanza_get_attr(stanza, "to");
	g_autoptr(MagpieJid) to = to_attr ? magpie_jid_parse(to_attr, NULL) : NULL;
	if (!to) {
		g_debug("router: dropping a %s from %s without a valid 'to'",
		        magpie_stanza_name(stanza), magpie_jid_string(from));
		return;
	}
	route(stanza, NULL, from, to);
}

void
magpie_route_each(MagpieStanza *stanza, MagpieJid *from, MagpieJid *const *to, guint n_to)
{
	g_return_if_fail(stanza != NULL && from != NULL && (to != NULL || n_to == 0));

	/* One working copy serves every address in turn while nothing keeps
	 * or changes it: its 'to' is replaced and its bytes spliced rather
	 * than copied and serialized each time. A copy that a handler kept
	 * (PENDING) or modified is left to it, and the next address gets a
	 * fresh one, so each address sees what magpie_route() of its own copy
	 * would have shown it. */
	MagpieStanza *work = NULL;

	for (guint i = 0; i < n_to; i++) {
		if (!work) {
			work = magpie_stanza_copy(stanza);
			magpie_stanza_set_attr(work, "from", magpie_jid_string(from));
		}
		magpie_stanza_set_to_internal(work, magpie_jid_string(to[i]));
		guint generation = magpie_stanza_generation(work);
		route(work, NULL, from, to[i]);
		if (magpie_stanza_is_shared(work) || magpie_stanza_generation(work) != generation)
			g_clear_pointer(&work, magpie_stanza_unref);
	}
	if (work)
		magpie_stanza_unref(work);
}

/* presence.out let an outbound subscription stanza through. */
static void
out_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	if (result == MAGPIE_HOOK_STOP)
		return;
	dispatch(magpie_event_stanza(ev), magpie_event_session(ev), magpie_event_from(ev),
	         magpie_event_to(ev));
}

/* A client's stanza once stanza.pre let it through: outbound subscription
 * state changes (RFC 6121 §3) only now, so a stanza that stanza.pre refused
 * (blocking) changes no state. */
static void
client_outbound(MagpieStanza *stanza, MagpieSession *session, MagpieJid *from, MagpieJid *to)
{
	if (stanza_kind(stanza) == KIND_PRESENCE && is_subscription_type(stanza))
		run_event(MAGPIE_EVENT_PRESENCE_OUT, stanza, session, from, to, out_done);
	else
		dispatch(stanza, session, from, to);
}

static void
client_pre_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	if (result == MAGPIE_HOOK_STOP)
		return;
	client_outbound(magpie_event_stanza(ev), magpie_event_session(ev), magpie_event_from(ev),
	                magpie_event_to(ev));
}

void
magpie_router_from_session(MagpieStanza *stanza, MagpieSession *session, MagpieJid *to)
{
	g_autoptr(MagpieJid) target = to ? magpie_jid_ref(to) : magpie_jid_bare(session->jid);

	if (magpie_hook_has_handlers(MAGPIE_EVENT_STANZA_PRE))
		run_event(MAGPIE_EVENT_STANZA_PRE, stanza, session, session->jid, target,
		          client_pre_done);
	else
		client_outbound(stanza, session, session->jid, target);
}

/* RFC 6121 §4.2.2, §4.4.2: the account's available resources, the sender
 * included when it is (still) available; one serialization for all. */
static void
deliver_to_own_resources(MagpieSession *session, MagpieStanza *presence)
{
	Targets targets;

	select_available(session->bare, &targets);
	targets_send(&targets, presence);
	targets_clear(&targets);
}

/* presence.broadcast done: unless a module stopped it, the account's own
 * resources get it (modules have decorated it by now, e.g. the vCard
 * photo hash); then, for initial presence, session.available. */
static void
broadcast_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	MagpieSession *session = magpie_event_session(ev);
	MagpieStanza *presence = magpie_event_stanza(ev);
	gboolean initial = GPOINTER_TO_INT(user_data);

	if (result != MAGPIE_HOOK_STOP)
		deliver_to_own_resources(session, presence);
	/* Kept while the session is available, for probes and the account's
	 * new resources: as the modules decorated it, in its exact size and
	 * without the serialization (over 1 KB less per session). */
	if (session->presence == presence) {
		session->presence = magpie_stanza_copy_compact_internal(presence);
		magpie_stanza_unref(presence);
	}
	if (initial && session->available)
		magpie_hook_fire(MAGPIE_EVENT_SESSION_AVAILABLE, presence, session, session->jid,
		                 NULL);
}

static void
reply_bad_request(MagpieSession *session, MagpieStanza *presence, const char *text)
{
	g_autoptr(MagpieStanza) error =
	        magpie_stanza_error_new(presence, "modify", "bad-request", text);

	if (error) {
		magpie_stanza_set_attr(error, "from", NULL);
		magpie_session_send(session, error);
	}
}

void
magpie_router_self_presence(MagpieSession *session, MagpieStanza *presence)
{
	const char *type = magpie_stanza_get_attr(presence, "type");
	gboolean initial = FALSE;

	if (type && !g_str_equal(type, "unavailable")) {
		if (!g_str_equal(type, "error"))
			reply_bad_request(session, presence, NULL);
		return;
	}
	if (!type) {
		g_autofree char *prio = magpie_element_get_child_text(magpie_stanza_root(presence),
		                                                      "priority", NULL);
		int priority = 0;
		if (prio) {
			char *end;
			gint64 v = g_ascii_strtoll(g_strstrip(prio), &end, 10);
			if (*end || end == prio || v < -128 || v > 127) {
				reply_bad_request(session, presence, "Priority is -128..127");
				return;
			}
			priority = v;
		}
		initial = !session->available;
		session->available = TRUE;
		session->priority = priority;
		g_clear_pointer(&session->presence, magpie_stanza_unref);
		session->presence = magpie_stanza_ref(presence);
	} else {
		if (!session->available)
			return;
		session->available = FALSE;
		session->priority = 0;
		g_clear_pointer(&session->presence, magpie_stanza_unref);
	}
	g_autoptr(MagpieStanzaEvent) ev = magpie_event_new(MAGPIE_EVENT_PRESENCE_BROADCAST,
	                                                   presence, session, session->jid, NULL);
	magpie_hook_run(ev, broadcast_done, GINT_TO_POINTER(initial));
}

void
magpie_router_session_ended(MagpieSession *session)
{
	if (session->available) {
		g_autoptr(MagpieStanza) unavailable =
		        magpie_stanza_new("presence", MAGPIE_NS_CLIENT);
		magpie_stanza_set_attr(unavailable, "type", "unavailable");
		magpie_stanza_set_attr(unavailable, "from", magpie_jid_string(session->jid));
		session->available = FALSE;
		g_clear_pointer(&session->presence, magpie_stanza_unref);
		g_autoptr(MagpieStanzaEvent) ev = magpie_event_new(
		        MAGPIE_EVENT_PRESENCE_BROADCAST, unavailable, session, session->jid, NULL);
		magpie_hook_run(ev, broadcast_done, GINT_TO_POINTER(FALSE));
	}
	magpie_hook_fire(MAGPIE_EVENT_SESSION_END, NULL, session, session->jid, NULL);
}
