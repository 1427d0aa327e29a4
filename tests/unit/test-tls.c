/* MagpieConn and MagpieTls against a real GnuTLS client running in a
 * thread with blocking I/O, while the server side runs in the GLib main
 * loop of the test's main thread. Certificates are made at test time. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "conn.h"
#include "tls.h"

#define PRIO_TLS13 "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define PRIO_TLS12 "NORMAL:-VERS-ALL:+VERS-TLS1.2"

static char *cert_dir;
static MagpieTls *server_tls;
static gnutls_certificate_credentials_t client_creds;

/* --- certificates ---------------------------------------------------- */

static void
write_datum(const char *path, gnutls_datum_t *d)
{
	g_autoptr(GError) error = NULL;

	g_assert_true(g_file_set_contents(path, (const char *) d->data, d->size, &error));
	g_assert_no_error(error);
	gnutls_free(d->data);
}

static void
make_cert(const char *host, const char *const *extra_sans)
{
	gnutls_x509_privkey_t key;
	gnutls_x509_crt_t crt;
	gnutls_datum_t d;
	unsigned char serial[8];
	time_t now = time(NULL);
	g_autofree char *cert_path = g_strdup_printf("%s/%s.crt", cert_dir, host);
	g_autofree char *key_path = g_strdup_printf("%s/%s.key", cert_dir, host);

	g_assert_cmpint(gnutls_x509_privkey_init(&key), ==, 0);
	g_assert_cmpint(
	        gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
	                                     GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
	        ==, 0);
	g_assert_cmpint(gnutls_x509_crt_init(&crt), ==, 0);
	g_assert_cmpint(gnutls_x509_crt_set_version(crt, 3), ==, 0);
	for (guint i = 0; i < sizeof(serial); i++)
		serial[i] = g_random_int_range(1, 256);
	serial[0] &= 0x7f;
	g_assert_cmpint(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), ==, 0);
	gnutls_x509_crt_set_activation_time(crt, now - 3600);
	gnutls_x509_crt_set_expiration_time(crt, now + 86400);
	g_assert_cmpint(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, host,
	                                              strlen(host)),
	                ==, 0);
	g_assert_cmpint(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, host,
	                                                     strlen(host), GNUTLS_FSAN_APPEND),
	                ==, 0);
	for (guint i = 0; extra_sans != NULL && extra_sans[i] != NULL; i++)
		g_assert_cmpint(gnutls_x509_crt_set_subject_alt_name(
		                        crt, GNUTLS_SAN_DNSNAME, extra_sans[i],
		                        strlen(extra_sans[i]), GNUTLS_FSAN_APPEND),
		                ==, 0);
	g_assert_cmpint(gnutls_x509_crt_set_basic_constraints(crt, 0, -1), ==, 0);
	g_assert_cmpint(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE), ==, 0);
	g_assert_cmpint(gnutls_x509_crt_set_key(crt, key), ==, 0);
	g_assert_cmpint(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), ==, 0);

	g_assert_cmpint(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d), ==, 0);
	write_datum(cert_path, &d);
	g_assert_cmpint(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &d), ==, 0);
	write_datum(key_path, &d);
	gnutls_x509_crt_deinit(crt);
	gnutls_x509_privkey_deinit(key);
}

static void
add_host(MagpieTls *tls, const char *host)
{
	g_autofree char *cert_path = g_strdup_printf("%s/%s.crt", cert_dir, host);
	g_autofree char *key_path = g_strdup_printf("%s/%s.key", cert_dir, host);
	g_autoptr(GError) error = NULL;

	g_assert_true(magpie_tls_add_host(tls, host, cert_path, key_path, &error));
	g_assert_no_error(error);
}

/* --- the server side: a tiny line protocol on MagpieConn ------------- */

typedef struct {
	MagpieConn *conn;
	GString *line;
	GString *delivered; /* every byte data() consumed, in order */
	gsize max_consume;  /* 0: consume everything, else pause after that many */
	gboolean raw;       /* no line commands */
	gboolean established;
	gboolean in_set_reading;
	guint closed_count;
	char *closed_reason;
	guint resume_count;
} Server;

static char *
hex_or_none(GBytes *bytes)
{
	GString *s;
	gsize size;
	const guint8 *data;

	if (bytes == NULL)
		return g_strdup("none");
	data = g_bytes_get_data(bytes, &size);
	s = g_string_new(NULL);
	for (gsize i = 0; i < size; i++)
		g_string_append_printf(s, "%02x", data[i]);
	return g_string_free(s, FALSE);
}

static GBytes *
pattern_bytes(gsize size, guint seed)
{
	guint8 *data = g_malloc(size);

	for (gsize i = 0; i < size; i++)
		data[i] = (guint8) ((i * 31 + seed + (i >> 10)) & 0xff);
	return g_bytes_new_take(data, size);
}

static void
server_info(Server *srv)
{
	g_autoptr(GBytes) exporter = magpie_conn_channel_binding(srv->conn, "tls-exporter");
	g_autoptr(GBytes) sep = magpie_conn_channel_binding(srv->conn, "tls-server-end-point");
	g_autoptr(GBytes) unique = magpie_conn_channel_binding(srv->conn, "tls-unique");
	g_autofree char *hex_exporter = hex_or_none(exporter);
	g_autofree char *hex_sep = hex_or_none(sep);
	g_autofree char *hex_unique = hex_or_none(unique);
	g_autofree char *line = NULL;

	g_assert_null(magpie_conn_channel_binding(srv->conn, "tls-bogus"));
	line = g_strdup_printf(
	        "version=%s sni=%s resumed=%d tls=%d exporter=%s sep=%s unique=%s\n",
	        magpie_conn_tls_version(srv->conn) ? magpie_conn_tls_version(srv->conn) : "none",
	        magpie_conn_tls_sni(srv->conn) ? magpie_conn_tls_sni(srv->conn) : "none",
	        magpie_conn_tls_resumed(srv->conn), magpie_conn_is_tls(srv->conn), hex_exporter,
	        hex_sep, hex_unique);
	magpie_conn_write(srv->conn, line, strlen(line));
}

/* The MIXED command's writes: every way of writing (magpie_conn_write,
 * _write_bytes, _writev in three parts), with sizes on both sides of the
 * queue's copy threshold and of the TLS record size, in one stream. */
