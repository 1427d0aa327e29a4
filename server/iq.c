/* IQ handlers keyed by (namespace, element), requests and their replies,
 * and IQs the server sends itself (magpie_iq_send()).
 *
 * Every get/set dispatched here gets exactly one reply (RFC 6120 §8.2.3):
 * from its handler, or service-unavailable when nobody owns the payload's
 * namespace (RFC 6120 §8.3.3.19), or when the owner does not take this
 * type or this kind of address (documented choice: a known namespace with
 * an unsupported type is "not available here" rather than
 * feature-not-implemented), bad-request when the IQ does not have exactly
 * one child, internal-server-error when a handler drops the request
 * unanswered (a bug, logged).
 */
#include <string.h>

#include "module-host.h"
#include "module-internal.h"

typedef struct {
	char *xmlns;
	char *element;
	guint types;
	MagpieIqFunc func;
	gboolean host_only;
	gboolean preauth;
	MagpieModule *mod;
} IqOwner;

struct _MagpieIqRequest {
	gint ref_count;
	MagpieStanza *stanza;
	MagpieElement *payload;
	MagpieIqType type;
	MagpieJid *from; /* the sender (may be NULL only in odd internal cases) */
	MagpieJid *to;   /* effective 'to' */
	MagpieSession *session;
	char *owner_name; /* for the BUG log line */
	gboolean answered;
};

typedef struct {
	char *id;
	MagpieModule *mod;
	MagpieJid *from; /* we sent it from */
	MagpieJid *to;   /* we sent it to (NULL: no 'to') */
	MagpieIqResponseFunc callback;
	gpointer user_data;
	GDestroyNotify destroy;
	GSource *timeout;
} PendingIq;

static GHashTable *iq_owners;   /* "xmlns\nelement" -> IqOwner */
static GHashTable *pending_iqs; /* id -> PendingIq */
static guint64 iq_id_counter;

static void
iq_owner_free(gpointer data)
{
	IqOwner *owner = data;

	g_free(owner->xmlns);
	g_free(owner->element);
	g_free(owner);
}

static char *
iq_key(const char *xmlns, const char *element)
{
	return g_strconcat(xmlns ? xmlns : "", "\n", element, NULL);
}

gboolean
magpie_iq_is_owned(const char *xmlns, const char *element)
{
	g_autofree char *key = NULL;

	if (iq_owners == NULL)
		return FALSE;
	key = iq_key(xmlns, element);
	return g_hash_table_contains(iq_owners, key);
}

gboolean
magpie_iq_register(MagpieModule *mod, const MagpieIqSpec *spec, GError **error)
{
	IqOwner *owner;
	char *key;

	g_return_val_if_fail(spec != NULL, FALSE);
	g_return_val_if_fail(spec->xmlns != NULL && spec->element != NULL, FALSE);
	g_return_val_if_fail(spec->func != NULL, FALSE);

	if (iq_owners == NULL)
		iq_owners = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, iq_owner_free);
	key = iq_key(spec->xmlns, spec->element);
	owner = g_hash_table_lookup(iq_owners, key);
	if (owner != NULL) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_CONFLICT,
		            "IQ handler for {%s}%s is already registered by %s", spec->xmlns,
		            spec->element,
		            owner->mod ? magpie_module_name(owner->mod) : "the core");
		g_free(key);
		return FALSE;
	}
	owner = g_new0(IqOwner, 1);
	owner->xmlns = g_strdup(spec->xmlns);
	owner->element = g_strdup(spec->element);
	owner->types = spec->types;
	owner->func = spec->func;
	owner->host_only = spec->host_only;
	owner->preauth = spec->preauth;
	owner->mod = mod;
	g_hash_table_insert(iq_owners, key, owner);
	return TRUE;
}

void
magpie_iq_unregister_module(MagpieModule *mod)
{
	GHashTableIter iter;
	gpointer value;

	if (iq_owners == NULL)
		return;
	g_hash_table_iter_init(&iter, iq_owners);
	while (g_hash_table_iter_next(&iter, NULL, &value)) {
		if (((IqOwner *) value)->mod == mod)
			g_hash_table_iter_remove(&iter);
	}
}

/* Replies */

/* Route @reply (an answer to a request from @sender) from @reply_from. A
 * request from a stream that has not authenticated has no sender: the
 * answer goes back on that stream as it is. */
