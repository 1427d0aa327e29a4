/* A second, independent client implementation (libstrophe 0.12, OpenSSL)
 * against a running Magpie sandbox. Prints TAP.
 *
 * strophe-client HOST PORT TLS_PORT CAFILE JID PASSWORD PEER_JID PEER_PASSWORD
 *
 * JID logs in over STARTTLS on PORT, PEER_JID over direct TLS on TLS_PORT,
 * both verifying the server certificate against CAFILE; libstrophe picks
 * its own SASL mechanism (the strongest offered). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strophe.h>

#define TIMEOUT_MS 10000

typedef struct {
	const char *name;
	xmpp_conn_t *conn;
	int connected;    /* 1 after XMPP_CONN_CONNECT */
	int disconnected; /* 1 after XMPP_CONN_DISCONNECT */
	int error;
	char *last_body; /* body of the last message received */
	int pong;        /* 1 = result, -1 = error */
} Client;

static int test_number;
static int failures;

static void tap(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
tap(int ok, const char *fmt, ...)
{
	va_list ap;

	test_number++;
	if (!ok)
		failures++;
	printf("%s %d - ", ok ? "ok" : "not ok", test_number);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void
conn_handler(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
             xmpp_stream_error_t *stream_error, void *userdata)
{
	Client *c = userdata;

	(void) conn;
	if (status == XMPP_CONN_CONNECT) {
		c->connected = 1;
	} else if (status == XMPP_CONN_DISCONNECT || status == XMPP_CONN_FAIL) {
		c->disconnected = 1;
		c->error = error;
		if (stream_error)
			printf("# %s: stream error %d %s\n", c->name, (int) stream_error->type,
			       stream_error->text ? stream_error->text : "");
	}
}

static int
message_handler(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
	Client *c = userdata;
	char *body;

	(void) conn;
	body = xmpp_message_get_body(stanza);
	if (body) {
		xmpp_ctx_t *ctx = xmpp_conn_get_context(c->conn);

		if (c->last_body)
			xmpp_free(ctx, c->last_body);
		c->last_body = body;
	}
	return 1;
}

static int
pong_handler(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
	Client *c = userdata;
	const char *type = xmpp_stanza_get_type(stanza);

	(void) conn;
	c->pong = type && strcmp(type, "result") == 0 ? 1 : -1;
	return 0;
}

/* Run the event loop until *flag is non-zero or the timeout passes. */
static int
run_until(xmpp_ctx_t *ctx, const int *flag, const int *also_stop)
{
	for (int waited = 0; waited < TIMEOUT_MS; waited += 50) {
		if (*flag)
			return 1;
		if (also_stop && *also_stop)
			return 0;
		xmpp_run_once(ctx, 50);
	}
	return *flag != 0;
}

static int
run_until_body(xmpp_ctx_t *ctx, Client *c, const char *body)
{
	for (int waited = 0; waited < TIMEOUT_MS; waited += 50) {
		if (c->last_body && strcmp(c->last_body, body) == 0)
			return 1;
		if (c->disconnected)
			return 0;
		xmpp_run_once(ctx, 50);
	}
	return 0;
}

static void
client_init(Client *c, xmpp_ctx_t *ctx, const char *name, const char *jid, const char *password,
            const char *cafile, long flags)
{
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->conn = xmpp_conn_new(ctx);
	xmpp_conn_set_jid(c->conn, jid);
	xmpp_conn_set_pass(c->conn, password);
	xmpp_conn_set_cafile(c->conn, cafile);
	xmpp_conn_set_flags(c->conn, flags);
	xmpp_handler_add(c->conn, message_handler, NULL, "message", NULL, c);
}

static void
send_message(xmpp_ctx_t *ctx, Client *from, const char *to, const char *body)
{
	xmpp_stanza_t *msg = xmpp_message_new(ctx, "chat", to, NULL);

	xmpp_message_set_body(msg, body);
	xmpp_send(from->conn, msg);
	xmpp_stanza_release(msg);
}

static void
send_presence(xmpp_ctx_t *ctx, Client *c)
{
	xmpp_stanza_t *pres = xmpp_presence_new(ctx);

	xmpp_send(c->conn, pres);
	xmpp_stanza_release(pres);
}

static const char *domain;

/* Send an XEP-0199 ping to the server; pong_handler sets c->pong. */
static void
ping(xmpp_ctx_t *ctx, Client *c, const char *id)
{
	xmpp_stanza_t *iq = xmpp_iq_new(ctx, "get", id);
	xmpp_stanza_t *child = xmpp_stanza_new(ctx);

	c->pong = 0;
	xmpp_stanza_set_to(iq, domain);
	xmpp_stanza_set_name(child, "ping");
	xmpp_stanza_set_ns(child, "urn:xmpp:ping");
	xmpp_stanza_add_child(iq, child);
	xmpp_stanza_release(child);
	xmpp_id_handler_add(c->conn, pong_handler, id, c);
	xmpp_send(c->conn, iq);
	xmpp_stanza_release(iq);
}

static char *
bare_of(const char *jid)
{
	char *bare = strdup(jid);
	char *slash = strchr(bare, '/');

	if (slash)
		*slash = '\0';
	return bare;
}

int
main(int argc, char **argv)
{
	xmpp_ctx_t *ctx;
	Client a, b, bad;
	char *wrong;
	int ok;

	if (argc != 9) {
		fprintf(stderr,
		        "usage: %s HOST PORT TLS_PORT CAFILE JID PASSWORD PEER_JID PEER_PASSWORD\n",
		        argv[0]);
		return 2;
	}
	const char *host = argv[1];
	unsigned short port = (unsigned short) atoi(argv[2]);
	unsigned short tls_port = (unsigned short) atoi(argv[3]);
	const char *cafile = argv[4];

	domain = strchr(argv[5], '@') ? strchr(argv[5], '@') + 1 : argv[5];

	printf("1..7\n");
	fflush(stdout);
	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, getenv("STROPHE_DEBUG") ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG)
	                                                 : NULL);

	/* 1: STARTTLS login. */
	client_init(&a, ctx, "starttls", argv[5], argv[6], cafile, XMPP_CONN_FLAG_MANDATORY_TLS);
	if (xmpp_connect_client(a.conn, host, port, conn_handler, &a) != XMPP_EOK) {
		tap(0, "connect over STARTTLS");
		return 1;
	}
	ok = run_until(ctx, &a.connected, &a.disconnected);
	tap(ok && xmpp_conn_is_secured(a.conn), "login over STARTTLS with a verified certificate");
	if (!ok)
		return 1;
	send_presence(ctx, &a);

	/* 2: direct TLS login. */
	client_init(&b, ctx, "direct-tls", argv[7], argv[8], cafile, XMPP_CONN_FLAG_LEGACY_SSL);
	ok = xmpp_connect_client(b.conn, host, tls_port, conn_handler, &b) == XMPP_EOK &&
	     run_until(ctx, &b.connected, &b.disconnected);
	tap(ok && xmpp_conn_is_secured(b.conn),
	    "login over direct TLS with a verified certificate");
	if (ok)
		send_presence(ctx, &b);

	/* 3: bound JID. */
	const char *bound = xmpp_conn_get_bound_jid(a.conn);
	char *bare = bound ? bare_of(bound) : NULL;
	tap(bare && strcmp(bare, argv[5]) == 0 && strchr(bound, '/'), "bound JID %s",
	    bound ? bound : "(none)");

	/* 4: a message to our own full JID comes back. */
	if (bound) {
		send_message(ctx, &a, bound, "to myself");
		tap(run_until_body(ctx, &a, "to myself"), "message to own full JID delivered");
	} else {
		tap(0, "message to own full JID delivered # no bound JID");
	}

	/* 5: a message to the peer's bare JID, once the server has seen the
	 * peer's presence: a stream is processed in order, so the answer to
	 * a ping sent after it is the proof. */
	if (ok) {
		ping(ctx, &b, "strophe-ping-b");
		run_until(ctx, &b.pong, &b.disconnected);
		send_message(ctx, &a, argv[7], "hello peer");
		tap(run_until_body(ctx, &b, "hello peer"), "message to peer's bare JID delivered");
	} else {
		tap(0, "message to peer's bare JID delivered # peer not connected");
	}

	/* 6: ping the server. */
	ping(ctx, &a, "strophe-ping-a");
	run_until(ctx, &a.pong, &a.disconnected);
	tap(a.pong == 1, "ping (XEP-0199) to %s answered", domain);

	/* 7: a wrong password is refused. */
	wrong = malloc(strlen(argv[6]) + 2);
	strcpy(wrong, argv[6]);
	strcat(wrong, "x");
	client_init(&bad, ctx, "wrong-password", argv[5], wrong, cafile,
	            XMPP_CONN_FLAG_MANDATORY_TLS);
	if (xmpp_connect_client(bad.conn, host, port, conn_handler, &bad) == XMPP_EOK)
		run_until(ctx, &bad.disconnected, &bad.connected);
	tap(bad.disconnected && !bad.connected, "a wrong password is refused");

	xmpp_disconnect(a.conn);
	if (b.connected && !b.disconnected)
		xmpp_disconnect(b.conn);
	run_until(ctx, &a.disconnected, NULL);
	if (b.connected)
		run_until(ctx, &b.disconnected, NULL);
	if (a.last_body)
		xmpp_free(ctx, a.last_body);
	if (b.last_body)
		xmpp_free(ctx, b.last_body);
	xmpp_conn_release(a.conn);
	xmpp_conn_release(b.conn);
	xmpp_conn_release(bad.conn);
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	free(bare);
	free(wrong);
	return failures ? 1 : 0;
}