static const gsize mixed_sizes[] = { 1,    17,   400,   1500,  2047,  2048,
	                             2049, 4000, 16383, 16384, 16385, 70000 };
#define MIXED_WRITES 600

static guint8
mixed_byte(gsize offset)
{
	return (guint8) (offset * 131 + (offset >> 9));
}

static gsize
mixed_size(guint i)
{
	return mixed_sizes[(i * 7) % G_N_ELEMENTS(mixed_sizes)];
}

static void
server_mixed(Server *srv)
{
	gsize offset = 0;

	for (guint i = 0; i < MIXED_WRITES; i++) {
		gsize size = mixed_size(i);
		g_autofree char *data = g_malloc(size);

		for (gsize k = 0; k < size; k++)
			data[k] = (char) mixed_byte(offset + k);
		offset += size;
		if (i % 3 == 0) {
			magpie_conn_write(srv->conn, data, size);
		} else if (i % 3 == 1) {
			g_autoptr(GBytes) bytes = g_bytes_new(data, size);

			magpie_conn_write_bytes(srv->conn, bytes);
		} else {
			struct iovec parts[3] = {
				{ data, size / 3 },
				{ data + size / 3, size / 3 },
				{ data + 2 * (size / 3), size - 2 * (size / 3) },
			};

			magpie_conn_writev(srv->conn, parts, G_N_ELEMENTS(parts));
		}
		/* the caller's memory is its own again at once */
		memset(data, 0, size);
	}
	g_assert_cmpuint(magpie_conn_output_queued(srv->conn), <=, offset);
}

static void
server_command(Server *srv, const char *line)
{
	if (g_str_equal(line, "STARTTLS")) {
		magpie_conn_write(srv->conn, "<proceed/>", 10);
		magpie_conn_start_tls(srv->conn, server_tls);
		/* Written after start_tls: must go out encrypted. */
		magpie_conn_write(srv->conn, "welcome\n", 8);
	} else if (g_str_equal(line, "INFO")) {
		server_info(srv);
	} else if (g_str_has_prefix(line, "BIG ")) {
		guint mib = atoi(line + 4);
		g_autoptr(GBytes) chunk = pattern_bytes(64 * 1024, 7);

		/* The same buffer queued many times: write_bytes must not copy. */
		for (guint i = 0; i < mib * 16; i++)
			magpie_conn_write_bytes(srv->conn, chunk);
		g_assert_cmpuint(magpie_conn_output_queued(srv->conn), >=, (gsize) mib << 20);
	} else if (g_str_equal(line, "MIXED")) {
		server_mixed(srv);
	} else if (g_str_equal(line, "BYE")) {
		magpie_conn_write(srv->conn, "bye\n", 4);
		magpie_conn_close(srv->conn, 5000);
	} else {
		g_autofree char *echo = g_strdup_printf("echo:%s\n", line);

		magpie_conn_write(srv->conn, echo, strlen(echo));
	}
}

static gboolean
server_resume_cb(gpointer user_data)
{
	Server *srv = user_data;

	srv->resume_count++;
	srv->in_set_reading = TRUE;
	magpie_conn_set_reading(srv->conn, TRUE);
	srv->in_set_reading = FALSE;
	return G_SOURCE_REMOVE;
}

static gsize
server_data(gpointer user_data, const char *buf, gsize len)
{
	Server *srv = user_data;
	gsize take = len;

	g_assert_false(srv->in_set_reading); /* never re-entrant */
	g_assert_cmpuint(len, >, 0);
	if (srv->max_consume > 0 && take > srv->max_consume) {
		take = srv->max_consume;
		g_idle_add(server_resume_cb, srv);
	}
	if (srv->raw) {
		g_string_append_len(srv->delivered, buf, take);
		return take;
	}
	for (gsize i = 0; i < take; i++) {
		gboolean starttls;

		g_string_append_c(srv->delivered, buf[i]);
		if (buf[i] != '\n') {
			g_string_append_c(srv->line, buf[i]);
			continue;
		}
		starttls = g_str_equal(srv->line->str, "STARTTLS");
		server_command(srv, srv->line->str);
		g_string_truncate(srv->line, 0);
		if (starttls)
			return i + 1; /* what follows would be injected plaintext */
	}
	return take;
}

static void
server_tls_established(gpointer user_data)
{
	Server *srv = user_data;

	srv->established = TRUE;
	g_assert_true(magpie_conn_is_tls(srv->conn));
}

static void
server_closed(gpointer user_data, const char *reason)
{
	Server *srv = user_data;

	g_assert_cmpuint(srv->closed_count, ==, 0);
	srv->closed_count++;
	srv->closed_reason = g_strdup(reason);
}

static const MagpieConnCallbacks server_callbacks = {
	.data = server_data,
	.tls_established = server_tls_established,
	.closed = server_closed,
};

static Server *
server_new(int fd, gboolean direct_tls)
{
	Server *srv = g_new0(Server, 1);

	srv->line = g_string_new(NULL);
	srv->delivered = g_string_new(NULL);
	srv->conn = magpie_conn_new(fd, "test-peer", &server_callbacks, srv);
	g_assert_cmpstr(magpie_conn_peer(srv->conn), ==, "test-peer");
	g_assert_false(magpie_conn_is_tls(srv->conn));
	g_assert_null(magpie_conn_tls_version(srv->conn));
	if (direct_tls)
		magpie_conn_start_tls(srv->conn, server_tls);
	return srv;
}

static void
server_free(Server *srv)
{
	magpie_conn_free(srv->conn);
	g_string_free(srv->line, TRUE);
	g_string_free(srv->delivered, TRUE);
	g_free(srv->closed_reason);
	g_free(srv);
}

/* --- sockets and the loop -------------------------------------------- */

static void
socket_pair(int *server_fd, int *client_fd)
{
	int sv[2];

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	*server_fd = sv[0];
	*client_fd = sv[1];
}

