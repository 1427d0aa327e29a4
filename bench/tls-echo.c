/* tls-echo: the physical floor of the benchmark (issue 4).
 *
 * A minimal single-threaded TLS echo server: epoll (level-triggered), one
 * GnuTLS session per accepted TCP connection, direct TLS at once (no
 * STARTTLS), every decrypted byte sent back on the same connection. It
 * does what any XMPP server must do for a message (accept, TLS, read,
 * write) and nothing else, so its CPU per message is the floor the load
 * generator measures the servers against.
 *
 * Same TLS settings as magpied (server/tls.c): the priority string
 * "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", session tickets, no
 * client certificate, TCP_NODELAY. Like magpied's connection code, what
 * one wakeup reads (up to 8 records) goes back in as few records as
 * possible.
 *
 *   tls-echo --cert FILE --key FILE [--port 5299] [--address 127.0.0.1]
 *            [--priority STRING]
 *
 * Once listening it prints one JSON line on stdout:
 *   {"server":"tls-echo","version":"...","port":P,"pids":[PID]}
 * SIGTERM/SIGINT make it exit, printing its counters on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <gnutls/gnutls.h>

#define ECHO_DEFAULT_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define ECHO_VERSION          "1"
#define ECHO_RECORD_MAX       16384
/* Records read per wakeup before echoing them. */
#define ECHO_READS_PER_WAKEUP 8
#define ECHO_STAGE_SIZE       (ECHO_RECORD_MAX * ECHO_READS_PER_WAKEUP)
#define ECHO_MAX_EVENTS       256

typedef enum {
	PHASE_HANDSHAKE,
	PHASE_ECHO,
} Phase;

typedef struct {
	int fd;
	Phase phase;
	uint32_t events; /* registered with epoll */
	gnutls_session_t session;
	/* Plaintext not yet sent back. While send_pending, the first
	 * send_len bytes are the record GnuTLS holds after E_AGAIN. */
	char *out;
	size_t out_len;
	size_t send_len;
	bool send_pending;
	bool eof; /* the peer closed: exit once out is sent */
} Conn;

static int epfd = -1;
static int listen_fd = -1;
static bool listening = true;
static volatile sig_atomic_t stop_requested = 0;
static gnutls_certificate_credentials_t credentials;
static gnutls_priority_t priority;
static gnutls_datum_t ticket_key;
static char stage[ECHO_STAGE_SIZE];

static struct {
	unsigned long long accepted, handshakes, failed, closed, bytes;
	unsigned long long open, max_open;
} stats;

static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

static void
die(const char *what, int err)
{
	fprintf(stderr, "tls-echo: %s: %s\n", what, err ? strerror(err) : "failed");
	exit(1);
}

static void
die_tls(const char *what, int r)
{
	fprintf(stderr, "tls-echo: %s: %s\n", what, gnutls_strerror(r));
	exit(1);
}

static void
conn_watch(Conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl(MOD)", errno);
	c->events = events;
}

static void
conn_close(Conn *c, bool failed)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	gnutls_deinit(c->session);
	free(c->out);
	free(c);
	if (failed)
		stats.failed++;
	stats.closed++;
	stats.open--;
}

/* Keep @len bytes of @data for later (after what is already kept). */
static void
conn_keep(Conn *c, const char *data, size_t len)
{
	char *out = realloc(c->out, c->out_len + len);

	if (out == NULL)
		die("realloc", ENOMEM);
	memcpy(out + c->out_len, data, len);
	c->out = out;
	c->out_len += len;
}

static void
conn_consume(Conn *c, size_t len)
{
	if (len >= c->out_len) {
		free(c->out);
		c->out = NULL;
		c->out_len = 0;
		return;
	}
	memmove(c->out, c->out + len, c->out_len - len);
	c->out_len -= len;
}

/* Send @data (not kept) in records; keep what could not go. FALSE when
 * the connection failed. */
