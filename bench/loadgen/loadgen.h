/* The benchmark's load generator: XMPP client connections on one epoll
 * set driven from a GLib main loop (docs/performance.md).
 *
 * A Conn walks connect -> stream -> STARTTLS -> SASL (PLAIN or
 * SCRAM-SHA-1) -> bind -> roster get -> initial presence -> ping, then is
 * "ready" and hands every stanza it receives to the scenario. In echo mode
 * it does a direct TLS handshake and is ready at once (the TLS floor).
 */
#pragma once

#include <glib.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>

typedef enum {
	MECH_PLAIN,
	MECH_SCRAM_SHA1,
} Mech;

typedef enum {
	ST_CONNECTING,
	ST_FEATURES_PLAIN, /* waiting for the first <stream:features/> */
	ST_STARTTLS,       /* waiting for <proceed/> */
	ST_HANDSHAKE,
	ST_FEATURES_TLS, /* features after STARTTLS */
	ST_AUTH,         /* SASL exchange */
	ST_FEATURES_AUTH,
	ST_BIND,
	ST_SESSION,
	ST_ROSTER,
	ST_PING, /* presence sent, waiting for the ping answer */
	ST_READY,
	ST_CLOSED,
} ConnState;

typedef struct Conn Conn;

/* What a scenario is told about its connections. */
typedef struct {
	void (*ready)(Conn *c);
	void (*failed)(Conn *c, const char *why);
	/* A complete stanza received once ready: 'data' is the raw XML. */
	void (*stanza)(Conn *c, const char *data, gsize len);
} ConnEvents;

typedef struct {
	char *host; /* server address */
	int port;
	char *domain;
	char *password;
	Mech mech;
	gboolean echo;     /* direct TLS to bench/tls-echo, no XMPP */
	gboolean presence; /* send initial presence before ready */
	struct sockaddr_in *sources;
	guint n_sources;
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t priority;
	const ConnEvents *events;
	int epfd;
} ConnConfig;

struct Conn {
	const ConnConfig *cfg;
	guint user;  /* account u<user> */
	guint index; /* the scenario's slot */
	ConnState state;
	int fd;
	gnutls_session_t tls;
	gboolean want_out; /* EPOLLOUT registered */
	gint64 started;    /* monotonic µs when the connect began */
	gint64 ready_at;

	/* Input: bytes not yet consumed, and the tokenizer's state. */
	char *in;
	gsize in_len, in_cap;
	gsize scan_pos, stanza_start;
	int depth;
	guint8 scan_state, last_char;
	gboolean closing_tag;

	/* Output: plaintext not yet accepted by the TLS layer. */
	char *out;
	gsize out_len, out_off, out_cap;
	gsize tls_pending; /* bytes handed to a gnutls_record_send that said AGAIN */

	/* SCRAM state */
	char *scram_first_bare;
	char *scram_server_sig; /* expected base64 ServerSignature */
	gboolean need_session;

	/* Scenario data */
	guint64 counter;
	guint outstanding;
	gboolean buried; /* queued for conn_reap */
};

Conn *conn_new(const ConnConfig *cfg, guint user, guint index);
void conn_start(Conn *c);
void conn_send(Conn *c, const char *data, gsize len);
void conn_sendf(Conn *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Close politely (</stream:stream>, TLS bye); freed by the next
 * conn_reap(). Also the way to dispose of a failed connection. */
void conn_close(Conn *c);
void conn_reap(void);
void conn_free(Conn *c);
/* Called for each epoll event of c's fd. */
void conn_io(Conn *c, guint32 events);
/* Appends received plaintext and processes the complete stanzas in it
 * (what conn_io does after reading; tests call it directly). */
void conn_feed(Conn *c, const char *data, gsize len);

/* Helpers over raw stanza text. */
gboolean stanza_is(const char *data, gsize len, const char *local_name);
/* The value of attribute 'name' of the top element, or NULL. */
char *stanza_attr(const char *data, gsize len, const char *name);
/* Finds attribute 'name' of the top element without copying. */
gboolean stanza_attr_span(const char *data, gsize len, const char *name, const char **value,
                          gsize *value_len);

/* SCRAM-SHA-1 (RFC 5802), with SaltedPassword cached per (salt, i). */
char *scram_client_first(Conn *c);
char *scram_client_final(Conn *c, const char *challenge_b64, GError **error);
gboolean scram_check_server_final(Conn *c, const char *data_b64);

/* Measurement of other processes from /proc. */
double proc_cpu_seconds(const GArray *pids);
guint64 proc_pss_kb(const GArray *pids, guint64 *rss_kb);
