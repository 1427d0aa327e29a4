/* One XMPP client connection of the load generator. */
#include "loadgen.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

enum { SC_TEXT, SC_LT, SC_TAG, SC_SQ, SC_DQ, SC_DECL };

#define STREAM_HEADER                                                                              \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                               \
	"xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>"

static void conn_fail(Conn *c, const char *why);
static void conn_flush(Conn *c);
static void handshake(Conn *c);

/* Connections closed during a callback are freed only after the current
 * epoll batch (conn_reap), never under the caller's feet. */
static GPtrArray *graveyard;

Conn *
conn_new(const ConnConfig *cfg, guint user, guint index)
{
	Conn *c = g_new0(Conn, 1);

	c->cfg = cfg;
	c->user = user;
	c->index = index;
	c->fd = -1;
	return c;
}

static void
epoll_update(Conn *c, gboolean want_out)
{
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };

	if (c->want_out == want_out)
		return;
	c->want_out = want_out;
	epoll_ctl(c->cfg->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
tls_begin(Conn *c)
{
	gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
	gnutls_priority_set(c->tls, c->cfg->priority);
	gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cfg->cred);
	gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, c->cfg->domain, strlen(c->cfg->domain));
	gnutls_transport_set_int(c->tls, c->fd);
	c->state = ST_HANDSHAKE;
}

void
conn_start(Conn *c)
{
	const ConnConfig *cfg = c->cfg;
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(cfg->port) };
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	int one = 1;

	c->started = g_get_monotonic_time();
	c->state = ST_CONNECTING;
	inet_pton(AF_INET, cfg->host, &dst.sin_addr);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(c, g_strerror(errno));
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
	if (cfg->n_sources > 0) {
		const struct sockaddr_in *src = &cfg->sources[c->index % cfg->n_sources];

		setsockopt(c->fd, IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, sizeof one);
		if (bind(c->fd, (const struct sockaddr *) src, sizeof *src) < 0) {
			conn_fail(c, g_strerror(errno));
			return;
		}
	}
	if (connect(c->fd, (struct sockaddr *) &dst, sizeof dst) < 0 && errno != EINPROGRESS) {
		conn_fail(c, g_strerror(errno));
		return;
	}
	c->want_out = TRUE;
	epoll_ctl(cfg->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void
raw_send(Conn *c, const char *data, gsize len)
{
	/* Before TLS only a stream header and <starttls/> are written, into
	 * an empty socket buffer: a short write means the peer is gone. */
	if (send(c->fd, data, len, MSG_NOSIGNAL) != (ssize_t) len)
		conn_fail(c, "plaintext write failed");
}

void
conn_send(Conn *c, const char *data, gsize len)
{
	if (c->state == ST_CLOSED)
		return;
	if (c->tls == NULL || c->state == ST_HANDSHAKE) {
		raw_send(c, data, len);
		return;
	}
	if (c->out_len + len > c->out_cap) {
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		if (c->out_len + len > c->out_cap) {
			c->out_cap = MAX(c->out_cap * 2, c->out_len + len + 256);
			c->out = g_realloc(c->out, c->out_cap);
		}
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	if (c->tls_pending == 0)
		conn_flush(c);
}

void
conn_sendf(Conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = g_vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n >= (int) sizeof buf) {
		g_autofree char *big = NULL;

		va_start(ap, fmt);
		big = g_strdup_vprintf(fmt, ap);
		va_end(ap);
		conn_send(c, big, strlen(big));
		return;
	}
	conn_send(c, buf, n);
}

static void
conn_flush(Conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t r;

		if (c->tls_pending > 0) {
			r = gnutls_record_send(c->tls, NULL, 0);
		} else {
			c->tls_pending = MIN(c->out_len - c->out_off, 16384);
			r = gnutls_record_send(c->tls, c->out + c->out_off, c->tls_pending);
		}
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			epoll_update(c, TRUE);
			return;
		}
		c->tls_pending = 0;
		if (r < 0) {
			conn_fail(c, gnutls_strerror(r));
			return;
		}
		c->out_off += r;
	}
	c->out_off = c->out_len = 0;
	if (c->out_cap > 4096) {
		g_free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	epoll_update(c, FALSE);
}

