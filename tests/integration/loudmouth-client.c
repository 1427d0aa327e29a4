/* A third, independent client implementation (Loudmouth 1.5, GnuTLS)
 * against a running Magpie sandbox: login, messages and the roster
 * (RFC 6121 §2). Prints TAP; exits 0 iff every test passed.
 *
 * loudmouth-client HOST PORT CAFILE DOMAIN JID1 PASS1 JID2 PASS2
 *
 * Both accounts log in over STARTTLS on PORT (required, not optional),
 * verifying the server certificate against CAFILE: the SSL callback is
 * only called by Loudmouth when something is wrong with the certificate,
 * and it stops the handshake on any such status. Loudmouth knows PLAIN,
 * DIGEST-MD5 and GSSAPI; Magpie offers PLAIN only after TLS, so that is
 * what is used. LM_DEBUG=all in the environment shows the traffic. */
#include <glib.h>
#include <loudmouth/loudmouth.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TIMEOUT_MS 10000
#define RESOURCE   "loudmouth"
#define ROSTER_NS  "jabber:iq:roster"
#define ITEM_NAME  "LM Friend"
#define ITEM_GROUP "Loudmouth Testers"

typedef enum {
	PENDING = 0,
	SUCCEEDED = 1,
	FAILED = -1,
} Outcome;

typedef struct {
	const char *name;
	const char *jid; /* bare JID */
	const char *password;
	LmConnection *conn;
	Outcome opened;
	Outcome authed;
	gboolean disconnected;
	int ssl_problems;     /* calls of the SSL callback */
	LmSSLStatus ssl_last; /* the last status it saw */
	char *body;           /* body of the last message received */
	char *body_from;      /* its from */
	LmMessage *reply;     /* answer to the last send_with_reply */
	LmMessage *push;      /* the last roster push received */
	int pushes;           /* roster pushes received */
	int bad_pushes;       /* roster pushes from someone else than the account */
} Client;

static int test_number;
static int failures;
static const char *domain;

