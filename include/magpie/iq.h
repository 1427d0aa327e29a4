/* IQ handlers, keyed by (namespace, element) of the IQ's single child. */
#pragma once

#include <magpie/hook.h>

G_BEGIN_DECLS

typedef enum {
	MAGPIE_IQ_GET = 1 << 0,
	MAGPIE_IQ_SET = 1 << 1,
} MagpieIqType;

typedef struct _MagpieIqRequest MagpieIqRequest;

/* Called for an IQ get/set addressed to a local host or to a local user's
 * bare JID (or from a user with no 'to', i.e. to their own account).
 * Reply with magpie_iq_reply() or magpie_iq_reply_error(), now or later
 * after magpie_iq_request_ref(). */
typedef void (*MagpieIqFunc)(MagpieModule *mod, MagpieIqRequest *req);

typedef struct {
	const char *xmlns;
	const char *element;
	guint types; /* MagpieIqType flags */
	MagpieIqFunc func;
	/* Where the handler answers: FALSE (default) = the host and users'
	 * bare JIDs; TRUE = only IQs addressed to the host itself. */
	gboolean host_only;
	/* Also answered on a stream that has not authenticated yet (XEP-0077
	 * in-band registration): the request then has a session but no
	 * 'from', and the reply goes straight back on that stream. */
	gboolean preauth;
} MagpieIqSpec;

MAGPIE_API MagpieIqType magpie_iq_request_type(MagpieIqRequest *req);
MAGPIE_API MagpieStanza *magpie_iq_request_stanza(MagpieIqRequest *req);
/* The IQ's child element (the one that chose the handler). */
MAGPIE_API MagpieElement *magpie_iq_request_payload(MagpieIqRequest *req);
MAGPIE_API MagpieJid *magpie_iq_request_from(MagpieIqRequest *req);
/* The effective 'to': the sender's bare JID when the IQ had none. */
MAGPIE_API MagpieJid *magpie_iq_request_to(MagpieIqRequest *req);
MAGPIE_API MagpieSession *magpie_iq_request_session(MagpieIqRequest *req); /* may be NULL */

MAGPIE_API MagpieIqRequest *magpie_iq_request_ref(MagpieIqRequest *req);
/* Dropping the last reference without a reply sends internal-server-error
 * and logs a bug. */
MAGPIE_API void magpie_iq_request_unref(MagpieIqRequest *req);

/* Reply type='result' (id and addresses swapped) with a copy of @payload as
 * its child, or empty when @payload is NULL. */
MAGPIE_API void magpie_iq_reply(MagpieIqRequest *req, const MagpieElement *payload);
/* Or build the result in place: magpie_iq_result_new() returns the empty
 * result stanza (transfer full) to fill, magpie_iq_send_result() sends it
 * (transfer none). */
MAGPIE_API MagpieStanza *magpie_iq_result_new(MagpieIqRequest *req);
MAGPIE_API void magpie_iq_send_result(MagpieIqRequest *req, MagpieStanza *result);
/* RFC 6120 §8.3: @type is "cancel", "modify", "auth", "wait" or "continue";
 * @condition e.g. "item-not-found"; @text may be NULL. */
MAGPIE_API void magpie_iq_reply_error(MagpieIqRequest *req, const char *type, const char *condition,
                                      const char *text);
MAGPIE_API gboolean magpie_iq_request_is_answered(MagpieIqRequest *req);

/* Send an IQ get/set from the server (@from: a host or a user JID) and get
 * the response: @callback(response, user_data) with the result or error
 * stanza, or NULL after @timeout_ms. Tied to @mod: dropped, with @destroy
 * called, when the module unloads. */
typedef void (*MagpieIqResponseFunc)(MagpieStanza *response, gpointer user_data);
MAGPIE_API void magpie_iq_send(MagpieModule *mod, MagpieStanza *iq, MagpieJid *from,
                               guint timeout_ms, MagpieIqResponseFunc callback, gpointer user_data,
                               GDestroyNotify destroy);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpieIqRequest, magpie_iq_request_unref)

G_END_DECLS