static void
stream_open(Conn *c)
{
	c->depth = 0;
	c->scan_state = SC_TEXT;
	conn_sendf(c, STREAM_HEADER, c->cfg->domain);
}

/* ---- stanza text helpers ---------------------------------------------- */

static gboolean
name_matches(const char *p, const char *end, const char *local)
{
	const char *n = p, *colon = NULL;
	gsize l = strlen(local);

	while (p < end && *p != ' ' && *p != '>' && *p != '/' && *p != '\t' && *p != '\n' &&
	       *p != '\r') {
		if (*p == ':')
			colon = p;
		p++;
	}
	if (colon != NULL)
		n = colon + 1;
	return (gsize) (p - n) == l && memcmp(n, local, l) == 0;
}

gboolean
stanza_is(const char *data, gsize len, const char *local_name)
{
	return len > 1 && data[0] == '<' && name_matches(data + 1, data + len, local_name);
}

gboolean
stanza_attr_span(const char *data, gsize len, const char *name, const char **value,
                 gsize *value_len)
{
	const char *end = data + len, *p = data + 1;
	gsize nl = strlen(name);

	/* Skip the element name, then walk attributes up to the first '>'. */
	while (p < end && *p != ' ' && *p != '>' && *p != '/')
		p++;
	while (p < end && *p != '>') {
		const char *an;
		char q;
		const char *v;

		while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			p++;
		if (p >= end || *p == '>' || *p == '/')
			return FALSE;
		an = p;
		while (p < end && *p != '=' && *p != ' ' && *p != '>')
			p++;
		if (p >= end || *p != '=')
			return FALSE;
		if ((gsize) (p - an) == nl && memcmp(an, name, nl) == 0) {
			p++;
			if (p >= end || (*p != '\'' && *p != '"'))
				return FALSE;
			q = *p++;
			v = p;
			while (p < end && *p != q)
				p++;
			if (p >= end)
				return FALSE;
			*value = v;
			*value_len = p - v;
			return TRUE;
		}
		p++;
		if (p >= end || (*p != '\'' && *p != '"'))
			return FALSE;
		q = *p++;
		while (p < end && *p != q)
			p++;
		p++;
	}
	return FALSE;
}

char *
stanza_attr(const char *data, gsize len, const char *name)
{
	const char *v;
	gsize vl;

	if (!stanza_attr_span(data, len, name, &v, &vl))
		return NULL;
	return g_strndup(v, vl);
}

/* The character data of a simple element <x ...>text</x>, or "". */
static char *
element_text(const char *data, gsize len)
{
	const char *gt = memchr(data, '>', len);
	const char *lt;

	if (gt == NULL || gt[-1] == '/')
		return g_strdup("");
	lt = g_strrstr_len(data, len, "</");
	if (lt == NULL || lt < gt)
		return g_strdup("");
	return g_strndup(gt + 1, lt - gt - 1);
}

static gboolean
contains(const char *data, gsize len, const char *needle)
{
	return g_strstr_len(data, len, needle) != NULL;
}

/* ---- the login state machine ------------------------------------------ */

static void
send_auth(Conn *c)
{
	if (c->cfg->mech == MECH_PLAIN) {
		g_autofree char *user = g_strdup_printf("u%u", c->user);
		gsize ul = strlen(user), pl = strlen(c->cfg->password);
		g_autofree char *raw = g_malloc(ul + pl + 2);
		g_autofree char *b64 = NULL;

		raw[0] = '\0';
		memcpy(raw + 1, user, ul);
		raw[ul + 1] = '\0';
		memcpy(raw + ul + 2, c->cfg->password, pl);
		b64 = g_base64_encode((const guchar *) raw, ul + pl + 2);
		conn_sendf(c,
		           "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
		           "mechanism='PLAIN'>%s</auth>",
		           b64);
	} else {
		g_autofree char *first = scram_client_first(c);

		conn_sendf(c,
		           "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
		           "mechanism='SCRAM-SHA-1'>%s</auth>",
		           first);
	}
	c->state = ST_AUTH;
}