static void tap(gboolean ok, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
tap(gboolean ok, const char *fmt, ...)
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

static void diag(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static gboolean
timeout_cb(gpointer data)
{
	gboolean *expired = data;

	*expired = TRUE;
	return G_SOURCE_REMOVE;
}

/* Run the default main context until check(c) holds, the client is
 * disconnected or TIMEOUT_MS pass. Returns whether check(c) holds. */
static gboolean
run_until(Client *c, gboolean (*check)(Client *c))
{
	gboolean expired = FALSE;
	guint id = g_timeout_add(TIMEOUT_MS, timeout_cb, &expired);

	while (!check(c) && !c->disconnected && !expired)
		g_main_context_iteration(NULL, TRUE);
	if (!expired)
		g_source_remove(id);
	return check(c);
}

static gboolean
is_opened(Client *c)
{
	return c->opened != PENDING;
}

static gboolean
is_authed(Client *c)
{
	return c->authed != PENDING;
}

static gboolean
has_reply(Client *c)
{
	return c->reply != NULL;
}

static gboolean
has_push(Client *c)
{
	return c->push != NULL;
}

static gboolean
has_body(Client *c)
{
	return c->body != NULL;
}

static LmSSLResponse
ssl_cb(LmSSL *ssl, LmSSLStatus status, gpointer user_data)
{
	Client *c = user_data;

	(void) ssl;
	c->ssl_problems++;
	c->ssl_last = status;
	diag("%s: certificate problem, status %d: refused", c->name, (int) status);
	return LM_SSL_RESPONSE_STOP;
}

static void
disconnect_cb(LmConnection *conn, LmDisconnectReason reason, gpointer user_data)
{
	Client *c = user_data;

	(void) conn;
	c->disconnected = TRUE;
	if (reason != LM_DISCONNECT_REASON_OK)
		diag("%s: disconnected, reason %d", c->name, (int) reason);
}

static void
auth_cb(LmConnection *conn, gboolean success, gpointer user_data)
{
	Client *c = user_data;

	(void) conn;
	c->authed = success ? SUCCEEDED : FAILED;
}

static void
open_cb(LmConnection *conn, gboolean success, gpointer user_data)
{
	Client *c = user_data;
	g_autoptr(GError) error = NULL;
	g_autofree char *local = g_strndup(c->jid, strcspn(c->jid, "@"));

	c->opened = success ? SUCCEEDED : FAILED;
	if (!success)
		return;
	/* At once, from the stream header's handler: the features that
	 * follow must find the authentication request (STARTTLS first). */
	if (!lm_connection_authenticate(conn, local, c->password, RESOURCE, auth_cb, c, NULL,
	                                &error)) {
		diag("%s: lm_connection_authenticate: %s", c->name, error->message);
		c->authed = FAILED;
	}
}

static LmHandlerResult
message_cb(LmMessageHandler *handler, LmConnection *conn, LmMessage *m, gpointer user_data)
{
	Client *c = user_data;
	LmMessageNode *body = lm_message_node_get_child(m->node, "body");
	const char *from = lm_message_node_get_attribute(m->node, "from");

	(void) handler;
	(void) conn;
	if (body && lm_message_node_get_value(body)) {
		g_free(c->body);
		g_free(c->body_from);
		c->body = g_strdup(lm_message_node_get_value(body));
		c->body_from = g_strdup(from);
	}
	return LM_HANDLER_RESULT_REMOVE_MESSAGE;
}

/* Roster pushes (RFC 6121 §2.1.6): remembered, checked and acknowledged. */
static LmHandlerResult
iq_cb(LmMessageHandler *handler, LmConnection *conn, LmMessage *m, gpointer user_data)
{
	Client *c = user_data;
	LmMessageNode *query = lm_message_node_get_child(m->node, "query");
	const char *from = lm_message_node_get_attribute(m->node, "from");
	const char *id = lm_message_node_get_attribute(m->node, "id");
	const char *xmlns = query ? lm_message_node_get_attribute(query, "xmlns") : NULL;
	LmMessage *answer;

	(void) handler;
	if (lm_message_get_sub_type(m) != LM_MESSAGE_SUB_TYPE_SET || !xmlns ||
	    strcmp(xmlns, ROSTER_NS) != 0)
		return LM_HANDLER_RESULT_ALLOW_MORE_HANDLERS;
	c->pushes++;
	if (from && g_ascii_strcasecmp(from, c->jid) != 0) {
		/* A client MUST ignore it (RFC 6121 §2.1.6): count it as a fault. */
		c->bad_pushes++;
		diag("%s: roster push from %s", c->name, from);
		return LM_HANDLER_RESULT_REMOVE_MESSAGE;
	}
	if (c->push)
		lm_message_unref(c->push);
	c->push = lm_message_ref(m);
	answer = lm_message_new_with_sub_type(from, LM_MESSAGE_TYPE_IQ, LM_MESSAGE_SUB_TYPE_RESULT);
	if (id)
		lm_message_node_set_attribute(answer->node, "id", id);
	lm_connection_send(conn, answer, NULL);
	lm_message_unref(answer);
	return LM_HANDLER_RESULT_REMOVE_MESSAGE;
}

static LmHandlerResult
reply_cb(LmMessageHandler *handler, LmConnection *conn, LmMessage *m, gpointer user_data)
{
	Client *c = user_data;

	(void) handler;
	(void) conn;
	if (c->reply)
		lm_message_unref(c->reply);
	c->reply = lm_message_ref(m);
	return LM_HANDLER_RESULT_REMOVE_MESSAGE;
}

static void
client_free(Client *c)
{
	if (c->conn) {
		if (lm_connection_get_state(c->conn) != LM_CONNECTION_STATE_CLOSED)
			lm_connection_close(c->conn, NULL);
		lm_connection_unref(c->conn);
	}
	if (c->reply)
		lm_message_unref(c->reply);
	if (c->push)
		lm_message_unref(c->push);
	g_free(c->body);
	g_free(c->body_from);
	memset(c, 0, sizeof(*c));
}

/* Connect, STARTTLS (required) with the certificate checked against
 * cafile (NULL: the system's trust store), authenticate, bind. */
static gboolean
client_login(Client *c, const char *name, const char *host, guint port, const char *cafile,
             const char *jid, const char *password)
{
	g_autoptr(GError) error = NULL;
	LmSSL *ssl;
	LmMessageHandler *h;

	memset(c, 0, sizeof(*c));
	c->name = name;
	c->jid = jid;
	c->password = password;
	c->ssl_last = -1;
	c->conn = lm_connection_new_with_context(host, NULL);
	lm_connection_set_port(c->conn, port);
	lm_connection_set_jid(c->conn, jid);
	ssl = lm_ssl_new(NULL, ssl_cb, c, NULL);
	if (cafile)
		lm_ssl_set_ca(ssl, cafile);
	lm_ssl_use_starttls(ssl, TRUE, TRUE);
	lm_connection_set_ssl(c->conn, ssl);
	lm_ssl_unref(ssl);
	lm_connection_set_disconnect_function(c->conn, disconnect_cb, c, NULL);

	h = lm_message_handler_new(message_cb, c, NULL);
	lm_connection_register_message_handler(c->conn, h, LM_MESSAGE_TYPE_MESSAGE,
	                                       LM_HANDLER_PRIORITY_NORMAL);
	lm_message_handler_unref(h);
	h = lm_message_handler_new(iq_cb, c, NULL);
	lm_connection_register_message_handler(c->conn, h, LM_MESSAGE_TYPE_IQ,
	                                       LM_HANDLER_PRIORITY_NORMAL);
	lm_message_handler_unref(h);

	if (!lm_connection_open(c->conn, open_cb, c, NULL, &error)) {
		diag("%s: lm_connection_open: %s", name, error->message);
		return FALSE;
	}
	if (!run_until(c, is_opened) || c->opened != SUCCEEDED) {
		diag("%s: the stream did not open", name);
		return FALSE;
	}
	if (!run_until(c, is_authed) || c->authed != SUCCEEDED) {
		diag("%s: authentication %s", name,
		     c->authed == FAILED ? "failed"
		                         : (c->disconnected ? "cut by a disconnect" : "timed out"));
		return FALSE;
	}
	return lm_connection_is_authenticated(c->conn);
}

/* Send m and wait for the answer with its id; NULL on timeout. The
 * answer stays owned by c (c->reply). */
static LmMessage *
request(Client *c, LmMessage *m)
{
	g_autoptr(GError) error = NULL;
	LmMessageHandler *h = lm_message_handler_new(reply_cb, c, NULL);
	gboolean sent;

	if (c->reply) {
		lm_message_unref(c->reply);
		c->reply = NULL;
	}
	sent = lm_connection_send_with_reply(c->conn, m, h, &error);
	lm_message_handler_unref(h);
	lm_message_unref(m);
	if (!sent) {
		diag("%s: send: %s", c->name, error->message);
		return NULL;
	}
	run_until(c, has_reply);
	return c->reply;
}

static gboolean
is_result(LmMessage *m)
{
	return m && lm_message_get_type(m) == LM_MESSAGE_TYPE_IQ &&
	       lm_message_get_sub_type(m) == LM_MESSAGE_SUB_TYPE_RESULT;
}

/* "result", or the error condition, for the TAP line. */
static char *
describe(LmMessage *m)
{
	LmMessageNode *error, *n;

	if (!m)
		return g_strdup("no answer");
	if (is_result(m))
		return g_strdup("result");
	error = lm_message_node_get_child(m->node, "error");
	for (n = error ? error->children : NULL; n; n = n->next) {
		if (strcmp(n->name, "text") != 0)
			return g_strdup_printf("error %s/%s",
			                       lm_message_node_get_attribute(error, "type"),
			                       n->name);
	}
	return g_strdup_printf("type %s", lm_message_node_get_attribute(m->node, "type"));
}

static gboolean
ping(Client *c)
{
	LmMessage *m =
	        lm_message_new_with_sub_type(domain, LM_MESSAGE_TYPE_IQ, LM_MESSAGE_SUB_TYPE_GET);
	LmMessageNode *p = lm_message_node_add_child(m->node, "ping", NULL);

	lm_message_node_set_attribute(p, "xmlns", "urn:xmpp:ping");
	return is_result(request(c, m));
}

static void
send_presence(Client *c)
{
	LmMessage *m = lm_message_new(NULL, LM_MESSAGE_TYPE_PRESENCE);

	lm_connection_send(c->conn, m, NULL);
	lm_message_unref(m);
}

static LmMessage *
roster_get(Client *c)
{
	LmMessage *m =
	        lm_message_new_with_sub_type(NULL, LM_MESSAGE_TYPE_IQ, LM_MESSAGE_SUB_TYPE_GET);
	LmMessageNode *q = lm_message_node_add_child(m->node, "query", NULL);

	lm_message_node_set_attribute(q, "xmlns", ROSTER_NS);
	return request(c, m);
}

/* A roster set with one item: name and group, or subscription='remove'
 * when name is NULL. */
static LmMessage *
roster_set(Client *c, const char *jid, const char *name, const char *group)
{
	LmMessage *m =
	        lm_message_new_with_sub_type(NULL, LM_MESSAGE_TYPE_IQ, LM_MESSAGE_SUB_TYPE_SET);
	LmMessageNode *q = lm_message_node_add_child(m->node, "query", NULL);
	LmMessageNode *item;

	lm_message_node_set_attribute(q, "xmlns", ROSTER_NS);
	item = lm_message_node_add_child(q, "item", NULL);
	lm_message_node_set_attribute(item, "jid", jid);
	if (name) {
		lm_message_node_set_attribute(item, "name", name);
		lm_message_node_add_child(item, "group", group);
	} else {
		lm_message_node_set_attribute(item, "subscription", "remove");
	}
	return request(c, m);
}

/* The <item/> for jid in a roster result or push, or NULL. */
static LmMessageNode *
find_item(LmMessage *m, const char *jid)
{
	LmMessageNode *q = m ? lm_message_node_get_child(m->node, "query") : NULL;
	LmMessageNode *n;

	for (n = q ? q->children : NULL; n; n = n->next) {
		const char *j = lm_message_node_get_attribute(n, "jid");

		if (strcmp(n->name, "item") == 0 && j && g_ascii_strcasecmp(j, jid) == 0)
			return n;
	}
	return NULL;
}

static gboolean
item_has_group(LmMessageNode *item, const char *group)
{
	LmMessageNode *n;

	for (n = item ? item->children : NULL; n; n = n->next) {
		if (strcmp(n->name, "group") == 0 && g_strcmp0(n->value, group) == 0)
			return TRUE;
	}
	return FALSE;
}

static gboolean
item_is(LmMessageNode *item, const char *name, const char *group)
{
	return item && g_strcmp0(lm_message_node_get_attribute(item, "name"), name) == 0 &&
	       item_has_group(item, group);
}

static void
take_push(Client *c)
{
	if (c->push) {
		lm_message_unref(c->push);
		c->push = NULL;
	}
}

static void
test_roster(Client *a, const char *peer)
{
	LmMessage *r;
	LmMessageNode *item;
	const char *sub;
	g_autofree char *what = NULL;

	/* 7: the roster can be read; this also makes a an interested
	 * resource, which gets roster pushes from now on. */
	r = roster_get(a);
	what = describe(r);
	tap(is_result(r) && lm_message_node_get_child(r->node, "query") && !find_item(r, peer),
	    "roster get: result without %s (%s)", peer, what);

	/* 8-9: set an item with a name and a group. */
	take_push(a);
	r = roster_set(a, peer, ITEM_NAME, ITEM_GROUP);
	g_free(what);
	what = describe(r);
	tap(is_result(r), "roster set of %s with name and group: result (%s)", peer, what);
	if (is_result(r))
		run_until(a, has_push);
	item = find_item(a->push, peer);
	sub = item ? lm_message_node_get_attribute(item, "subscription") : NULL;
	tap(item_is(item, ITEM_NAME, ITEM_GROUP) && (!sub || strcmp(sub, "none") == 0),
	    "roster push of the new item (name, group, subscription none)");

	/* 10: the roster has it. */
	r = roster_get(a);
	item = find_item(r, peer);
	tap(is_result(r) && item_is(item, ITEM_NAME, ITEM_GROUP),
	    "roster get: %s is there with name '%s' and group '%s'", peer, ITEM_NAME, ITEM_GROUP);

	/* 11-12: remove it. */
	take_push(a);
	r = roster_set(a, peer, NULL, NULL);
	g_free(what);
	what = describe(r);
	tap(is_result(r), "roster remove of %s: result (%s)", peer, what);
	if (is_result(r))
		run_until(a, has_push);
	item = find_item(a->push, peer);
	tap(item && g_strcmp0(lm_message_node_get_attribute(item, "subscription"), "remove") == 0,
	    "roster push with subscription='remove'");

	/* 13: gone. */
	r = roster_get(a);
	tap(is_result(r) && !find_item(r, peer), "roster get: %s is gone", peer);

	/* 14: every push came from the account itself. */
	tap(a->bad_pushes == 0, "no roster push from another entity (%d pushes)", a->pushes);
}

int
main(int argc, char **argv)
{
	Client a, b, untrusted;
	gboolean ok_a, ok_b;
	guint port;
	g_autofree char *full_a = NULL;

	if (argc != 9) {
		fprintf(stderr, "usage: %s HOST PORT CAFILE DOMAIN JID1 PASS1 JID2 PASS2\n",
		        argv[0]);
		return 2;
	}
	const char *host = argv[1];
	const char *cafile = argv[3];
	const char *jid1 = argv[5], *jid2 = argv[7];

	port = (guint) g_ascii_strtoull(argv[2], NULL, 10);
	domain = argv[4];
	if (!lm_ssl_is_supported()) {
		printf("1..0 # SKIP Loudmouth was built without TLS\n");
		return 0;
	}
	printf("1..14\n");
	fflush(stdout);

	/* 1: STARTTLS, certificate verified against CAFILE, PLAIN, bind. */
	ok_a = client_login(&a, "jid1", host, port, cafile, jid1, argv[6]);
	tap(ok_a && a.ssl_problems == 0, "login of %s over STARTTLS with a verified certificate",
	    jid1);

	/* 2: the same server, but the certificate's issuer is not trusted:
	 * the callback is told and the handshake stops. */
	client_login(&untrusted, "untrusted", host, port, NULL, jid1, argv[6]);
	tap(untrusted.ssl_problems > 0 && untrusted.authed != SUCCEEDED,
	    "no login when the certificate is not trusted (status %d)", (int) untrusted.ssl_last);
	client_free(&untrusted);

	/* 3 */
	ok_b = client_login(&b, "jid2", host, port, cafile, jid2, argv[8]);
	tap(ok_b && b.ssl_problems == 0, "login of %s over STARTTLS with a verified certificate",
	    jid2);

	/* 4-5: a chat message to JID2's bare JID, once the server has seen
	 * JID2's initial presence (a stream is processed in order: the
	 * answer to a ping sent after it is the proof). */
	if (ok_a && ok_b) {
		LmMessage *m = lm_message_new_with_sub_type(jid2, LM_MESSAGE_TYPE_MESSAGE,
		                                            LM_MESSAGE_SUB_TYPE_CHAT);
		const char *text = "hello from loudmouth <&> \xc3\xa9";

		send_presence(&b);
		if (!ping(&b))
			diag("jid2: no answer to the ping after the initial presence");
		/* Despite its type, the connection owns the string. */
		full_a = g_strdup(lm_connection_get_full_jid(a.conn));
		lm_message_node_add_child(m->node, "body", text);
		lm_connection_send(a.conn, m, NULL);
		lm_message_unref(m);
		run_until(&b, has_body);
		tap(g_strcmp0(b.body, text) == 0, "chat message to %s's bare JID: body received",
		    jid2);
		tap(b.body_from && g_strcmp0(b.body_from, full_a) == 0,
		    "the message is from %s (got %s)", full_a, b.body_from ? b.body_from : "none");
	} else {
		tap(FALSE, "chat message to %s's bare JID: body received # not logged in", jid2);
		tap(FALSE, "the message is from JID1's full JID # not logged in");
	}

	/* 6: a wrong password is refused (SASL failure, no session). */
	{
		g_autofree char *wrong = g_strconcat(argv[6], "x", NULL);
		Client bad;

		client_login(&bad, "wrong-password", host, port, cafile, jid1, wrong);
		tap(bad.opened == SUCCEEDED && bad.authed == FAILED && bad.ssl_problems == 0,
		    "a wrong password is refused");
		client_free(&bad);
	}

	/* 7-14: the roster (RFC 6121 §2). */
	if (ok_a) {
		test_roster(&a, jid2);
	} else {
		for (int i = 0; i < 8; i++)
			tap(FALSE, "roster # %s not logged in", jid1);
	}

	client_free(&a);
	client_free(&b);
	return failures ? 1 : 0;
}
