/* SCRAM-*-PLUS with RFC 9266 tls-exporter over TLS 1.3 against a running
 * Magpie sandbox. Prints TAP. No XMPP client library on Debian 12 does this
 * (slixmpp binds tls-unique only, libstrophe 0.12 has no -PLUS), so this is
 * a tiny blocking client: GnuTLS for TLS and the binding data, Cyrus SASL's
 * client side for SCRAM, string matching for the XML.
 *
 * scram-plus-client HOST PORT DIRECT_TLS_PORT CAFILE DOMAIN JID PASSWORD
 *
 * The server certificate is verified against CAFILE for DOMAIN. Every case
 * is its own connection; the successful ones bind a resource and get an
 * answer to a jabber:iq:version query before closing the stream. */
#include <errno.h>
#include <glib.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <poll.h>
#include <sasl/sasl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define TIMEOUT_MS 10000
#define NS_SASL    "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_TLS     "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_BIND    "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"
/* Cyrus stores every callback as int (*)(void); the detour through
 * void (*)(void) keeps -Wcast-function-type quiet. */
#define SASL_CB_FN(f) ((int (*)(void))(void (*)(void))(f))

typedef struct {
	const char *host;
	const char *port;
	const char *tls_port;
	const char *cafile;
	const char *domain;
	char *localpart;
	const char *password;
} Options;

typedef struct {
	int fd;
	gnutls_session_t tls;
	gnutls_certificate_credentials_t cred;
	GString *in;
	gboolean closed;
} Conn;

/* One parsed top-level element: its name, start tag and text content. */
typedef struct {
	char *name;
	char *start_tag;
	char *whole;
	char *text;
} Element;

typedef enum {
	EXPECT_SUCCESS,
	EXPECT_FAILURE,
} Expect;

typedef struct {
	const char *description;
	gboolean direct_tls;
	const char *mech;
	/* The name in the gs2 header, and which GnuTLS binding gives the data. */
	const char *cb_name;
	gnutls_channel_binding_t cb_type;
	gboolean corrupt; /* flip one byte of the binding data */
	/* Skip (rather than fail) when the server does not offer cb_name. */
	gboolean optional;
	Expect expect;
} Case;

typedef struct {
	const char *authname;
	sasl_secret_t *secret;
} Credentials;

static int test_number;
static int failures;
static Options opt;

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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

static void
tap(int ok, const char *description, const char *directive)
{
	test_number++;
	if (!ok)
		failures++;
	printf("%s %d - %s%s%s\n", ok ? "ok" : "not ok", test_number, description,
	       directive ? " # " : "", directive ? directive : "");
	fflush(stdout);
}

static void
element_clear(Element *el)
{
	g_clear_pointer(&el->name, g_free);
	g_clear_pointer(&el->start_tag, g_free);
	g_clear_pointer(&el->whole, g_free);
	g_clear_pointer(&el->text, g_free);
}

/* ---- transport ---- */

static gboolean
conn_connect(Conn *c, const char *port)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->in = g_string_new(NULL);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(opt.host, port, &hints, &res);
	if (rc != 0) {
		diag("getaddrinfo %s: %s", opt.host, gai_strerror(rc));
		return FALSE;
	}
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (c->fd < 0)
			continue;
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		diag("cannot connect to %s port %s: %s", opt.host, port, g_strerror(errno));
		return FALSE;
	}
	return TRUE;
}

static void
conn_close(Conn *c)
{
	if (c->tls != NULL) {
		if (!c->closed)
			gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c->tls);
		c->tls = NULL;
	}
	if (c->cred != NULL) {
		gnutls_certificate_free_credentials(c->cred);
		c->cred = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->in != NULL)
		g_string_free(c->in, TRUE);
	c->in = NULL;
}

static gboolean
conn_write(Conn *c, const char *data)
{
	size_t len = strlen(data), done = 0;

	while (done < len) {
		ssize_t n;

		if (c->tls != NULL)
			n = gnutls_record_send(c->tls, data + done, len - done);
		else
			n = send(c->fd, data + done, len - done, MSG_NOSIGNAL);
		if (c->tls != NULL && (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED))
			continue;
		if (c->tls == NULL && n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			diag("write failed: %s",
			     c->tls != NULL ? gnutls_strerror((int) n) : g_strerror(errno));
			return FALSE;
		}
		done += (size_t) n;
	}
	return TRUE;
}