static void
tcp_pair(int *server_fd, int *client_fd)
{
	struct sockaddr_in addr = { 0 };
	socklen_t len = sizeof(addr);
	int listener = socket(AF_INET, SOCK_STREAM, 0);
	int c;

	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(bind(listener, (struct sockaddr *) &addr, sizeof(addr)), ==, 0);
	g_assert_cmpint(listen(listener, 8), ==, 0);
	g_assert_cmpint(getsockname(listener, (struct sockaddr *) &addr, &len), ==, 0);
	c = socket(AF_INET, SOCK_STREAM, 0);
	g_assert_cmpint(connect(c, (struct sockaddr *) &addr, sizeof(addr)), ==, 0);
	*server_fd = accept(listener, NULL, NULL);
	g_assert_cmpint(*server_fd, >=, 0);
	*client_fd = c;
	close(listener);
}

static gboolean
loop_timeout_cb(gpointer user_data)
{
	g_error("test timed out");
	return G_SOURCE_REMOVE;
}

typedef struct Client Client;
typedef void (*ClientFunc)(Client *c);

struct Client {
	int fd;
	gnutls_session_t session;
	GString *in;
	ClientFunc func;
	gpointer data;
	gint done;
};

static gpointer
client_thread(gpointer user_data)
{
	Client *c = user_data;

	c->func(c);
	if (c->session != NULL)
		gnutls_deinit(c->session);
	if (c->fd >= 0)
		close(c->fd);
	g_atomic_int_set(&c->done, 1);
	g_main_context_wakeup(NULL);
	return NULL;
}

/* Run @func in a client thread on @client_fd while the loop serves @srv,
 * until both the client finished and the server saw closed(). */
static void
run_client(Server *srv, int client_fd, ClientFunc func, gpointer data)
{
	Client c = { .fd = client_fd, .func = func, .data = data, .in = g_string_new(NULL) };
	GSource *timeout = g_timeout_source_new_seconds(60);
	GThread *thread;

	g_source_set_callback(timeout, loop_timeout_cb, NULL, NULL);
	g_source_attach(timeout, NULL);
	thread = g_thread_new("client", client_thread, &c);
	while (!g_atomic_int_get(&c.done) || srv->closed_count == 0)
		g_main_context_iteration(NULL, TRUE);
	g_thread_join(thread);
	g_source_destroy(timeout);
	g_source_unref(timeout);
	g_string_free(c.in, TRUE);
}

/* --- the client (runs in its thread, blocking I/O) ------------------- */

static int
client_try_handshake(Client *c, const char *priority, const char *sni, const gnutls_datum_t *ticket)
{
	int r;

	g_assert_cmpint(gnutls_init(&c->session, GNUTLS_CLIENT), ==, 0);
	g_assert_cmpint(gnutls_priority_set_direct(c->session, priority, NULL), ==, 0);
	g_assert_cmpint(gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, client_creds),
	                ==, 0);
	if (sni != NULL)
		gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, sni, strlen(sni));
	if (ticket != NULL && ticket->data != NULL)
		g_assert_cmpint(gnutls_session_set_data(c->session, ticket->data, ticket->size), ==,
		                0);
	gnutls_transport_set_int(c->session, c->fd);
	gnutls_handshake_set_timeout(c->session, 20000);
	do {
		r = gnutls_handshake(c->session);
	} while (r < 0 && !gnutls_error_is_fatal(r));
	return r;
}

static void
client_handshake(Client *c, const char *priority, const char *sni, const gnutls_datum_t *ticket)
{
	int r = client_try_handshake(c, priority, sni, ticket);

	if (r < 0)
		g_error("client handshake: %s", gnutls_strerror(r));
}

static gssize
client_recv(Client *c, char *buf, gsize len)
{
	gssize n;

	if (c->session == NULL) {
		do {
			n = recv(c->fd, buf, len, 0);
		} while (n < 0 && errno == EINTR);
		g_assert_cmpint(n, >=, 0);
		return n;
	}
	do {
		n = gnutls_record_recv(c->session, buf, len);
	} while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	if (n < 0)
		g_error("client recv: %s", gnutls_strerror((int) n));
	return n;
}

static void
client_send(Client *c, const char *data, gsize len)
{
	while (len > 0) {
		gssize n;

		if (c->session == NULL)
			n = send(c->fd, data, len, MSG_NOSIGNAL);
		else
			n = gnutls_record_send(c->session, data, len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED || (n < 0 && errno == EINTR))
			continue;
		g_assert_cmpint(n, >, 0);
		data += n;
		len -= n;
	}
}

static void
client_send_str(Client *c, const char *s)
{
	client_send(c, s, strlen(s));
}

/* One line without its "\n"; NULL at EOF. */
static char *
client_read_line(Client *c)
{
	for (;;) {
		char buf[4096];
		const char *nl = memchr(c->in->str, '\n', c->in->len);
		gssize n;

		if (nl != NULL) {
			char *line = g_strndup(c->in->str, nl - c->in->str);

			g_string_erase(c->in, 0, nl - c->in->str + 1);
			return line;
		}
		n = client_recv(c, buf, sizeof(buf));
		if (n == 0)
			return NULL;
		g_string_append_len(c->in, buf, n);
	}
}

/* Exactly @len bytes (plaintext or TLS). */
static void
client_read_exact(Client *c, char *out, gsize len)
{
	gsize have = MIN(len, c->in->len);

	memcpy(out, c->in->str, have);
	g_string_erase(c->in, 0, have);
	while (have < len) {
		gssize n = client_recv(c, out + have, len - have);

		g_assert_cmpint(n, >, 0);
		have += n;
	}
}

static void
client_expect_eof(Client *c)
{
	char buf[64];

	g_assert_cmpuint(c->in->len, ==, 0);
	g_assert_cmpint(client_recv(c, buf, sizeof(buf)), ==, 0);
}

static char *
client_peer_cn(Client *c)
{
	unsigned int n = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(c->session, &n);
	gnutls_x509_crt_t crt;
	char cn[256];
	size_t size = sizeof(cn);

	g_assert_nonnull(certs);
	g_assert_cmpuint(n, >=, 1);
	gnutls_x509_crt_init(&crt);
	g_assert_cmpint(gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER), ==, 0);
	g_assert_cmpint(
	        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &size),
	        ==, 0);
	gnutls_x509_crt_deinit(crt);
	return g_strdup(cn);
}

static char *
client_binding(Client *c, gnutls_channel_binding_t type)
{
	gnutls_datum_t d = { NULL, 0 };
	g_autoptr(GBytes) bytes = NULL;

	if (gnutls_session_channel_binding(c->session, type, &d) < 0)
		return g_strdup("none");
	bytes = g_bytes_new(d.data, d.size);
	gnutls_free(d.data);
	return hex_or_none(bytes);
}

