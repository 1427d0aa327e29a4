/* Message Carbons (XEP-0280): a resource that enabled Carbons gets a copy
 * of the chat messages its account receives on other resources
 * (<received/>) and of those its account's other resources send (<sent/>).
 *
 * Received copies are made in message.bare and message.full at LATE, just
 * before the core delivers by the rules of docs/routing.md: the resources
 * the core chooses get the original, every other enabled resource a copy.
 * Sent copies are made in stanza.pre at LATE, after blocking (EARLY) has
 * refused what may not go out.
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_CARBONS  "urn:xmpp:carbons:2"
#define NS_FORWARD  "urn:xmpp:forward:0"
#define NS_HINTS    "urn:xmpp:hints"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"

/* Per-session slot: Carbons enabled. */
#define ENABLED GINT_TO_POINTER(1)

/* Sessions with Carbons enabled, over all accounts: while there are none
 * (the common case) no message needs a copy, so the hooks return before
 * looking for recipients. Kept by the slot's destroy function, which the
 * core calls when the slot is cleared, the session ends or the module is
 * unloaded. */
static guint enabled_sessions;

static void
enabled_slot_destroy(gpointer data)
{
	g_return_if_fail(enabled_sessions > 0);
	enabled_sessions--;
}

static const char *
message_type(MagpieStanza *stanza)
{
	const char *type = magpie_stanza_get_attr(stanza, "type");

	return type ? type : "normal";
}

/* XEP-0280 §6 (the suggested rules): chat, or normal with a body; never
 * from a MUC (groupchat, or a private message carrying muc#user), never
 * with the <no-copy/> hint, never a carbon itself. <private/> is checked
 * by the callers. */
static gboolean
is_eligible(MagpieStanza *stanza)
{
	const char *type = message_type(stanza);

	if (!g_str_equal(magpie_stanza_name(stanza), "message"))
		return FALSE;
	if (g_str_equal(type, "normal")) {
		if (!magpie_stanza_find_child(stanza, "body", NULL))
			return FALSE;
	} else if (!g_str_equal(type, "chat")) {
		return FALSE;
	}
	if (magpie_stanza_find_child(stanza, "no-copy", NS_HINTS) ||
	    magpie_stanza_find_child(stanza, "x", NS_MUC_USER) ||
	    magpie_stanza_find_child(stanza, "received", NS_CARBONS) ||
	    magpie_stanza_find_child(stanza, "sent", NS_CARBONS))
		return FALSE;
	return TRUE;
}

static gboolean
is_enabled(MagpieModule *mod, MagpieSession *session)
{
	return magpie_session_get_data(session, mod) == ENABLED;
}

/* <message from=bare to=full type=...><@direction><forwarded>original... */
static MagpieStanza *
wrap(MagpieStanza *original, MagpieJid *bare, MagpieSession *target, const char *direction)
{
	MagpieStanza *copy = magpie_stanza_new("message", MAGPIE_NS_CLIENT);
	const char *type = magpie_stanza_get_attr(original, "type");

	magpie_stanza_set_attr(copy, "from", magpie_jid_bare_string(bare));
	magpie_stanza_set_attr(copy, "to", magpie_jid_string(magpie_session_jid(target)));
	if (type)
		magpie_stanza_set_attr(copy, "type", type);
	MagpieElement *dir =
	        magpie_element_add_child(magpie_stanza_root(copy), direction, NS_CARBONS);
	MagpieElement *fwd = magpie_element_add_child(dir, "forwarded", NS_FORWARD);
	magpie_element_append_copy(fwd, magpie_stanza_root(original));
	return copy;
}

/* Copy @stanza to every enabled session of @bare that is not in @skip. */
static void
copy_to_others(MagpieModule *mod, MagpieStanza *stanza, MagpieJid *bare, GPtrArray *skip,
               const char *direction)
{
	g_autoptr(GPtrArray) sessions = magpie_sessions_for(bare);

	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *s = sessions->pdata[i];

		if (!is_enabled(mod, s) || g_ptr_array_find(skip, s, NULL))
			continue;
		g_autoptr(MagpieStanza) copy = wrap(stanza, bare, s, direction);
		magpie_session_send(s, copy);
	}
}

/* The resources the core delivers a chat/normal message for @bare to
 * (docs/routing.md): available, non-negative priority, the highest. */
static GPtrArray *
bare_recipients(MagpieJid *bare)
{
	g_autoptr(GPtrArray) all = magpie_sessions_for(bare);
	GPtrArray *out = g_ptr_array_new();
	int best = -1;

	for (guint i = 0; i < all->len; i++) {
		MagpieSession *s = all->pdata[i];
		if (magpie_session_is_available(s) && magpie_session_priority(s) > best)
			best = magpie_session_priority(s);
	}
	for (guint i = 0; i < all->len; i++) {
		MagpieSession *s = all->pdata[i];
		if (magpie_session_is_available(s) && magpie_session_priority(s) >= 0 &&
		    magpie_session_priority(s) == best)
			g_ptr_array_add(out, s);
	}
	return out;
}

/* XEP-0280 §7: the receiving server removes <private/> before delivery,
 * and copies nothing. The element is removed in place: the stanza is on
 * its last step, to the recipient. */
static gboolean
take_private(MagpieStanza *stanza)
{
	MagpieElement *priv = magpie_stanza_find_child(stanza, "private", NS_CARBONS);
	gboolean found = priv != NULL;

	while (priv) {
		magpie_element_remove_child(magpie_stanza_root(stanza), priv);
		priv = magpie_stanza_find_child(stanza, "private", NS_CARBONS);
	}
	return found;
}