/* Append whatever arrives next to c->in; FALSE on timeout, EOF or error. */
static gboolean
conn_read_more(Conn *c, gint64 deadline)
{
	char buf[4096];

	for (;;) {
		ssize_t n;

		if (c->tls == NULL || gnutls_record_check_pending(c->tls) == 0) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			gint64 left = (deadline - g_get_monotonic_time()) / 1000;
			int rc;

			if (left <= 0) {
				diag("timed out waiting for the server");
				return FALSE;
			}
			rc = poll(&pfd, 1, (int) left);
			if (rc < 0 && errno == EINTR)
				continue;
			if (rc <= 0) {
				diag("timed out waiting for the server");
				return FALSE;
			}
		}
		if (c->tls != NULL) {
			n = gnutls_record_recv(c->tls, buf, sizeof(buf));
			/* Post-handshake messages (session tickets) come back empty. */
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
				continue;
			if (n < 0) {
				diag("TLS read failed: %s", gnutls_strerror((int) n));
				return FALSE;
			}
		} else {
			n = recv(c->fd, buf, sizeof(buf), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				diag("read failed: %s", g_strerror(errno));
				return FALSE;
			}
		}
		if (n == 0) {
			c->closed = TRUE;
			diag("the server closed the connection");
			return FALSE;
		}
		g_string_append_len(c->in, buf, n);
		return TRUE;
	}
}

/* ---- a tiny string-based XML reader ---- */

/* Remove len bytes from the front of the input. */
static void
conn_consume(Conn *c, gsize len)
{
	g_string_erase(c->in, 0, (gssize) len);
}

/* Try to cut the next top-level element out of c->in. The stream header
 * and the XML declaration are skipped; "</stream:stream>" comes back as
 * the element "/stream:stream". Returns TRUE when one was found. */
static gboolean
try_element(Conn *c, Element *el)
{
	for (;;) {
		const char *s = c->in->str;
		gsize skip = strspn(s, " \t\r\n");
		const char *tag_end, *name_end;
		g_autofree char *close_tag = NULL;
		const char *close;
		gsize total;

		if (skip > 0) {
			conn_consume(c, skip);
			continue;
		}
		if (s[0] == '\0')
			return FALSE;
		if (s[0] != '<') {
			/* Stray text between top-level elements: skip it. */
			const char *lt = strchr(s, '<');

			conn_consume(c, lt != NULL ? (gsize) (lt - s) : c->in->len);
			continue;
		}
		if (g_str_has_prefix(s, "<?")) {
			const char *end = strstr(s, "?>");

			if (end == NULL)
				return FALSE;
			conn_consume(c, (gsize) (end + 2 - s));
			continue;
		}
		tag_end = strchr(s, '>');
		if (tag_end == NULL)
			return FALSE;
		if (g_str_has_prefix(s, "<stream:stream")) {
			conn_consume(c, (gsize) (tag_end + 1 - s));
			continue;
		}
		if (g_str_has_prefix(s, "</stream:stream>")) {
			el->name = g_strdup("/stream:stream");
			el->start_tag = g_strdup("</stream:stream>");
			el->whole = g_strdup(el->start_tag);
			el->text = g_strdup("");
			conn_consume(c, strlen("</stream:stream>"));
			return TRUE;
		}
		name_end = s + 1 + strcspn(s + 1, " \t\r\n/>");
		el->name = g_strndup(s + 1, (gsize) (name_end - s - 1));
		el->start_tag = g_strndup(s, (gsize) (tag_end + 1 - s));
		if (tag_end[-1] == '/') {
			el->whole = g_strdup(el->start_tag);
			el->text = g_strdup("");
			conn_consume(c, strlen(el->start_tag));
			return TRUE;
		}
		close_tag = g_strdup_printf("</%s>", el->name);
		close = strstr(tag_end + 1, close_tag);
		if (close == NULL) {
			element_clear(el);
			return FALSE;
		}
		total = (gsize) (close - s) + strlen(close_tag);
		el->whole = g_strndup(s, total);
		el->text = g_strndup(tag_end + 1, (gsize) (close - tag_end - 1));
		conn_consume(c, total);
		return TRUE;
	}
}