/* The value of "key=" in a server INFO line. */
static char *
info_get(const char *info, const char *key)
{
	g_auto(GStrv) fields = g_strsplit(info, " ", -1);
	g_autofree char *prefix = g_strconcat(key, "=", NULL);

	for (guint i = 0; fields[i] != NULL; i++) {
		if (g_str_has_prefix(fields[i], prefix))
			return g_strdup(fields[i] + strlen(prefix));
	}
	g_error("no %s in \"%s\"", key, info);
	return NULL;
}

static char *
client_info(Client *c)
{
	char *line;

	client_send_str(c, "INFO\n");
	line = client_read_line(c);
	g_assert_nonnull(line);
	return line;
}

static void
client_bye(Client *c)
{
	g_autofree char *line = NULL;

	client_send_str(c, "BYE\n");
	line = client_read_line(c);
	g_assert_cmpstr(line, ==, "bye");
	client_expect_eof(c);
}

/* --- tests ----------------------------------------------------------- */

typedef struct {
	const char *priority;
	const char *sni;
	const char *expect_cn;
	const char *expect_version;
	gnutls_datum_t ticket;
	gboolean expect_resumed;
	gboolean save_ticket;
} HandshakeCase;

static void
client_check_info(Client *c, HandshakeCase *hc)
{
	g_autofree char *info = client_info(c);
	g_autofree char *version = info_get(info, "version");
	g_autofree char *resumed = info_get(info, "resumed");
	g_autofree char *sni = info_get(info, "sni");
	g_autofree char *is_tls = info_get(info, "tls");
	g_autofree char *exporter = info_get(info, "exporter");
	g_autofree char *sep = info_get(info, "sep");
	g_autofree char *unique = info_get(info, "unique");
	g_autofree char *c_exporter = client_binding(c, GNUTLS_CB_TLS_EXPORTER);
	g_autofree char *c_sep = client_binding(c, GNUTLS_CB_TLS_SERVER_END_POINT);
	g_autofree char *c_unique = client_binding(c, GNUTLS_CB_TLS_UNIQUE);
	g_autofree char *expect_sni = hc->sni != NULL ? g_ascii_strdown(hc->sni, -1) : NULL;

	g_assert_cmpstr(version, ==, hc->expect_version);
	g_assert_cmpstr(is_tls, ==, "1");
	g_assert_cmpstr(sni, ==, expect_sni != NULL ? expect_sni : "none");
	g_assert_cmpstr(resumed, ==, hc->expect_resumed ? "1" : "0");
	g_assert_cmpint(gnutls_session_is_resumed(c->session), ==, hc->expect_resumed);

	/* tls-exporter: always, equal on both ends (32 bytes). */
	g_assert_cmpstr(exporter, !=, "none");
	g_assert_cmpuint(strlen(exporter), ==, 64);
	g_assert_cmpstr(exporter, ==, c_exporter);
	/* tls-server-end-point: fresh handshakes; GnuTLS cannot produce it
	 * on the server side of a resumed TLS 1.3 session. */
	if (!hc->expect_resumed) {
		g_assert_cmpstr(sep, !=, "none");
		g_assert_cmpstr(sep, ==, c_sep);
	} else if (!g_str_equal(sep, "none")) {
		g_assert_cmpstr(sep, ==, c_sep);
	}
	/* tls-unique: TLS 1.2 only. */
	if (g_str_equal(hc->expect_version, "TLS1.3")) {
		g_assert_cmpstr(unique, ==, "none");
	} else {
		g_assert_cmpuint(strlen(unique), ==, 24);
		g_assert_cmpstr(unique, ==, c_unique);
	}
}

static void
client_handshake_case(Client *c)
{
	HandshakeCase *hc = c->data;
	g_autofree char *cn = NULL;

	client_handshake(c, hc->priority, hc->sni, hc->ticket.data != NULL ? &hc->ticket : NULL);
	cn = client_peer_cn(c);
	g_assert_cmpstr(cn, ==, hc->expect_cn);
	client_check_info(c, hc);
	if (hc->save_ticket) {
		/* TLS 1.3 tickets arrive after the handshake: INFO read them. */
		g_assert_cmpint(gnutls_session_get_data2(c->session, &hc->ticket), ==, 0);
	}
	client_bye(c);
}

static void
run_handshake_case(HandshakeCase *hc, gboolean tcp)
{
	int sfd, cfd;
	Server *srv;

	if (tcp)
		tcp_pair(&sfd, &cfd);
	else
		socket_pair(&sfd, &cfd);
	srv = server_new(sfd, TRUE);
	run_client(srv, cfd, client_handshake_case, hc);
	g_assert_true(srv->established);
	g_assert_cmpstr(srv->closed_reason, ==, "connection closed by the server");
	server_free(srv);
}

static void
test_direct_tls13(void)
{
	HandshakeCase hc = { PRIO_TLS13, "example.com", "example.com", "TLS1.3" };

	run_handshake_case(&hc, TRUE);
}

static void
test_direct_tls12(void)
{
	HandshakeCase hc = { PRIO_TLS12, "example.com", "example.com", "TLS1.2" };

	run_handshake_case(&hc, TRUE);
}

static void
test_sni(void)
{
	static const struct {
		const char *sni;
		const char *cn;
	} cases[] = {
		{ "example.net", "example.net" },
		{ "EXAMPLE.NET", "example.net" },
		{ "example.org", "example.org" },
		{ "xmpp.example.net", "example.net" }, /* *.example.net */
		{ "muc.example.org", "example.org" },  /* exact subjectAltName */
		{ "a.b.example.net", "example.com" },  /* one label only */
		{ "unknown.example", "example.com" },  /* the first host */
		{ NULL, "example.com" },
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		for (guint v = 0; v < 2; v++) {
			HandshakeCase hc = { v ? PRIO_TLS12 : PRIO_TLS13, cases[i].sni, cases[i].cn,
				             v ? "TLS1.2" : "TLS1.3" };

			g_test_message("SNI %s over %s", cases[i].sni ? cases[i].sni : "(none)",
			               hc.expect_version);
			run_handshake_case(&hc, FALSE);
		}
	}
}