static bool
conn_send(Conn *c, const char *data, size_t len)
{
	while (len > 0) {
		size_t chunk = len < ECHO_RECORD_MAX ? len : ECHO_RECORD_MAX;
		ssize_t r = gnutls_record_send(c->session, data, chunk);

		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			/* The record is encrypted and held by GnuTLS: keep
			 * its bytes (and the rest) until it has gone. */
			conn_keep(c, data, len);
			c->send_pending = true;
			c->send_len = chunk;
			return true;
		}
		if (r < 0)
			return false;
		data += r;
		len -= (size_t) r;
	}
	return true;
}

/* Finish the pending record, then send what is kept. */
static bool
conn_flush(Conn *c)
{
	while (c->out_len > 0) {
		ssize_t r;

		if (c->send_pending) {
			r = gnutls_record_send(c->session, NULL, 0);
			if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
				return true;
			if (r < 0)
				return false;
			c->send_pending = false;
			conn_consume(c, c->send_len);
			continue;
		}
		size_t chunk = c->out_len < ECHO_RECORD_MAX ? c->out_len : ECHO_RECORD_MAX;
		r = gnutls_record_send(c->session, c->out, chunk);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			c->send_pending = true;
			c->send_len = chunk;
			return true;
		}
		if (r < 0)
			return false;
		conn_consume(c, (size_t) r);
	}
	return true;
}

/* Read what is there (up to ECHO_READS_PER_WAKEUP records), echo it. */
static bool
conn_read(Conn *c)
{
	size_t got = 0;

	for (int i = 0; i < ECHO_READS_PER_WAKEUP; i++) {
		ssize_t r = gnutls_record_recv(c->session, stage + got, ECHO_RECORD_MAX);

		if (r > 0) {
			got += (size_t) r;
			continue;
		}
		if (r == 0) {
			c->eof = true;
			break;
		}
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			break;
		if (!gnutls_error_is_fatal((int) r))
			continue; /* warning alert, ignored post-handshake message */
		return false;
	}
	stats.bytes += got;
	return conn_send(c, stage, got);
}

static void
conn_update_watch(Conn *c)
{
	if (c->out_len > 0)
		conn_watch(c, EPOLLOUT); /* stop reading until the echo has gone */
	else
		conn_watch(c, EPOLLIN);
}

static void
conn_handshake(Conn *c)
{
	int r = gnutls_handshake(c->session);

	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
		conn_watch(c, gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN);
		return;
	}
	if (r < 0) {
		conn_close(c, true);
		return;
	}
	stats.handshakes++;
	c->phase = PHASE_ECHO;
	/* The client may have sent application data with its Finished. */
	if (!conn_read(c)) {
		conn_close(c, true);
		return;
	}
	if (c->eof && c->out_len == 0) {
		conn_close(c, false);
		return;
	}
	conn_update_watch(c);
}

static void
conn_event(Conn *c, uint32_t events)
{
	if (c->phase == PHASE_HANDSHAKE) {
		conn_handshake(c);
		return;
	}
	if ((events & (EPOLLERR | EPOLLHUP)) && !(events & (EPOLLIN | EPOLLOUT))) {
		conn_close(c, false);
		return;
	}
	if (c->out_len > 0) {
		if (!conn_flush(c)) {
			conn_close(c, false);
			return;
		}
	} else if (!c->eof) {
		if (!conn_read(c)) {
			conn_close(c, false);
			return;
		}
	}
	if (c->eof && c->out_len == 0) {
		conn_close(c, false);
		return;
	}
	conn_update_watch(c);
}

static void
listener_watch(bool on)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	if (on == listening)
		return;
	if (epoll_ctl(epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_fd, &ev) < 0)
		die("epoll_ctl(listener)", errno);
	listening = on;
}

/* FALSE when out of file descriptors: stop accepting for a while. */
static bool
accept_all(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int one = 1;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				fprintf(stderr, "tls-echo: accept: %s (%llu open)\n",
				        strerror(errno), stats.open);
				return false;
			}
			return true; /* EAGAIN and the like */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

		Conn *c = calloc(1, sizeof(*c));
		int r;

		if (c == NULL)
			die("calloc", ENOMEM);
		c->fd = fd;
		c->phase = PHASE_HANDSHAKE;
		r = gnutls_init(&c->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
		if (r >= 0)
			r = gnutls_priority_set(c->session, priority);
		if (r >= 0)
			r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, credentials);
		if (r >= 0)
			r = gnutls_session_ticket_enable_server(c->session, &ticket_key);
		if (r < 0)
			die_tls("TLS session setup", r);
		gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_IGNORE);
		gnutls_handshake_set_timeout(c->session, 0);
		gnutls_transport_set_int(c->session, fd);

		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		c->events = EPOLLIN;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl(ADD)", errno);
		stats.accepted++;
		stats.open++;
		if (stats.open > stats.max_open)
			stats.max_open = stats.open;
		/* No read yet: the ClientHello arrives with the next wakeup. */
	}
}