static gboolean
read_element(Conn *c, Element *el)
{
	gint64 deadline = g_get_monotonic_time() + (gint64) TIMEOUT_MS * 1000;

	memset(el, 0, sizeof(*el));
	while (!try_element(c, el)) {
		if (!conn_read_more(c, deadline))
			return FALSE;
	}
	return TRUE;
}

/* Read the next element and insist on its name. */
static gboolean
expect_element(Conn *c, const char *name, Element *el)
{
	if (!read_element(c, el))
		return FALSE;
	if (!g_str_equal(el->name, name)) {
		diag("expected <%s>, got: %.300s", name, el->whole);
		element_clear(el);
		return FALSE;
	}
	return TRUE;
}

/* attr='value' or attr="value" somewhere in s. */
static gboolean
has_attr(const char *s, const char *attr, const char *value)
{
	g_autofree char *q1 = g_strdup_printf("%s='%s'", attr, value);
	g_autofree char *q2 = g_strdup_printf("%s=\"%s\"", attr, value);

	return strstr(s, q1) != NULL || strstr(s, q2) != NULL;
}

/* The part of s from "<name" up to its "</name>", or NULL. */
static char *
child_element(const char *s, const char *name)
{
	g_autofree char *open = g_strdup_printf("<%s", name);
	g_autofree char *close = g_strdup_printf("</%s>", name);
	const char *p = s, *end;

	for (;;) {
		p = strstr(p, open);
		if (p == NULL)
			return NULL;
		if (strchr(" \t\r\n/>", p[strlen(open)]) != NULL)
			break;
		p++;
	}
	end = strchr(p, '>');
	if (end != NULL && end[-1] == '/')
		return g_strndup(p, (gsize) (end + 1 - p));
	end = strstr(p, close);
	if (end == NULL)
		return NULL;
	return g_strndup(p, (gsize) (end + strlen(close) - p));
}

/* ---- XMPP steps ---- */

static gboolean
open_stream(Conn *c, Element *features)
{
	g_autofree char *header = g_strdup_printf(
	        "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client'"
	        " xmlns:stream='http://etherx.jabber.org/streams'>",
	        opt.domain);

	if (!conn_write(c, header))
		return FALSE;
	return expect_element(c, "stream:features", features);
}

static gboolean
tls_handshake(Conn *c, gboolean direct)
{
	int rc;
	unsigned status = 0;

	rc = gnutls_certificate_allocate_credentials(&c->cred);
	if (rc < 0) {
		diag("gnutls credentials: %s", gnutls_strerror(rc));
		return FALSE;
	}
	rc = gnutls_certificate_set_x509_trust_file(c->cred, opt.cafile, GNUTLS_X509_FMT_PEM);
	if (rc <= 0) {
		diag("cannot load %s: %s", opt.cafile,
		     rc < 0 ? gnutls_strerror(rc) : "no certificate");
		return FALSE;
	}
	gnutls_init(&c->tls, GNUTLS_CLIENT);
	rc = gnutls_priority_set_direct(c->tls, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL);
	if (rc < 0) {
		diag("gnutls priority: %s", gnutls_strerror(rc));
		return FALSE;
	}
	gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred);
	gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, opt.domain, strlen(opt.domain));
	gnutls_session_set_verify_cert(c->tls, opt.domain, 0);
	if (direct) {
		gnutls_datum_t alpn = { (unsigned char *) "xmpp-client", 11 };

		gnutls_alpn_set_protocols(c->tls, &alpn, 1, 0);
	}
	gnutls_transport_set_int(c->tls, c->fd);
	gnutls_handshake_set_timeout(c->tls, TIMEOUT_MS);
	do {
		rc = gnutls_handshake(c->tls);
	} while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0) {
		diag("TLS handshake failed: %s", gnutls_strerror(rc));
		if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
			gnutls_datum_t out = { NULL, 0 };

			status = gnutls_session_get_verify_cert_status(c->tls);
			if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
			                                                 &out, 0) == 0) {
				diag("certificate: %s", out.data);
				gnutls_free(out.data);
			}
		}
		return FALSE;
	}
	if (gnutls_protocol_get_version(c->tls) != GNUTLS_TLS1_3) {
		diag("negotiated %s, not TLS 1.3",
		     gnutls_protocol_get_name(gnutls_protocol_get_version(c->tls)));
		return FALSE;
	}
	return TRUE;
}