static void
client_hostile_sni(Client *c)
{
	const char *sni = c->data;
	g_autofree char *cn = NULL;

	if (client_try_handshake(c, PRIO_TLS13, sni, NULL) < 0)
		return; /* GnuTLS refused the name itself: fine */
	cn = client_peer_cn(c);
	g_assert_cmpstr(cn, ==, "example.com");
	client_send_str(c, "BYE\n");
	g_free(client_read_line(c));
}

/* Names that are not host names never pick a certificate by accident
 * and never hurt the server. */
static void
test_sni_hostile(void)
{
	static const char *const names[] = {
		"*.example.net",
		".example.net",
		"example.net.",
		"x.",
		"*",
		"0123456789012345678901234567890123456789012345678901234567890."
		"0123456789012345678901234567890123456789012345678901234567890."
		"0123456789012345678901234567890123456789012345678901234567890."
		"0123456789012345678901234567890123456789012345678901234567890.example.net",
	};

	for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
		int sfd, cfd;
		Server *srv;

		socket_pair(&sfd, &cfd);
		srv = server_new(sfd, TRUE);
		run_client(srv, cfd, client_hostile_sni, (gpointer) names[i]);
		g_test_message("SNI \"%s\": %s (server saw %s)", names[i], srv->closed_reason,
		               magpie_conn_tls_sni(srv->conn) ? magpie_conn_tls_sni(srv->conn)
		                                              : "nothing");
		g_assert_true(g_str_equal(srv->closed_reason, "connection closed by the server") ||
		              g_str_has_prefix(srv->closed_reason, "TLS handshake failed: "));
		server_free(srv);
	}
}

static void
test_resume(void)
{
	for (guint v = 0; v < 2; v++) {
		HandshakeCase first = { v ? PRIO_TLS12 : PRIO_TLS13, "example.net", "example.net",
			                v ? "TLS1.2" : "TLS1.3" };
		HandshakeCase second = first;
		HandshakeCase third;

		first.save_ticket = TRUE;
		run_handshake_case(&first, FALSE);
		g_assert_nonnull(first.ticket.data);

		second.ticket = first.ticket;
		second.expect_resumed = TRUE;
		second.save_ticket = TRUE;
		run_handshake_case(&second, FALSE);
		gnutls_free(first.ticket.data);

		/* A resumed session hands out a ticket that resumes again. */
		third = second;
		third.save_ticket = FALSE;
		run_handshake_case(&third, FALSE);
		gnutls_free(second.ticket.data);
	}
}

static void
client_starttls(Client *c)
{
	char proceed[10];
	g_autofree char *line = NULL;
	g_autofree char *welcome = NULL;
	HandshakeCase hc = { PRIO_TLS13, "example.org", "example.org", "TLS1.3" };
	g_autofree char *cn = NULL;
	g_autofree char *info = NULL;

	client_send_str(c, "hello\n");
	line = client_read_line(c);
	g_assert_cmpstr(line, ==, "echo:hello");
	info = client_info(c);
	g_assert_true(g_str_has_prefix(info, "version=none sni=none resumed=0 tls=0 "));

	client_send_str(c, "STARTTLS\n");
	client_read_exact(c, proceed, sizeof(proceed));
	g_assert_cmpmem(proceed, sizeof(proceed), "<proceed/>", 10);
	g_assert_cmpuint(c->in->len, ==, 0);

	client_handshake(c, hc.priority, hc.sni, NULL);
	cn = client_peer_cn(c);
	g_assert_cmpstr(cn, ==, "example.org");
	welcome = client_read_line(c);
	g_assert_cmpstr(welcome, ==, "welcome");
	client_check_info(c, &hc);
	client_bye(c);
}

static void
test_starttls(void)
{
	int sfd, cfd;
	Server *srv;

	socket_pair(&sfd, &cfd);
	srv = server_new(sfd, FALSE);
	run_client(srv, cfd, client_starttls, NULL);
	g_assert_true(srv->established);
	g_assert_cmpstr(srv->closed_reason, ==, "connection closed by the server");
	server_free(srv);
}

/* Plaintext sent right behind <starttls/> is the caller's business: here
 * the owner consumes up to STARTTLS only, and the handshake then fails
 * because the injected bytes are not a ClientHello, or is never started
 * if the owner closes. Either way the injected bytes are not delivered. */
static void
client_starttls_injection(Client *c)
{
	char buf[64];

	client_send_str(c, "STARTTLS\n<injected/>\n");
	client_read_exact(c, buf, 10);
	/* Do not answer: the server waits for a ClientHello; then hang up. */
	shutdown(c->fd, SHUT_WR);
	while (recv(c->fd, buf, sizeof(buf), 0) > 0)
		;
}

static void
test_starttls_injection(void)
{
	int sfd, cfd;
	Server *srv;

	socket_pair(&sfd, &cfd);
	srv = server_new(sfd, FALSE);
	run_client(srv, cfd, client_starttls_injection, NULL);
	g_assert_false(srv->established);
	g_assert_cmpstr(srv->delivered->str, ==, "STARTTLS\n");
	g_assert_cmpuint(srv->line->len, ==, 0);
	g_assert_true(g_str_has_prefix(srv->closed_reason, "TLS handshake failed: "));
	server_free(srv);
}

/* Read @total bytes, a slow reader for the first MiB (the server's socket
 * fills), each piece handed to @check at its offset; then "bye" and the
 * end of the stream. */
static void
client_read_slowly(Client *c, gsize total,
                   void (*check)(const char *buf, gsize offset, gsize n, gpointer data),
                   gpointer data)
{
	gsize have = 0;
	g_autofree char *line = NULL;

	while (have < total) {
		char buf[4096];
		gssize n = client_recv(c, buf, MIN(sizeof(buf), total - have));

		g_assert_cmpint(n, >, 0);
		check(buf, have, n, data);
		have += n;
		if (have < (1 << 20) && have % (64 * 1024) < (gsize) n)
			g_usleep(2000);
	}
	line = client_read_line(c);
	g_assert_cmpstr(line, ==, "bye");
	client_expect_eof(c);
}

static void
check_mixed(const char *buf, gsize offset, gsize n, gpointer data)
{
	for (gsize k = 0; k < n; k++) {
		if ((guint8) buf[k] != mixed_byte(offset + k))
			g_error("byte %" G_GSIZE_FORMAT " differs", offset + k);
	}
}