static void
usage(int status)
{
	fprintf(status ? stderr : stdout,
	        "usage: tls-echo --cert FILE --key FILE [--port N] [--address A] "
	        "[--priority STRING]\n");
	exit(status);
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "port", required_argument, NULL, 'p' },
		{ "address", required_argument, NULL, 'a' },
		{ "priority", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cert = NULL, *key = NULL, *address = "127.0.0.1";
	const char *prio = ECHO_DEFAULT_PRIORITY, *err_pos = NULL;
	long port = 5299;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "c:k:p:a:P:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'p': {
			char *end;
			port = strtol(optarg, &end, 10);
			if (*end != '\0' || port < 1 || port > 65535)
				usage(2);
			break;
		}
		case 'a':
			address = optarg;
			break;
		case 'P':
			prio = optarg;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (cert == NULL || key == NULL || optind != argc)
		usage(2);

	/* As many descriptors as allowed (20000 here, the hard cap). */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if ((r = gnutls_global_init()) < 0)
		die_tls("gnutls_global_init", r);
	if ((r = gnutls_certificate_allocate_credentials(&credentials)) < 0)
		die_tls("credentials", r);
	r = gnutls_certificate_set_x509_key_file2(credentials, cert, key, GNUTLS_X509_FMT_PEM, NULL,
	                                          0);
	if (r < 0)
		die_tls("loading the certificate and key", r);
	gnutls_certificate_set_known_dh_params(credentials, GNUTLS_SEC_PARAM_MEDIUM);
	if ((r = gnutls_priority_init(&priority, prio, &err_pos)) < 0) {
		fprintf(stderr, "tls-echo: bad priority string near \"%s\"\n",
		        err_pos ? err_pos : "");
		die_tls("gnutls_priority_init", r);
	}
	if ((r = gnutls_session_ticket_key_generate(&ticket_key)) < 0)
		die_tls("session ticket key", r);

	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
	if (inet_pton(AF_INET, address, &sin.sin_addr) != 1) {
		fprintf(stderr, "tls-echo: not an IPv4 address: %s\n", address);
		return 2;
	}
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		die("socket", errno);
	int one = 1;
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listen_fd, (struct sockaddr *) &sin, sizeof(sin)) < 0)
		die("bind", errno);
	if (listen(listen_fd, 4096) < 0)
		die("listen", errno);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1", errno);
	listening = false;
	listener_watch(true);

	printf("{\"server\":\"tls-echo\",\"version\":\"%s (GnuTLS %s)\",\"port\":%ld,"
	       "\"pids\":[%ld]}\n",
	       ECHO_VERSION, gnutls_check_version(NULL), port, (long) getpid());
	fflush(stdout);

	struct epoll_event events[ECHO_MAX_EVENTS];
	while (!stop_requested) {
		int n = epoll_wait(epfd, events, ECHO_MAX_EVENTS, listening ? -1 : 100);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait", errno);
		}
		if (n == 0 && !listening) {
			listener_watch(true); /* retry after running out of descriptors */
			continue;
		}
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr == NULL) {
				if (!accept_all())
					listener_watch(false);
				continue;
			}
			conn_event(events[i].data.ptr, events[i].events);
		}
	}

	fprintf(stderr,
	        "tls-echo: accepted %llu, handshakes %llu, failed %llu, closed %llu, "
	        "max open %llu, bytes echoed %llu\n",
	        stats.accepted, stats.handshakes, stats.failed, stats.closed, stats.max_open,
	        stats.bytes);
	return 0;
}