/* TCP, STARTTLS or direct TLS, then the features of the TLS stream. */
static gboolean
connect_tls(Conn *c, gboolean direct, Element *features)
{
	Element el = { 0 };
	gboolean ok;

	if (!conn_connect(c, direct ? opt.tls_port : opt.port))
		return FALSE;
	if (!direct) {
		if (!open_stream(c, &el))
			return FALSE;
		ok = strstr(el.whole, "<starttls") != NULL;
		element_clear(&el);
		if (!ok) {
			diag("no <starttls/> offered");
			return FALSE;
		}
		if (!conn_write(c, "<starttls xmlns='" NS_TLS "'/>") ||
		    !expect_element(c, "proceed", &el))
			return FALSE;
		element_clear(&el);
		if (c->in->len != 0) {
			diag("data after <proceed/> before the handshake");
			return FALSE;
		}
	}
	if (!tls_handshake(c, direct))
		return FALSE;
	return open_stream(c, features);
}

static gboolean
features_offer(const char *features, const char *mech, const char *cb_name, gboolean *cb_offered)
{
	g_autofree char *mechs = child_element(features, "mechanisms");
	g_autofree char *cbs = child_element(features, "sasl-channel-binding");
	g_autofree char *want = g_strdup_printf("<mechanism>%s</mechanism>", mech);

	if (mechs == NULL || strstr(mechs, want) == NULL) {
		diag("%s is not offered: %.500s", mech, features);
		return FALSE;
	}
	if (cbs == NULL || !has_attr(cbs, "xmlns", NS_SASL_CB)) {
		diag("no XEP-0440 <sasl-channel-binding/> in the features: %.500s", features);
		return FALSE;
	}
	*cb_offered = has_attr(cbs, "type", cb_name);
	return TRUE;
}

static int
sasl_simple_cb(void *context, int id, const char **result, unsigned *len)
{
	Credentials *cred = context;

	/* RFC 6120 §6.3.8: no authzid unless acting for someone else. */
	if (id == SASL_CB_USER)
		*result = "";
	else if (id == SASL_CB_AUTHNAME)
		*result = cred->authname;
	else
		return SASL_BADPARAM;
	if (len != NULL)
		*len = (unsigned) strlen(*result);
	return SASL_OK;
}