static void
iq_route_reply(MagpieSession *session, MagpieStanza *reply, MagpieJid *sender,
               MagpieJid *reply_from)
{
	if (sender == NULL) {
		if (session != NULL && magpie_session_jid(session) == NULL) {
			magpie_stanza_set_attr(reply, "to", NULL);
			magpie_stanza_set_attr(reply, "from", NULL);
			magpie_session_send(session, reply);
			return;
		}
		g_debug("IQ reply with no sender to go to: dropped");
		return;
	}
	magpie_stanza_set_attr(reply, "to", magpie_jid_string(sender));
	magpie_route(reply, reply_from);
}

static void
iq_send_error(MagpieSession *session, MagpieStanza *iq, MagpieJid *sender, MagpieJid *reply_from,
              const char *type, const char *condition, const char *text)
{
	g_autoptr(MagpieStanza) error = magpie_stanza_error_new(iq, type, condition, text);

	if (error == NULL)
		return;
	iq_route_reply(session, error, sender, reply_from);
}

MagpieIqType
magpie_iq_request_type(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, 0);
	return req->type;
}

MagpieStanza *
magpie_iq_request_stanza(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, NULL);
	return req->stanza;
}

MagpieElement *
magpie_iq_request_payload(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, NULL);
	return req->payload;
}

MagpieJid *
magpie_iq_request_from(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, NULL);
	return req->from;
}

MagpieJid *
magpie_iq_request_to(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, NULL);
	return req->to;
}

MagpieSession *
magpie_iq_request_session(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, NULL);
	return req->session;
}

gboolean
magpie_iq_request_is_answered(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, FALSE);
	return req->answered;
}

MagpieIqRequest *
magpie_iq_request_ref(MagpieIqRequest *req)
{
	g_return_val_if_fail(req != NULL, NULL);
	g_atomic_int_inc(&req->ref_count);
	return req;
}

void
magpie_iq_request_unref(MagpieIqRequest *req)
{
	g_return_if_fail(req != NULL);

	if (!g_atomic_int_dec_and_test(&req->ref_count))
		return;
	if (!req->answered) {
		g_message("BUG: %s dropped an IQ request ({%s}%s) without answering it",
		          req->owner_name ? req->owner_name : "the core",
		          req->payload ? magpie_element_ns(req->payload) : "",
		          req->payload ? magpie_element_name(req->payload) : "");
		req->answered = TRUE;
		iq_send_error(req->session, req->stanza, req->from, req->to, "cancel",
		              "internal-server-error", NULL);
	}
	magpie_stanza_unref(req->stanza);
	g_clear_pointer(&req->from, magpie_jid_unref);
	g_clear_pointer(&req->to, magpie_jid_unref);
	g_clear_pointer(&req->session, magpie_session_unref);
	g_free(req->owner_name);
	g_free(req);
}

MagpieStanza *
magpie_iq_result_new(MagpieIqRequest *req)
{
	MagpieStanza *result;
	const char *id;

	g_return_val_if_fail(req != NULL, NULL);

	result = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
	magpie_stanza_set_attr(result, "type", "result");
	id = magpie_stanza_get_attr(req->stanza, "id");
	if (id != NULL)
		magpie_stanza_set_attr(result, "id", id);
	if (req->from != NULL)
		magpie_stanza_set_attr(result, "to", magpie_jid_string(req->from));
	return result;
}

void
magpie_iq_send_result(MagpieIqRequest *req, MagpieStanza *result)
{
	g_return_if_fail(req != NULL);
	g_return_if_fail(result != NULL);
	g_return_if_fail(!req->answered);

	req->answered = TRUE;
	iq_route_reply(req->session, result, req->from, req->to);
}

void
magpie_iq_reply(MagpieIqRequest *req, const MagpieElement *payload)
{
	g_autoptr(MagpieStanza) result = NULL;

	g_return_if_fail(req != NULL);
	g_return_if_fail(!req->answered);

	result = magpie_iq_result_new(req);
	if (payload != NULL)
		magpie_element_append_copy(magpie_stanza_root(result), payload);
	magpie_iq_send_result(req, result);
}

void
magpie_iq_reply_error(MagpieIqRequest *req, const char *type, const char *condition,
                      const char *text)
{
	g_return_if_fail(req != NULL);
	g_return_if_fail(type != NULL && condition != NULL);
	g_return_if_fail(!req->answered);

	req->answered = TRUE;
	iq_send_error(req->session, req->stanza, req->from, req->to, type, condition, text);
}

/* Dispatch */

