/* Client sessions (one bound resource on one c2s stream). */
#pragma once

#include <magpie/hook.h>

G_BEGIN_DECLS

/* Has the stream authenticated (SASL success)? A session may be
 * authenticated and not yet bound. */
MAGPIE_API gboolean magpie_session_is_authenticated(MagpieSession *session);
/* The client's address (for per-address limits and logs). (transfer none) */
MAGPIE_API const char *magpie_session_peer(MagpieSession *session);
/* (transfer none) the full JID once bound, else NULL. */
MAGPIE_API MagpieJid *magpie_session_jid(MagpieSession *session);
MAGPIE_API const char *magpie_session_host(MagpieSession *session);
/* Has the session sent initial presence (and not yet unavailable)? */
MAGPIE_API gboolean magpie_session_is_available(MagpieSession *session);
/* Priority of the last available presence (-128..127), 0 before. */
MAGPIE_API int magpie_session_priority(MagpieSession *session);
/* The last broadcast presence stanza, or NULL. (transfer none) */
MAGPIE_API MagpieStanza *magpie_session_presence(MagpieSession *session);
/* Has the client fetched its roster (RFC 6121 §2.1.6 "interested")? */
MAGPIE_API gboolean magpie_session_is_interested(MagpieSession *session);
MAGPIE_API void magpie_session_set_interested(MagpieSession *session, gboolean interested);

MAGPIE_API MagpieSession *magpie_session_ref(MagpieSession *session);
MAGPIE_API void magpie_session_unref(MagpieSession *session);
/* Is the session still attached to a live stream? */
MAGPIE_API gboolean magpie_session_is_alive(MagpieSession *session);

/* Queue @stanza for the client, as is (no routing, no hooks). */
MAGPIE_API void magpie_session_send(MagpieSession *session, MagpieStanza *stanza);
/* Close the stream with a stream error (e.g. "conflict", "not-authorized",
 * "policy-violation"); @text may be NULL. */
MAGPIE_API void magpie_session_close(MagpieSession *session, const char *condition,
                                     const char *text);

/* Per-session data slot for @mod, freed with @destroy at session end or when
 * the module unloads. */
MAGPIE_API void magpie_session_set_data(MagpieSession *session, MagpieModule *mod, gpointer data,
                                        GDestroyNotify destroy);
MAGPIE_API gpointer magpie_session_get_data(MagpieSession *session, MagpieModule *mod);

/* All bound sessions of a local account (bare JID), in binding order.
 * (transfer container): free the array with g_ptr_array_unref(). */
MAGPIE_API GPtrArray *magpie_sessions_for(MagpieJid *bare);
/* The session bound to this full JID, or NULL. (transfer none) */
MAGPIE_API MagpieSession *magpie_session_lookup(MagpieJid *full);

/* Call @func for every bound session, in no particular order. @func must
 * not end sessions synchronously (magpie_session_close() is fine: the
 * stream closes later). */
typedef void (*MagpieSessionFunc)(MagpieSession *session, gpointer user_data);
MAGPIE_API void magpie_sessions_foreach(MagpieSessionFunc func, gpointer user_data);
/* g_get_monotonic_time() of the last bytes received from the client
 * (stanzas or whitespace keepalives). */
MAGPIE_API gint64 magpie_session_last_activity(MagpieSession *session);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpieSession, magpie_session_unref)

G_END_DECLS
