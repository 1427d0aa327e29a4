/* Client-to-server streams. A MagpieSession is one c2s stream from accept
 * to close; it becomes a session in the API's sense (a full JID) once a
 * resource is bound. */
#pragma once

#include <magpie/magpie.h>
#include "conn.h"
#include "sasl.h"
#include "xmlstream.h"

G_BEGIN_DECLS

typedef enum {
	C2S_STATE_HEADER,   /* waiting for the stream header */
	C2S_STATE_STARTTLS, /* features sent, TLS not yet negotiated */
	C2S_STATE_TLS,      /* <proceed/> sent, handshake running */
	C2S_STATE_AUTH,     /* TLS up, waiting for <auth> */
	C2S_STATE_SASL,     /* SASL exchange in progress */
	C2S_STATE_BIND,     /* authenticated, waiting for bind */
	C2S_STATE_BOUND,    /* resource bound: routing stanzas */
	C2S_STATE_CLOSED,   /* stream closed or closing: read nothing more */
} C2sState;

typedef struct {
	MagpieModule *mod;
	gpointer data;
	GDestroyNotify destroy;
} SessionSlot;

struct _MagpieSession {
	gint refcount;
	C2sState state;
	MagpieConn *conn;
	MagpieXmlStream *xs;
	char *peer;
	char *host; /* the virtual host of the stream */
	char *stream_id;
	gint64 connected_at;      /* unix seconds */
	gboolean header_sent;     /* our <stream:stream> went out */
	gboolean restart;         /* reset the parser before the next feed */
	gboolean inject_check;    /* STARTTLS: any byte left over is an injection */
	gboolean skip_whitespace; /* before a restarted stream's header */

	MagpieSasl *sasl;
	char *username;
	char *mechanism;

	MagpieJid *jid; /* full JID once bound */
	MagpieJid *bare;
	gboolean available;
	gboolean interested;
	int priority;
	MagpieStanza *presence;

	guint hold_count;
	GArray *slots; /* SessionSlot */
	guint sasl_failures;
	gboolean ended; /* session.end has run */
};

/* Called by the listener for each accepted socket. */
void magpie_c2s_accept(int fd, const char *peer, gboolean direct_tls);
/* Close every stream (shutdown): stream error system-shutdown. */
void magpie_c2s_shutdown(void);

/* Registry (session.c). */
void magpie_session_register(MagpieSession *session);   /* a new stream */
void magpie_session_unregister(MagpieSession *session); /* stream gone */
/* Bind @session to @full; returns the session it replaces (transfer full),
 * or NULL. */
MagpieSession *magpie_session_bind(MagpieSession *session, MagpieJid *full);
void magpie_session_free_slots(MagpieSession *session);
/* Iterate all bound sessions (safe against closes during the walk: the
 * list is a snapshot). (transfer container) */
GPtrArray *magpie_sessions_all_bound(void);
/* Every stream, bound or not, referenced. (transfer container) */
GPtrArray *magpie_sessions_all_streams(void);

G_END_DECLS
