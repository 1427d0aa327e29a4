/* The router's entry points for the c2s stream. */
#pragma once

#include "c2s.h"

G_BEGIN_DECLS

/* A stanza from a bound client, 'from' already stamped with its full JID;
 * @to is the parsed 'to' (NULL when absent). */
void magpie_router_from_session(MagpieStanza *stanza, MagpieSession *session, MagpieJid *to);
/* Presence without 'to' from a bound client (broadcast presence). */
void magpie_router_self_presence(MagpieSession *session, MagpieStanza *presence);
/* The session is going away: unavailable to the account's other
 * resources if it was available, then the session.end event. */
void magpie_router_session_ended(MagpieSession *session);

G_END_DECLS