static void
client_mixed(Client *c)
{
	gsize total = 0;

	if (GPOINTER_TO_INT(c->data))
		client_handshake(c, PRIO_TLS13, "example.com", NULL);
	for (guint i = 0; i < MIXED_WRITES; i++)
		total += mixed_size(i);
	client_send_str(c, "MIXED\nBYE\n");
	client_read_slowly(c, total, check_mixed, NULL);
}

static void
checksum_piece(const char *buf, gsize offset, gsize n, gpointer data)
{
	g_checksum_update(data, (const guchar *) buf, n);
}

static void
client_big(Client *c)
{
	g_autoptr(GChecksum) got = g_checksum_new(G_CHECKSUM_SHA256);
	g_autoptr(GChecksum) want = g_checksum_new(G_CHECKSUM_SHA256);
	g_autoptr(GBytes) chunk = pattern_bytes(64 * 1024, 7);

	if (GPOINTER_TO_INT(c->data))
		client_handshake(c, PRIO_TLS13, "example.com", NULL);
	for (guint i = 0; i < 8 * 16; i++)
		g_checksum_update(want, g_bytes_get_data(chunk, NULL), g_bytes_get_size(chunk));
	client_send_str(c, "BIG 8\nBYE\n");
	client_read_slowly(c, 8 << 20, checksum_piece, got);
	g_assert_cmpstr(g_checksum_get_string(got), ==, g_checksum_get_string(want));
}

/* @client against a server whose socket buffer is small, so its output
 * queue fills and drains in many steps. */
static void
run_slow_reader(gboolean tls, ClientFunc client)
{
	int sfd, cfd;
	int small = 16384;
	Server *srv;

	tcp_pair(&sfd, &cfd);
	setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	srv = server_new(sfd, tls);
	run_client(srv, cfd, client, GINT_TO_POINTER(tls));
	g_assert_cmpstr(srv->closed_reason, ==, "connection closed by the server");
	server_free(srv);
}

static void
test_mixed_writes_tls(void)
{
	run_slow_reader(TRUE, client_mixed);
}

static void
test_mixed_writes_plain(void)
{
	run_slow_reader(FALSE, client_mixed);
}

static void
test_big_write_tls(void)
{
	run_slow_reader(TRUE, client_big);
}

static void
test_big_write_plain(void)
{
	run_slow_reader(FALSE, client_big);
}

typedef struct {
	gboolean tls;
	GBytes *sent;
} PartialCase;

static void
client_partial(Client *c)
{
	PartialCase *pc = c->data;
	gsize size;
	const char *data = g_bytes_get_data(pc->sent, &size);

	if (pc->tls)
		client_handshake(c, PRIO_TLS13, NULL, NULL);
	client_send(c, data, size);
	if (pc->tls)
		g_assert_cmpint(gnutls_bye(c->session, GNUTLS_SHUT_WR), ==, 0);
	else
		shutdown(c->fd, SHUT_WR);
	/* Wait for the server to see the end and close. */
	while (client_recv(c, (char[64]){ 0 }, 64) > 0)
		;
}

static void
run_partial(gboolean tls)
{
	PartialCase pc = { tls, pattern_bytes(300 * 1000, 3) };
	int sfd, cfd;
	Server *srv;

	socket_pair(&sfd, &cfd);
	srv = server_new(sfd, tls);
	srv->raw = TRUE;
	srv->max_consume = 1000;
	run_client(srv, cfd, client_partial, &pc);
	g_assert_cmpstr(srv->closed_reason, ==, "peer closed the connection");
	g_assert_cmpmem(srv->delivered->str, srv->delivered->len, g_bytes_get_data(pc.sent, NULL),
	                g_bytes_get_size(pc.sent));
	g_assert_cmpuint(srv->resume_count, >=, 250);
	server_free(srv);
	g_bytes_unref(pc.sent);
}

static void
test_partial_plain(void)
{
	run_partial(FALSE);
}

static void
test_partial_tls(void)
{
	run_partial(TRUE);
}

/* While paused, the unconsumed rest counts and nothing is read. */
static void
test_paused_buffer(void)
{
	int sfd, cfd;
	Server *srv;
	gint64 t0;

	socket_pair(&sfd, &cfd);
	srv = server_new(sfd, FALSE);
	srv->raw = TRUE;
	magpie_conn_set_reading(srv->conn, FALSE);
	t0 = magpie_conn_last_read(srv->conn);
	g_assert_cmpint(send(cfd, "abcdef", 6, 0), ==, 6);
	for (int i = 0; i < 20; i++)
		g_main_context_iteration(NULL, FALSE);
	g_assert_cmpuint(srv->delivered->len, ==, 0);
	g_assert_cmpint(magpie_conn_last_read(srv->conn), ==, t0);
	magpie_conn_set_reading(srv->conn, TRUE);
	g_assert_cmpuint(srv->delivered->len, ==, 0); /* not re-entrant */
	while (srv->delivered->len < 6)
		g_main_context_iteration(NULL, TRUE);
	g_assert_cmpstr(srv->delivered->str, ==, "abcdef");
	g_assert_cmpint(magpie_conn_last_read(srv->conn), >=, t0);
	g_assert_cmpuint(magpie_conn_buffer_size(srv->conn), ==, 0);
	close(cfd);
	while (srv->closed_count == 0)
		g_main_context_iteration(NULL, TRUE);
	g_assert_cmpstr(srv->closed_reason, ==, "peer closed the connection");
	server_free(srv);
}

