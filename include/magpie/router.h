/* Routing stanzas and answering with stanza errors. */
#pragma once

#include <magpie/hook.h>

G_BEGIN_DECLS

/* Route @stanza from @from (a full or bare JID, or a host) to its 'to'
 * address through the whole pipeline (stanza.pre, destination events,
 * delivery rules). 'from' is stamped from @from. (transfer none) */
MAGPIE_API void magpie_route(MagpieStanza *stanza, MagpieJid *from);
/* Route @stanza from @from to each of the @n_to addresses @to (parsed
 * JIDs), in order: the same as magpie_route() of a copy of @stanza with
 * 'to' set to each address, but cheaper for many addresses (a presence
 * broadcast to the contacts): the copies are made and serialized once
 * while no handler keeps or changes them. @stanza itself is not changed.
 * (transfer none) */
MAGPIE_API void magpie_route_each(MagpieStanza *stanza, MagpieJid *from, MagpieJid *const *to,
                                  guint n_to);

/* Deliver to a local full JID's session without hooks; FALSE if no such
 * session. */
MAGPIE_API gboolean magpie_deliver_to_session(MagpieStanza *stanza, MagpieJid *full);

/* Build the error reply for @stanza (RFC 6120 §8.3): addresses swapped,
 * type='error', the original children kept, an <error type=...> with the
 * defined @condition and optional @text. (transfer full) NULL when @stanza
 * is itself an error (never answer an error with an error). */
MAGPIE_API MagpieStanza *magpie_stanza_error_new(MagpieStanza *stanza, const char *type,
                                                 const char *condition, const char *text);
/* Build it and route it back to the sender. */
MAGPIE_API void magpie_stanza_reply_error(MagpieStanza *stanza, const char *type,
                                          const char *condition, const char *text);

G_END_DECLS