static int
sasl_pass_cb(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
{
	Credentials *cred = context;

	if (id != SASL_CB_PASS)
		return SASL_BADPARAM;
	*psecret = cred->secret;
	return SASL_OK;
}

static char *
base64_or_equals(const char *data, unsigned len)
{
	if (data == NULL || len == 0)
		return g_strdup("=");
	return g_base64_encode((const guchar *) data, len);
}

typedef enum {
	AUTH_ERROR,    /* something other than the server's verdict went wrong */
	AUTH_FAILURE,  /* <failure/> */
	AUTH_SUCCESS,  /* <success/> and Cyrus verified the server signature */
	AUTH_BAD_PROOF /* <success/> but the server signature did not check out */
} AuthResult;

/* The SASL exchange on an open TLS stream. *condition gets the
 * <failure/> condition. */
static AuthResult
authenticate(Conn *c, const Case *tc, char **condition)
{
	Credentials cred = { 0 };
	sasl_callback_t callbacks[] = {
		{ SASL_CB_AUTHNAME, SASL_CB_FN(sasl_simple_cb), &cred },
		{ SASL_CB_USER, SASL_CB_FN(sasl_simple_cb), &cred },
		{ SASL_CB_PASS, SASL_CB_FN(sasl_pass_cb), &cred },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	sasl_security_properties_t secprops = { 0 };
	sasl_channel_binding_t cb = { 0 };
	gnutls_datum_t datum = { NULL, 0 };
	sasl_conn_t *sconn = NULL;
	sasl_interact_t *interact = NULL;
	const char *out = NULL, *chosen = NULL;
	unsigned outlen = 0;
	AuthResult result = AUTH_ERROR;
	g_autofree char *b64 = NULL;
	g_autofree char *xml = NULL;
	gsize pwlen = strlen(opt.password);
	int challenges = 0;
	int rc;

	cred.authname = opt.localpart;
	cred.secret = g_malloc0(sizeof(sasl_secret_t) + pwlen + 1);
	cred.secret->len = pwlen;
	memcpy(cred.secret->data, opt.password, pwlen);

	rc = gnutls_session_channel_binding(c->tls, tc->cb_type, &datum);
	if (rc < 0 || datum.size == 0) {
		diag("gnutls_session_channel_binding: %s", gnutls_strerror(rc));
		goto out;
	}
	if (tc->corrupt)
		datum.data[datum.size / 2] ^= 0x01;

	rc = sasl_client_new("xmpp", opt.domain, NULL, NULL, callbacks, 0, &sconn);
	if (rc != SASL_OK) {
		diag("sasl_client_new: %s", sasl_errstring(rc, NULL, NULL));
		goto out;
	}
	secprops.min_ssf = 0;
	secprops.max_ssf = 0;
	secprops.maxbufsize = 0;
	sasl_setprop(sconn, SASL_SEC_PROPS, &secprops);
	cb.name = tc->cb_name;
	cb.critical = 1;
	cb.data = datum.data;
	cb.len = datum.size;
	sasl_setprop(sconn, SASL_CHANNEL_BINDING, &cb);

	rc = sasl_client_start(sconn, tc->mech, &interact, &out, &outlen, &chosen);
	if (rc != SASL_OK && rc != SASL_CONTINUE) {
		diag("sasl_client_start %s: %s", tc->mech, sasl_errdetail(sconn));
		goto out;
	}
	/* Cyrus names the plugin ("SCRAM-SHA-256"), not the -PLUS variant:
	 * the gs2 header below is what shows that it binds the channel. */
	if (chosen == NULL || !g_str_has_prefix(tc->mech, chosen)) {
		diag("Cyrus chose %s instead of %s", chosen ? chosen : "nothing", tc->mech);
		goto out;
	}
	{
		g_autofree char *gs2 = g_strndup(out, outlen);
		g_autofree char *want = g_strdup_printf("p=%s,,", tc->cb_name);

		if (!g_str_has_prefix(gs2, want)) {
			diag("the client-first-message does not start with %s", want);
			goto out;
		}
	}
	b64 = base64_or_equals(out, outlen);
	xml = g_strdup_printf("<auth xmlns='" NS_SASL "' mechanism='%s'>%s</auth>", tc->mech, b64);
	if (!conn_write(c, xml))
		goto out;

	for (;;) {
		Element el = { 0 };
		g_autofree guchar *data = NULL;
		gsize len = 0;
		g_autofree char *text = NULL;

		if (!read_element(c, &el))
			goto out;
		text = g_strstrip(g_strdup(el.text));
		if (g_str_equal(el.name, "failure")) {
			const char *p = strchr(el.text, '<');
			gsize n = p != NULL ? strcspn(p + 1, " \t\r\n/>") : 0;

			*condition = p != NULL ? g_strndup(p + 1, n) : g_strdup("(none)");
			diag("<failure/> after %d challenge(s)", challenges);
			result = AUTH_FAILURE;
			element_clear(&el);
			goto out;
		}
		if (!g_str_equal(el.name, "challenge") && !g_str_equal(el.name, "success")) {
			diag("unexpected during SASL: %.300s", el.whole);
			element_clear(&el);
			goto out;
		}
		if (*text != '\0' && !g_str_equal(text, "="))
			data = g_base64_decode(text, &len);
		if (g_str_equal(el.name, "success")) {
			element_clear(&el);
			if (rc == SASL_OK) {
				/* Cyrus finished already: nothing left to check. */
				result = AUTH_SUCCESS;
				goto out;
			}
			if (len == 0) {
				diag("<success/> without the server signature");
				result = AUTH_BAD_PROOF;
				goto out;
			}
			rc = sasl_client_step(sconn, (const char *) data, (unsigned) len, &interact,
			                      &out, &outlen);
			if (rc != SASL_OK) {
				diag("the server signature did not verify: %s",
				     sasl_errdetail(sconn));
				result = AUTH_BAD_PROOF;
				goto out;
			}
			result = AUTH_SUCCESS;
			goto out;
		}
		element_clear(&el);
		challenges++;
		rc = sasl_client_step(sconn, (const char *) data, (unsigned) len, &interact, &out,
		                      &outlen);
		if (rc != SASL_OK && rc != SASL_CONTINUE) {
			diag("sasl_client_step: %s", sasl_errdetail(sconn));
			goto out;
		}
		g_free(b64);
		g_free(xml);
		b64 = base64_or_equals(out, outlen);
		xml = g_strdup_printf("<response xmlns='" NS_SASL "'>%s</response>", b64);
		if (!conn_write(c, xml))
			goto out;
	}

out:
	if (sconn != NULL)
		sasl_dispose(&sconn);
	gnutls_free(datum.data);
	g_free(cred.secret);
	return result;
}

/* Restart, bind a resource, ask the server for its version, close. */
static gboolean
use_session(Conn *c)
{
	Element el = { 0 };
	gboolean ok;

	if (!open_stream(c, &el))
		return FALSE;
	ok = strstr(el.whole, "<bind") != NULL && has_attr(el.whole, "xmlns", NS_BIND);
	element_clear(&el);
	if (!ok) {
		diag("no resource binding offered after SASL");
		return FALSE;
	}
	if (!conn_write(c, "<iq type='set' id='b1'><bind xmlns='" NS_BIND
	                   "'><resource>scram-plus</resource></bind></iq>") ||
	    !expect_element(c, "iq", &el))
		return FALSE;
	ok = has_attr(el.start_tag, "type", "result") && has_attr(el.start_tag, "id", "b1") &&
	     strstr(el.whole, "<jid>") != NULL;
	if (!ok)
		diag("bind failed: %.300s", el.whole);
	element_clear(&el);
	if (!ok)
		return FALSE;

	{
		g_autofree char *iq = g_strdup_printf(
		        "<iq type='get' to='%s' id='v1'><query xmlns='jabber:iq:version'/></iq>",
		        opt.domain);

		if (!conn_write(c, iq))
			return FALSE;
	}
	/* Skip anything else the server might push (it should not). */
	for (int i = 0; i < 20; i++) {
		if (!read_element(c, &el))
			return FALSE;
		if (g_str_equal(el.name, "iq") && has_attr(el.start_tag, "id", "v1"))
			break;
		element_clear(&el);
	}
	ok = el.name != NULL && has_attr(el.start_tag, "type", "result") &&
	     strstr(el.whole, "jabber:iq:version") != NULL;
	if (!ok)
		diag("no version result: %.300s", el.whole ? el.whole : "(nothing)");
	element_clear(&el);
	if (!ok)
		return FALSE;

	if (!conn_write(c, "</stream:stream>"))
		return FALSE;
	/* The server closes its side too; do not insist on it. */
	if (read_element(c, &el)) {
		if (!g_str_equal(el.name, "/stream:stream"))
			diag("after </stream:stream>: %.300s", el.whole);
		element_clear(&el);
	}
	return TRUE;
}

static void
run_case(const Case *tc)
{
	Conn c;
	Element features = { 0 };
	g_autofree char *condition = NULL;
	gboolean cb_offered = FALSE;
	AuthResult res;

	if (!connect_tls(&c, tc->direct_tls, &features)) {
		tap(0, tc->description, NULL);
		goto out;
	}
	if (!features_offer(features.whole, tc->mech, tc->cb_name, &cb_offered)) {
		tap(0, tc->description, NULL);
		goto out;
	}
	if (!cb_offered && tc->optional) {
		tap(1, tc->description, "SKIP the server does not offer this channel binding");
		goto out;
	}
	if (!cb_offered && tc->expect == EXPECT_SUCCESS) {
		diag("channel binding %s is not offered: %.500s", tc->cb_name, features.whole);
		tap(0, tc->description, NULL);
		goto out;
	}
	if (cb_offered && tc->expect == EXPECT_FAILURE && g_str_equal(tc->cb_name, "tls-unique")) {
		diag("the server offers tls-unique on TLS 1.3");
		tap(0, tc->description, NULL);
		goto out;
	}

	res = authenticate(&c, tc, &condition);
	if (tc->expect == EXPECT_FAILURE) {
		if (res == AUTH_FAILURE)
			diag("failure condition: %s", condition);
		else if (res == AUTH_SUCCESS || res == AUTH_BAD_PROOF)
			diag("the server accepted the authentication");
		/* RFC 6120 §6.5.10: the proof does not verify. */
		tap(res == AUTH_FAILURE && g_str_equal(condition, "not-authorized"),
		    tc->description, NULL);
		if (res == AUTH_FAILURE)
			conn_write(&c, "</stream:stream>");
		goto out;
	}
	if (res == AUTH_FAILURE)
		diag("the server said <failure/> with <%s/>", condition);
	if (res != AUTH_SUCCESS) {
		tap(0, tc->description, NULL);
		goto out;
	}
	tap(use_session(&c), tc->description, NULL);

out:
	element_clear(&features);
	conn_close(&c);
}

int
main(int argc, char **argv)
{
	static const Case cases[] = {
		{ "SCRAM-SHA-256-PLUS with tls-exporter over STARTTLS (TLS 1.3)", FALSE,
		  "SCRAM-SHA-256-PLUS", "tls-exporter", GNUTLS_CB_TLS_EXPORTER, FALSE, FALSE,
		  EXPECT_SUCCESS },
		{ "SCRAM-SHA-1-PLUS with tls-exporter over direct TLS (TLS 1.3)", TRUE,
		  "SCRAM-SHA-1-PLUS", "tls-exporter", GNUTLS_CB_TLS_EXPORTER, FALSE, FALSE,
		  EXPECT_SUCCESS },
		{ "SCRAM-SHA-256-PLUS with tls-exporter over direct TLS (TLS 1.3)", TRUE,
		  "SCRAM-SHA-256-PLUS", "tls-exporter", GNUTLS_CB_TLS_EXPORTER, FALSE, FALSE,
		  EXPECT_SUCCESS },
		{ "SCRAM-SHA-256-PLUS with tls-server-end-point over STARTTLS (TLS 1.3)", FALSE,
		  "SCRAM-SHA-256-PLUS", "tls-server-end-point", GNUTLS_CB_TLS_SERVER_END_POINT,
		  FALSE, TRUE, EXPECT_SUCCESS },
		{ "SCRAM-SHA-256-PLUS with a corrupted tls-exporter value fails", FALSE,
		  "SCRAM-SHA-256-PLUS", "tls-exporter", GNUTLS_CB_TLS_EXPORTER, TRUE, FALSE,
		  EXPECT_FAILURE },
		{ "SCRAM-SHA-1-PLUS with a corrupted tls-exporter value fails", TRUE,
		  "SCRAM-SHA-1-PLUS", "tls-exporter", GNUTLS_CB_TLS_EXPORTER, TRUE, FALSE,
		  EXPECT_FAILURE },
		{ "SCRAM-SHA-256-PLUS naming tls-unique on TLS 1.3 fails", FALSE,
		  "SCRAM-SHA-256-PLUS", "tls-unique", GNUTLS_CB_TLS_EXPORTER, FALSE, FALSE,
		  EXPECT_FAILURE },
	};
	const char *jid;
	const char *at;
	int rc;

	if (argc != 8) {
		fprintf(stderr, "usage: %s HOST PORT DIRECT_TLS_PORT CAFILE DOMAIN JID PASSWORD\n",
		        argv[0]);
		return 2;
	}
	opt.host = argv[1];
	opt.port = argv[2];
	opt.tls_port = argv[3];
	opt.cafile = argv[4];
	opt.domain = argv[5];
	jid = argv[6];
	opt.password = argv[7];
	at = strchr(jid, '@');
	opt.localpart = at != NULL ? g_strndup(jid, (gsize) (at - jid)) : g_strdup(jid);

	printf("1..%d\n", (int) G_N_ELEMENTS(cases));
	fflush(stdout);
	gnutls_global_init();
	rc = sasl_client_init(NULL);
	if (rc != SASL_OK) {
		printf("Bail out! sasl_client_init: %s\n", sasl_errstring(rc, NULL, NULL));
		return 1;
	}
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++)
		run_case(&cases[i]);

	sasl_client_done();
	gnutls_global_deinit();
	g_free(opt.localpart);
	return failures == 0 ? 0 : 1;
}