static void
became_ready(Conn *c)
{
	c->state = ST_READY;
	c->ready_at = g_get_monotonic_time();
	g_clear_pointer(&c->scram_first_bare, g_free);
	g_clear_pointer(&c->scram_server_sig, g_free);
	c->cfg->events->ready(c);
}

static void
after_roster(Conn *c)
{
	if (c->cfg->presence) {
		/* The ping's answer proves the server processed the presence. */
		conn_sendf(c,
		           "<presence/><iq type='get' id='p' to='%s'>"
		           "<ping xmlns='urn:xmpp:ping'/></iq>",
		           c->cfg->domain);
		c->state = ST_PING;
	} else {
		became_ready(c);
	}
}

static void
handle_login_stanza(Conn *c, const char *d, gsize n)
{
	if (stanza_is(d, n, "error")) {
		g_autofree char *text = g_strndup(d, MIN(n, 300));

		conn_fail(c, text);
		return;
	}
	switch (c->state) {
	case ST_FEATURES_PLAIN:
		if (!stanza_is(d, n, "features"))
			return;
		if (!contains(d, n, "<starttls")) {
			conn_fail(c, "no STARTTLS offered");
			return;
		}
		raw_send(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 51);
		c->state = ST_STARTTLS;
		return;
	case ST_STARTTLS:
		if (!stanza_is(d, n, "proceed")) {
			conn_fail(c, "STARTTLS refused");
			return;
		}
		tls_begin(c);
		handshake(c);
		return;
	case ST_FEATURES_TLS: {
		const char *want = c->cfg->mech == MECH_PLAIN ? ">PLAIN<" : ">SCRAM-SHA-1<";

		if (!stanza_is(d, n, "features"))
			return;
		if (!contains(d, n, want)) {
			conn_fail(c, "mechanism not offered");
			return;
		}
		send_auth(c);
		return;
	}
	case ST_AUTH:
		if (stanza_is(d, n, "challenge")) {
			g_autofree char *text = element_text(d, n);
			g_autoptr(GError) error = NULL;
			g_autofree char *final = NULL;

			if (c->scram_server_sig != NULL) {
				/* The server's final message as a challenge (RFC 6120
				 * allows either): check it, answer empty. */
				if (!scram_check_server_final(c, text)) {
					conn_fail(c, "bad SCRAM server signature");
					return;
				}
				conn_sendf(c,
				           "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
				return;
			}
			final = scram_client_final(c, text, &error);
			if (final == NULL) {
				conn_fail(c, error->message);
				return;
			}
			conn_sendf(
			        c,
			        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>",
			        final);
			return;
		}
		if (stanza_is(d, n, "success")) {
			g_autofree char *text = element_text(d, n);

			if (c->cfg->mech == MECH_SCRAM_SHA1 && *text != '\0' &&
			    !scram_check_server_final(c, text)) {
				conn_fail(c, "bad SCRAM server signature");
				return;
			}
			c->state = ST_FEATURES_AUTH;
			stream_open(c);
			return;
		}
		conn_fail(c, "authentication failed");
		return;
	case ST_FEATURES_AUTH:
		if (!stanza_is(d, n, "features"))
			return;
		c->need_session = contains(d, n, "urn:ietf:params:xml:ns:xmpp-session") &&
		                  !contains(d, n, "<optional");
		conn_sendf(c,
		           "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
		           "<resource>b</resource></bind></iq>");
		c->state = ST_BIND;
		return;
	case ST_BIND:
	case ST_SESSION:
	case ST_ROSTER:
	case ST_PING: {
		const char *id;
		gsize idl;

		if (!stanza_is(d, n, "iq") || !stanza_attr_span(d, n, "id", &id, &idl) || idl != 1)
			return; /* roster pushes, presence, messages before ready */
		if (c->state == ST_PING) {
			if (*id == 'p')
				became_ready(c);
			return;
		}
		if (!contains(d, MIN(n, 200), "type='result'") &&
		    !contains(d, MIN(n, 200), "type=\"result\"")) {
			conn_fail(c, "iq refused during login");
			return;
		}
		if (c->state == ST_BIND && c->need_session) {
			conn_sendf(c,
			           "<iq type='set' id='s'>"
			           "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
			c->state = ST_SESSION;
		} else if (c->state == ST_BIND || c->state == ST_SESSION) {
			conn_sendf(c,
			           "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
			c->state = ST_ROSTER;
		} else {
			after_roster(c);
		}
		return;
	}
	default:
		return;
	}
}

static void
handle_stanza(Conn *c, const char *d, gsize n)
{
	static int trace = -1;

	if (trace < 0)
		trace = g_getenv("LOADGEN_TRACE") != NULL;
	if (trace)
		g_printerr("%8.3f ms u%u state %d: %.*s\n",
		           (g_get_monotonic_time() - c->started) / 1000.0, c->user, c->state,
		           (int) MIN(n, 60), d);
	if (c->state == ST_READY)
		c->cfg->events->stanza(c, d, n);
	else
		handle_login_stanza(c, d, n);
}

/* Splits the input into depth-1 elements. The stream header opens depth
 * 1; every element closing back to depth 1 is one stanza. Attribute
 * values may hold '>' and '/' (quotes are tracked); comments and CDATA
 * do not occur in XMPP streams. */
static void
scan_input(Conn *c)
{
	char *buf = c->in;
	gsize i = c->scan_pos;

	while (i < c->in_len && c->state != ST_CLOSED) {
		char ch = buf[i];

		switch (c->scan_state) {
		case SC_TEXT: {
			char *lt = memchr(buf + i, '<', c->in_len - i);

			if (lt == NULL) {
				i = c->in_len;
				continue;
			}
			i = lt - buf;
			if (c->depth == 1)
				c->stanza_start = i;
			c->scan_state = SC_LT;
			break;
		}
		case SC_LT:
			if (ch == '?' || ch == '!') {
				c->scan_state = SC_DECL;
			} else {
				c->closing_tag = ch == '/';
				c->last_char = ch;
				c->scan_state = SC_TAG;
			}
			break;
		case SC_DECL:
			if (ch == '>')
				c->scan_state = SC_TEXT;
			break;
		case SC_SQ:
		case SC_DQ: {
			char *q =
			        memchr(buf + i, c->scan_state == SC_SQ ? '\'' : '"', c->in_len - i);

			if (q == NULL) {
				i = c->in_len;
				continue;
			}
			i = q - buf;
			c->last_char = '"';
			c->scan_state = SC_TAG;
			break;
		}
		case SC_TAG:
			if (ch == '\'') {
				c->scan_state = SC_SQ;
			} else if (ch == '"') {
				c->scan_state = SC_DQ;
			} else if (ch == '>') {
				gboolean complete = FALSE;

				c->scan_state = SC_TEXT;
				if (c->closing_tag) {
					c->depth--;
					if (c->depth == 0) {
						conn_fail(c, "the server closed the stream");
						return;
					}
					complete = c->depth == 1;
				} else if (c->last_char == '/') {
					complete = c->depth == 1;
				} else {
					c->depth++;
				}
				if (complete) {
					handle_stanza(c, buf + c->stanza_start,
					              i + 1 - c->stanza_start);
					/* The handler may restart the stream or start TLS:
					 * then what follows belongs to the new layer. */
					if (c->state == ST_HANDSHAKE || c->depth == 0) {
						c->in_len = c->scan_pos = c->stanza_start = 0;
						return;
					}
				}
			} else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
				c->last_char = ch;
			}
			break;
		}
		i++;
	}
	if (c->state == ST_CLOSED)
		return;
	/* Keep only an unfinished stanza (or nothing). */
	if (c->depth >= 2 || (c->depth == 1 && c->scan_state != SC_TEXT)) {
		gsize keep_from = c->stanza_start;

		memmove(buf, buf + keep_from, c->in_len - keep_from);
		c->in_len -= keep_from;
		c->stanza_start = 0;
		c->scan_pos = c->in_len;
	} else if (c->depth == 0 && c->in_len > 0) {
		c->scan_pos = i; /* within the stream header */
	} else {
		c->in_len = c->scan_pos = c->stanza_start = 0;
	}
	if (c->in_len == 0 && c->in_cap > 8192) {
		g_free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
}

void
conn_feed(Conn *c, const char *data, gsize len)
{
	if (c->in_cap - c->in_len < len) {
		c->in_cap = MAX(c->in_cap * 2, c->in_len + len);
		c->in = g_realloc(c->in, c->in_cap);
	}
	memcpy(c->in + c->in_len, data, len);
	c->in_len += len;
	scan_input(c);
}

static gboolean
read_input(Conn *c)
{
	for (;;) {
		ssize_t r;

		if (c->in_cap - c->in_len < 4096) {
			c->in_cap = MAX(c->in_cap * 2, 8192);
			c->in = g_realloc(c->in, c->in_cap);
		}
		if (c->tls != NULL)
			r = gnutls_record_recv(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
		else
			r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (r > 0) {
			c->in_len += r;
			/* Before TLS, stop at the first reads so no TLS bytes
			 * are taken as plaintext. */
			if (c->tls == NULL)
				return TRUE;
			continue;
		}
		if (r == 0) {
			conn_fail(c, "connection closed by the server");
			return FALSE;
		}
		if (c->tls != NULL) {
			if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
				return TRUE;
			conn_fail(c, gnutls_strerror(r));
			return FALSE;
		}
		if (errno == EAGAIN || errno == EINTR)
			return TRUE;
		conn_fail(c, g_strerror(errno));
		return FALSE;
	}
}

static void
handshake(Conn *c)
{
	int r = gnutls_handshake(c->tls);

	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
		epoll_update(c, gnutls_record_get_direction(c->tls) == 1);
		return;
	}
	if (r < 0) {
		conn_fail(c, gnutls_strerror(r));
		return;
	}
	epoll_update(c, FALSE);
	if (c->cfg->echo) {
		/* No stream header comes back: stanzas start at depth 1. */
		c->depth = 1;
		c->scan_state = SC_TEXT;
		became_ready(c);
		return;
	}
	c->state = ST_FEATURES_TLS;
	stream_open(c);
}

void
conn_io(Conn *c, guint32 events)
{
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof err;

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err != 0) {
			conn_fail(c, g_strerror(err));
			return;
		}
		epoll_update(c, FALSE);
		if (c->cfg->echo) {
			tls_begin(c);
			handshake(c);
			return;
		}
		c->state = ST_FEATURES_PLAIN;
		stream_open(c);
		return;
	}
	if (c->state == ST_HANDSHAKE) {
		handshake(c);
		return;
	}
	if ((events & EPOLLOUT) && c->tls != NULL) {
		conn_flush(c);
		if (c->state == ST_CLOSED)
			return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (!read_input(c))
			return;
		scan_input(c);
	}
}

static void
conn_fail(Conn *c, const char *why)
{
	if (c->state == ST_CLOSED)
		return;
	c->state = ST_CLOSED;
	if (c->fd >= 0) {
		epoll_ctl(c->cfg->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	c->cfg->events->failed(c, why);
}

void
conn_close(Conn *c)
{
	if (c->state != ST_CLOSED && c->fd >= 0) {
		if (c->tls != NULL && c->state != ST_HANDSHAKE) {
			if (!c->cfg->echo)
				conn_send(c, "</stream:stream>", 16);
			gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		}
		epoll_ctl(c->cfg->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	if (!c->buried) {
		c->state = ST_CLOSED;
		c->buried = TRUE;
		if (graveyard == NULL)
			graveyard = g_ptr_array_new_with_free_func((GDestroyNotify) conn_free);
		g_ptr_array_add(graveyard, c);
	}
}

void
conn_reap(void)
{
	if (graveyard != NULL && graveyard->len > 0)
		g_ptr_array_set_size(graveyard, 0);
}

void
conn_free(Conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(c->cfg->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	if (c->tls != NULL)
		gnutls_deinit(c->tls);
	g_free(c->in);
	g_free(c->out);
	g_free(c->scram_first_bare);
	g_free(c->scram_server_sig);
	g_free(c);
}