static void
iq_dispatch_owner(MagpieStanza *iq, MagpieSession *session, MagpieJid *from, MagpieJid *to,
                  gboolean to_host)
{
	MagpieElement *root = magpie_stanza_root(iq);
	MagpieElement *payload;
	const char *type = magpie_stanza_get_attr(iq, "type");
	MagpieIqType iq_type;
	IqOwner *owner = NULL;
	MagpieIqRequest *req;
	MagpieIqFunc func;
	MagpieModule *mod;

	if (g_strcmp0(type, "get") == 0) {
		iq_type = MAGPIE_IQ_GET;
	} else if (g_strcmp0(type, "set") == 0) {
		iq_type = MAGPIE_IQ_SET;
	} else {
		iq_send_error(session, iq, from, to, "modify", "bad-request", NULL);
		return;
	}
	/* RFC 6120 §8.2.3: a get or set has exactly one child. */
	if (magpie_element_count_children(root) != 1) {
		iq_send_error(session, iq, from, to, "modify", "bad-request",
		              "An IQ get or set must contain exactly one child element");
		return;
	}
	payload = magpie_element_first_child(root);

	if (iq_owners != NULL) {
		g_autofree char *key =
		        iq_key(magpie_element_ns(payload), magpie_element_name(payload));

		owner = g_hash_table_lookup(iq_owners, key);
	}
	if (owner == NULL || (owner->host_only && !to_host) || !(owner->types & iq_type) ||
	    (session != NULL && magpie_session_jid(session) == NULL && !owner->preauth)) {
		iq_send_error(session, iq, from, to, "cancel", "service-unavailable", NULL);
		return;
	}

	req = g_new0(MagpieIqRequest, 1);
	req->ref_count = 1;
	req->stanza = magpie_stanza_ref(iq);
	req->payload = payload;
	req->type = iq_type;
	req->from = from ? magpie_jid_ref(from) : NULL;
	req->to = to ? magpie_jid_ref(to) : NULL;
	req->session = session ? magpie_session_ref(session) : NULL;
	req->owner_name = g_strdup(owner->mod ? magpie_module_name(owner->mod) : NULL);

	/* The owner may go away while its handler runs (a control command
	 * unloading modules): do not touch it afterwards. */
	func = owner->func;
	mod = owner->mod;
	func(mod, req);
	magpie_iq_request_unref(req);
}

static void
iq_pre_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	if (result == MAGPIE_HOOK_STOP)
		return; /* an interceptor answered */
	iq_dispatch_owner(magpie_event_stanza(ev), magpie_event_session(ev), magpie_event_from(ev),
	                  magpie_event_to(ev), GPOINTER_TO_INT(user_data));
}

void
magpie_iq_dispatch(MagpieStanza *iq, MagpieSession *session, MagpieJid *from, MagpieJid *to,
                   gboolean to_host)
{
	g_autoptr(MagpieJid) effective_to = NULL;
	const char *type;

	g_return_if_fail(iq != NULL);

	type = magpie_stanza_get_attr(iq, "type");
	if (g_strcmp0(type, "result") == 0 || g_strcmp0(type, "error") == 0) {
		/* Never answer a response; an unknown one is dropped. */
		if (!magpie_iq_handle_response(iq, to))
			g_debug("IQ %s with unknown id: dropped", type);
		return;
	}

	if (to != NULL)
		effective_to = magpie_jid_ref(to);
	else if (from != NULL)
		effective_to = magpie_jid_bare(from);

	if (magpie_hook_has_handlers(MAGPIE_EVENT_IQ_PRE)) {
		g_autoptr(MagpieStanzaEvent) ev =
		        magpie_event_new(MAGPIE_EVENT_IQ_PRE, iq, session, from, effective_to);

		magpie_hook_run(ev, iq_pre_done, GINT_TO_POINTER(to_host));
		return;
	}
	iq_dispatch_owner(iq, session, from, effective_to, to_host);
}

/* IQs sent by the server */

static void
pending_iq_free(PendingIq *pending, gboolean call_destroy)
{
	if (pending->timeout != NULL) {
		g_source_destroy(pending->timeout);
		g_source_unref(pending->timeout);
	}
	if (call_destroy && pending->destroy)
		pending->destroy(pending->user_data);
	g_clear_pointer(&pending->from, magpie_jid_unref);
	g_clear_pointer(&pending->to, magpie_jid_unref);
	g_free(pending->id);
	g_free(pending);
}