static void
client_garbage(Client *c)
{
	char buf[256];

	client_send_str(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
	while (recv(c->fd, buf, sizeof(buf), 0) > 0)
		;
}

static void
test_garbage(void)
{
	int sfd, cfd;
	Server *srv;
	HandshakeCase hc = { PRIO_TLS13, "example.com", "example.com", "TLS1.3" };

	socket_pair(&sfd, &cfd);
	srv = server_new(sfd, TRUE);
	run_client(srv, cfd, client_garbage, NULL);
	g_assert_false(srv->established);
	g_test_message("garbage: %s", srv->closed_reason);
	g_assert_true(g_str_has_prefix(srv->closed_reason, "TLS handshake failed: "));
	server_free(srv);

	/* The loop goes on serving. */
	run_handshake_case(&hc, FALSE);
}

static void
client_eof_plain(Client *c)
{
	g_autofree char *line = NULL;

	client_send_str(c, "hi\n");
	line = client_read_line(c);
	g_assert_cmpstr(line, ==, "echo:hi");
}

static void
client_eof_tls(Client *c)
{
	g_autofree char *line = NULL;

	client_handshake(c, PRIO_TLS13, NULL, NULL);
	client_send_str(c, "hi\n");
	line = client_read_line(c);
	g_assert_cmpstr(line, ==, "echo:hi");
	/* Hang up without close_notify. */
}

static void
client_eof_handshake(Client *c)
{
	/* Connect and hang up before saying anything. */
}

static void
test_eof(void)
{
	struct {
		gboolean tls;
		ClientFunc func;
		const char *reason_prefix;
	} cases[] = {
		{ FALSE, client_eof_plain, "peer closed the connection" },
		{ TRUE, client_eof_tls, "peer closed the connection" },
		{ TRUE, client_eof_handshake, "TLS handshake failed: " },
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		int sfd, cfd;
		Server *srv;

		tcp_pair(&sfd, &cfd);
		srv = server_new(sfd, cases[i].tls);
		run_client(srv, cfd, cases[i].func, NULL);
		g_test_message("eof %u: %s", i, srv->closed_reason);
		g_assert_true(g_str_has_prefix(srv->closed_reason, cases[i].reason_prefix));
		server_free(srv);
	}
}

static void
client_silent(Client *c)
{
	char buf[64];

	/* Say nothing: wait for the server to give up. */
	while (recv(c->fd, buf, sizeof(buf), 0) > 0)
		;
}

static void
test_handshake_timeout(void)
{
	int sfd, cfd;
	Server *srv;
	gint64 start = g_get_monotonic_time();

	socket_pair(&sfd, &cfd);
	srv = server_new(sfd, FALSE);
	magpie_conn_set_handshake_timeout(srv->conn, 300);
	magpie_conn_start_tls(srv->conn, server_tls);
	run_client(srv, cfd, client_silent, NULL);
	g_assert_cmpstr(srv->closed_reason, ==, "TLS handshake timed out");
	g_assert_cmpint(g_get_monotonic_time() - start, >=, 290 * 1000);
	g_assert_false(srv->established);
	server_free(srv);
}

static void
test_bad_certificate(void)
{
	g_autoptr(MagpieTls) tls = magpie_tls_new();
	g_autoptr(GError) error = NULL;
	g_autofree char *cert = g_strdup_printf("%s/example.com.crt", cert_dir);
	g_autofree char *wrong_key = g_strdup_printf("%s/example.net.key", cert_dir);

	g_assert_false(magpie_tls_add_host(tls, "example.com", cert, "/nonexistent", &error));
	g_assert_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_CERTIFICATE);
	g_clear_error(&error);
	g_assert_false(magpie_tls_add_host(tls, "example.com", cert, wrong_key, &error));
	g_assert_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_CERTIFICATE);
	g_clear_error(&error);
	g_assert_cmpuint(magpie_tls_n_hosts(tls), ==, 0);
	g_assert_null(magpie_tls_session_new(tls, &error));
	g_assert_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_CERTIFICATE);
	g_clear_error(&error);

	g_assert_false(magpie_tls_set_priority(tls, "NORMAL:+BOGUS-THING", &error));
	g_assert_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_INTERNAL);
	g_clear_error(&error);
	g_assert_true(magpie_tls_set_priority(tls, "SECURE256:-VERS-ALL:+VERS-TLS1.3", &error));
	g_assert_cmpstr(magpie_tls_get_priority(tls), ==, "SECURE256:-VERS-ALL:+VERS-TLS1.3");

	g_assert_null(magpie_tls_get_default());
	magpie_tls_set_default(tls);
	g_assert_true(magpie_tls_get_default() == tls);
	magpie_tls_set_default(NULL);
	g_assert_null(magpie_tls_get_default());
}

/* Our own close with output queued while the peer does not read: the
 * grace period bounds it. */
static void
test_close_grace(void)
{
	int sfd, cfd;
	Server *srv;
	g_autoptr(GBytes) chunk = pattern_bytes(1 << 20, 1);
	gint64 start;

	socket_pair(&sfd, &cfd);
	srv = server_new(sfd, FALSE);
	for (int i = 0; i < 8; i++)
		magpie_conn_write_bytes(srv->conn, chunk);
	start = g_get_monotonic_time();
	magpie_conn_close(srv->conn, 200);
	g_assert_cmpuint(srv->closed_count, ==, 0); /* never re-entrant */
	while (srv->closed_count == 0)
		g_main_context_iteration(NULL, TRUE);
	g_assert_cmpint(g_get_monotonic_time() - start, >=, 190 * 1000);
	g_assert_cmpint(g_get_monotonic_time() - start, <, 5 * G_USEC_PER_SEC);
	g_assert_cmpstr(srv->closed_reason, ==, "connection closed by the server");
	g_assert_cmpuint(magpie_conn_output_queued(srv->conn), ==, 0);
	server_free(srv);
	close(cfd);
}

typedef struct {
	MagpieConn *conn;
	guint calls;
} FreeCase;

static gsize
free_in_data(gpointer user_data, const char *buf, gsize len)
{
	FreeCase *fc = user_data;

	fc->calls++;
	/* Against the rules, but it must not crash the loop. */
	magpie_conn_free(fc->conn);
	fc->conn = NULL;
	return 0;
}

static void
free_in_closed(gpointer user_data, const char *reason)
{
	FreeCase *fc = user_data;

	fc->calls++;
	magpie_conn_free(fc->conn);
	fc->conn = NULL;
}