static void
received_copies(MagpieModule *mod, MagpieStanzaEvent *ev, GPtrArray *recipients)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	g_autoptr(MagpieJid) bare = magpie_jid_bare(magpie_event_to(ev));

	copy_to_others(mod, stanza, bare, recipients, "received");
}

/* No copies to make: only <private/> goes (§7), as it would below. */
static MagpieHookResult
strip_private_only(MagpieStanza *stanza)
{
	if (magpie_stanza_find_child(stanza, "private", NS_CARBONS) && is_eligible(stanza))
		take_private(stanza);
	return MAGPIE_HOOK_CONTINUE;
}

static MagpieHookResult
carbons_message_bare(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);

	if (enabled_sessions == 0)
		return strip_private_only(stanza);
	if (!is_eligible(stanza) || take_private(stanza))
		return MAGPIE_HOOK_CONTINUE;
	g_autoptr(GPtrArray) recipients = bare_recipients(magpie_event_to(ev));
	received_copies(mod, ev, recipients);
	return MAGPIE_HOOK_CONTINUE;
}

static MagpieHookResult
carbons_message_full(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieJid *to = magpie_event_to(ev);

	if (enabled_sessions == 0)
		return strip_private_only(stanza);
	if (!is_eligible(stanza) || take_private(stanza))
		return MAGPIE_HOOK_CONTINUE;
	MagpieSession *session = magpie_session_lookup(to);
	g_autoptr(GPtrArray) recipients = NULL;
	if (session && magpie_session_is_alive(session)) {
		recipients = g_ptr_array_new();
		g_ptr_array_add(recipients, session);
	} else {
		/* RFC 6121 §8.5.3.2.1: no such resource, delivered as to the bare JID. */
		g_autoptr(MagpieJid) bare = magpie_jid_bare(to);
		recipients = bare_recipients(bare);
	}
	received_copies(mod, ev, recipients);
	return MAGPIE_HOOK_CONTINUE;
}

/* XEP-0280 §8: what a resource sends, its account's other enabled
 * resources get as <sent/>, whether or not the sender enabled Carbons. */
static MagpieHookResult
carbons_stanza_pre(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	MagpieSession *origin = magpie_event_session(ev);
	MagpieJid *to = magpie_event_to(ev);

	if (enabled_sessions == 0)
		return MAGPIE_HOOK_CONTINUE;
	if (!origin || !stanza || !to || !is_eligible(stanza) ||
	    magpie_stanza_find_child(stanza, "private", NS_CARBONS))
		return MAGPIE_HOOK_CONTINUE;
	MagpieJid *from = magpie_session_jid(origin);
	if (!from)
		return MAGPIE_HOOK_CONTINUE;
	/* To the account itself: its resources get <received/> copies. */
	if (magpie_jid_bare_equal(from, to))
		return MAGPIE_HOOK_CONTINUE;
	g_autoptr(MagpieJid) bare = magpie_jid_bare(from);
	g_autoptr(GPtrArray) skip = g_ptr_array_new();
	g_ptr_array_add(skip, origin);
	copy_to_others(mod, stanza, bare, skip, "sent");
	return MAGPIE_HOOK_CONTINUE;
}

/* Enable and disable (XEP-0280 §4, §5): only a session of the account
 * itself, for itself; repeating either is not an error. */
static void
carbons_toggle(MagpieModule *mod, MagpieIqRequest *req)
{
	MagpieSession *session = magpie_iq_request_session(req);
	MagpieJid *from = magpie_iq_request_from(req);
	MagpieJid *to = magpie_iq_request_to(req);
	gboolean enable =
	        g_str_equal(magpie_element_name(magpie_iq_request_payload(req)), "enable");

	if (!session || !from || !to || !magpie_jid_bare_equal(from, to) ||
	    !magpie_jid_equal(from, magpie_session_jid(session))) {
		magpie_iq_reply_error(req, "cancel", "not-allowed", NULL);
		return;
	}
	if (enable && !is_enabled(mod, session)) {
		enabled_sessions++;
		magpie_session_set_data(session, mod, ENABLED, enabled_slot_destroy);
	} else if (!enable) {
		/* enabled_slot_destroy() counts it down when it was set. */
		magpie_session_set_data(session, mod, NULL, NULL);
	}
	g_debug("carbons: %s for %s", enable ? "enabled" : "disabled", magpie_jid_string(from));
	magpie_iq_reply(req, NULL);
}

static const MagpieHookSpec carbons_hooks[] = {
	{ MAGPIE_EVENT_STANZA_PRE, carbons_stanza_pre, MAGPIE_PRIORITY_LATE },
	{ MAGPIE_EVENT_MESSAGE_BARE, carbons_message_bare, MAGPIE_PRIORITY_LATE },
	{ MAGPIE_EVENT_MESSAGE_FULL, carbons_message_full, MAGPIE_PRIORITY_LATE },
	{ NULL },
};

static const MagpieIqSpec carbons_iqs[] = {
	{ NS_CARBONS, "enable", MAGPIE_IQ_SET, carbons_toggle },
	{ NS_CARBONS, "disable", MAGPIE_IQ_SET, carbons_toggle },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_carbons = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "carbons",
	.description = "Message Carbons (XEP-0280)",
	.hooks = carbons_hooks,
	.iqs = carbons_iqs,
	.disco_features = (const char *const[]){ NS_CARBONS, NULL },
};