static gboolean
iq_send_timeout_cb(gpointer data)
{
	PendingIq *pending = data;

	g_hash_table_steal(pending_iqs, pending->id);
	g_clear_pointer(&pending->timeout, g_source_unref);
	if (pending->callback)
		pending->callback(NULL, pending->user_data);
	pending_iq_free(pending, TRUE);
	return G_SOURCE_REMOVE;
}

void
magpie_iq_send(MagpieModule *mod, MagpieStanza *iq, MagpieJid *from, guint timeout_ms,
               MagpieIqResponseFunc callback, gpointer user_data, GDestroyNotify destroy)
{
	g_autoptr(MagpieStanza) copy = NULL;
	PendingIq *pending;
	const char *to;

	g_return_if_fail(iq != NULL);
	g_return_if_fail(from != NULL);
	g_return_if_fail(g_strcmp0(magpie_stanza_name(iq), "iq") == 0);

	if (pending_iqs == NULL)
		pending_iqs = g_hash_table_new(g_str_hash, g_str_equal);

	pending = g_new0(PendingIq, 1);
	/* Unique in the process and not guessable, so a peer cannot answer
	 * a request it never saw. */
	pending->id = g_strdup_printf("magpie-%" G_GINT64_MODIFIER "x-%08x", ++iq_id_counter,
	                              g_random_int());
	pending->mod = mod;
	pending->from = magpie_jid_ref(from);
	to = magpie_stanza_get_attr(iq, "to");
	if (to != NULL)
		pending->to = magpie_jid_parse(to, NULL);
	pending->callback = callback;
	pending->user_data = user_data;
	pending->destroy = destroy;
	if (timeout_ms > 0) {
		pending->timeout = g_timeout_source_new(timeout_ms);
		g_source_set_callback(pending->timeout, iq_send_timeout_cb, pending, NULL);
		g_source_set_static_name(pending->timeout, "magpie iq timeout");
		g_source_attach(pending->timeout, NULL);
	}
	g_hash_table_insert(pending_iqs, pending->id, pending);

	/* The caller's stanza may be shared: the id goes on a copy. */
	copy = magpie_stanza_copy(iq);
	magpie_stanza_set_attr(copy, "id", pending->id);
	magpie_route(copy, from);
}

gboolean
magpie_iq_handle_response(MagpieStanza *iq, MagpieJid *to)
{
	const char *type, *id, *from_str;
	PendingIq *pending;
	g_autoptr(MagpieJid) from = NULL;

	g_return_val_if_fail(iq != NULL, FALSE);

	if (pending_iqs == NULL)
		return FALSE;
	type = magpie_stanza_get_attr(iq, "type");
	if (g_strcmp0(type, "result") != 0 && g_strcmp0(type, "error") != 0)
		return FALSE;
	id = magpie_stanza_get_attr(iq, "id");
	if (id == NULL)
		return FALSE;
	pending = g_hash_table_lookup(pending_iqs, id);
	if (pending == NULL)
		return FALSE;

	/* The answer must come from where the request went, to where it came
	 * from; anything else is not ours (or is spoofed). */
	if (to != NULL && !magpie_jid_equal(to, pending->from))
		return FALSE;
	from_str = magpie_stanza_get_attr(iq, "from");
	if (from_str != NULL)
		from = magpie_jid_parse(from_str, NULL);
	if (pending->to != NULL) {
		if (from == NULL || !magpie_jid_equal(from, pending->to))
			return FALSE;
	} else if (from != NULL && !magpie_jid_bare_equal(from, pending->from)) {
		return FALSE;
	}

	g_hash_table_steal(pending_iqs, id);
	if (pending->callback)
		pending->callback(iq, pending->user_data);
	pending_iq_free(pending, TRUE);
	return TRUE;
}

void
magpie_iq_cancel_module(MagpieModule *mod)
{
	GHashTableIter iter;
	gpointer value;
	g_autoptr(GPtrArray) dropped = g_ptr_array_new();

	if (pending_iqs == NULL)
		return;
	g_hash_table_iter_init(&iter, pending_iqs);
	while (g_hash_table_iter_next(&iter, NULL, &value)) {
		if (((PendingIq *) value)->mod == mod) {
			g_ptr_array_add(dropped, value);
			g_hash_table_iter_steal(&iter);
		}
	}
	/* Destroy notifies run after the table is consistent: they may send
	 * new requests. */
	for (guint i = 0; i < dropped->len; i++)
		pending_iq_free(dropped->pdata[i], TRUE);
}