static void
test_free_in_callback(void)
{
	static const MagpieConnCallbacks in_data = { .data = free_in_data };
	static const MagpieConnCallbacks in_closed = { .data = free_in_data,
		                                       .closed = free_in_closed };
	int sv[2];
	FreeCase fc = { 0 };

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	fc.conn = magpie_conn_new(sv[0], "free-in-data", &in_data, &fc);
	g_assert_cmpint(send(sv[1], "x", 1, 0), ==, 1);
	while (fc.conn != NULL)
		g_main_context_iteration(NULL, TRUE);
	for (int i = 0; i < 10; i++)
		g_main_context_iteration(NULL, FALSE);
	g_assert_cmpuint(fc.calls, ==, 1);
	close(sv[1]);

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	fc.calls = 0;
	fc.conn = magpie_conn_new(sv[0], "free-in-closed", &in_closed, &fc);
	close(sv[1]);
	while (fc.conn != NULL)
		g_main_context_iteration(NULL, TRUE);
	for (int i = 0; i < 10; i++)
		g_main_context_iteration(NULL, FALSE);
	g_assert_cmpuint(fc.calls, ==, 1);
}

/* --- memory per idle TLS connection (perf only) ----------------------- */

static gpointer memory_clients_done;

static gpointer
memory_clients(gpointer user_data)
{
	int *fds = user_data;
	guint n = fds[0];
	gnutls_session_t *sessions = g_new0(gnutls_session_t, n);

	for (guint i = 0; i < n; i++) {
		Client c = { .fd = fds[i + 1], .in = g_string_new(NULL) };

		client_handshake(&c, PRIO_TLS13, "example.com", NULL);
		client_send_str(&c, "hi\n");
		g_free(client_read_line(&c));
		g_string_free(c.in, TRUE);
		sessions[i] = c.session;
	}
	g_atomic_pointer_set(&memory_clients_done, sessions);
	g_main_context_wakeup(NULL);
	return sessions;
}

static gsize
heap_in_use(void)
{
	struct mallinfo2 mi;

	malloc_trim(0);
	mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void
test_memory(void)
{
	const guint n = 1000;
	int *client_fds;
	Server **servers;
	int *server_fds;
	gnutls_session_t *sessions;
	GThread *thread;
	gsize before, after;
	struct rlimit rl;

	if (!g_test_perf()) {
		g_test_skip("memory measurement only with -m perf");
		return;
	}
	client_fds = g_new0(int, n + 1);
	servers = g_new0(Server *, n);
	server_fds = g_new0(int, n);
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);

	client_fds[0] = n;
	for (guint i = 0; i < n; i++)
		socket_pair(&server_fds[i], &client_fds[i + 1]);
	before = heap_in_use();
	for (guint i = 0; i < n; i++)
		servers[i] = server_new(server_fds[i], TRUE);
	thread = g_thread_new("clients", memory_clients, client_fds);
	for (;;) {
		guint established = 0;

		for (guint i = 0; i < n; i++)
			established += servers[i]->established && servers[i]->delivered->len == 3;
		if (established == n && g_atomic_pointer_get(&memory_clients_done) != NULL)
			break;
		g_main_context_iteration(NULL, TRUE);
	}
	sessions = g_thread_join(thread);
	for (int i = 0; i < 100; i++)
		g_main_context_iteration(NULL, FALSE);
	/* Client sessions live in this process too: count them out by
	 * freeing them before measuring the server side. */
	for (guint i = 0; i < n; i++)
		gnutls_deinit(sessions[i]);
	after = heap_in_use();
	g_test_minimized_result((double) (after - before) / n,
	                        "heap per idle TLS connection: %.1f KiB (%u connections)",
	                        (double) (after - before) / n / 1024.0, n);
	for (guint i = 0; i < n; i++) {
		server_free(servers[i]);
		close(client_fds[i + 1]);
	}
	g_free(sessions);
	g_free(servers);
	g_free(server_fds);
	g_free(client_fds);
}

int
main(int argc, char **argv)
{
	g_autoptr(GError) error = NULL;
	int ret;

	g_test_init(&argc, &argv, NULL);

	cert_dir = g_dir_make_tmp("magpie-test-tls-XXXXXX", &error);
	g_assert_no_error(error);
	make_cert("example.com", NULL);
	make_cert("example.net", (const char *[]){ "*.example.net", NULL });
	make_cert("example.org", (const char *[]){ "muc.example.org", NULL });

	server_tls = magpie_tls_new();
	add_host(server_tls, "example.com");
	add_host(server_tls, "example.net");
	add_host(server_tls, "example.org");
	g_assert_cmpuint(magpie_tls_n_hosts(server_tls), ==, 3);
	g_assert_cmpint(gnutls_certificate_allocate_credentials(&client_creds), ==, 0);

	g_test_add_func("/tls/direct/tls13", test_direct_tls13);
	g_test_add_func("/tls/direct/tls12", test_direct_tls12);
	g_test_add_func("/tls/sni", test_sni);
	g_test_add_func("/tls/sni-hostile", test_sni_hostile);
	g_test_add_func("/tls/resume", test_resume);
	g_test_add_func("/tls/starttls", test_starttls);
	g_test_add_func("/tls/starttls-injection", test_starttls_injection);
	g_test_add_func("/tls/big-write", test_big_write_tls);
	g_test_add_func("/tls/partial", test_partial_tls);
	g_test_add_func("/tls/mixed-writes", test_mixed_writes_tls);
	g_test_add_func("/tls/garbage", test_garbage);
	g_test_add_func("/tls/bad-certificate", test_bad_certificate);
	g_test_add_func("/tls/handshake-timeout", test_handshake_timeout);
	g_test_add_func("/tls/memory", test_memory);
	g_test_add_func("/conn/big-write", test_big_write_plain);
	g_test_add_func("/conn/partial", test_partial_plain);
	g_test_add_func("/conn/mixed-writes", test_mixed_writes_plain);
	g_test_add_func("/conn/paused", test_paused_buffer);
	g_test_add_func("/conn/eof", test_eof);
	g_test_add_func("/conn/close-grace", test_close_grace);
	g_test_add_func("/conn/free-in-callback", test_free_in_callback);

	ret = g_test_run();

	magpie_tls_unref(server_tls);
	gnutls_certificate_free_credentials(client_creds);
	for (const char *const *h =
	             (const char *[]){ "example.com", "example.net", "example.org", NULL };
	     *h != NULL; h++) {
		g_autofree char *crt = g_strdup_printf("%s/%s.crt", cert_dir, *h);
		g_autofree char *key = g_strdup_printf("%s/%s.key", cert_dir, *h);

		g_unlink(crt);
		g_unlink(key);
	}
	g_rmdir(cert_dir);
	g_free(cert_dir);
	return ret;
}
