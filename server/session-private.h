/* Sessions: the daemon's side of include/magpie/session.h. */
#pragma once

#include <magpie/session.h>

G_BEGIN_DECLS

/* Stop reading the session's stream until a matching release (pending hook
 * handlers). Nested. */
void magpie_session_hold(MagpieSession *session);
void magpie_session_release(MagpieSession *session);

/* The bound sessions of @bare's account in binding order, without a copy:
 * (transfer none), NULL when there are none. Valid only until a session
 * binds or ends, so copy it (magpie_sessions_copy_to()) before anything
 * that may close a stream, such as sending. */
const GPtrArray *magpie_sessions_peek(MagpieJid *bare);

/* Free every data slot owned by @mod in every session (module unload). */
void magpie_sessions_clear_module_data(MagpieModule *mod);

typedef struct {
	char *jid;        /* full JID or "(unbound)" */
	char *peer;       /* remote address */
	char *tls;        /* "TLS1.3" */
	char *mechanism;  /* SASL mechanism */
	gint64 connected; /* unix seconds */
	gboolean available;
	int priority;
} MagpieSessionInfo;
void magpie_session_info_free(MagpieSessionInfo *info);
/* All c2s streams, bound or not. (transfer full), free func set. */
GPtrArray *magpie_sessions_list(void);
/* Close sessions matching @jid (full: that one; bare: all of the account)
 * with a stream error; returns how many. */
guint magpie_sessions_kick(const char *jid, const char *condition, const char *text);
guint magpie_sessions_count(void);

G_END_DECLS
