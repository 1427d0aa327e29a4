/* A connection in the main loop: plain TCP or GnuTLS record I/O on a
 * nonblocking fd (research/crux.md §3).
 *
 * Connections are not GSources of their own: GLib walks every source of a
 * context twice per loop iteration, so with thousands of connections the
 * loop's bookkeeping would cost more than the traffic. One GSource, the
 * connection loop, owns an epoll set holding every connection's fd
 * (level-triggered, IN and/or OUT as the connection wants) and a ready
 * list of connections to dispatch without waiting for their fd: data
 * queued for writing (flushed in the same loop pass that queued it),
 * re-delivery after magpie_conn_set_reading(), GnuTLS records decrypted
 * but not yet read, the closed() notification. Deadlines (handshake,
 * close grace period) are one small timer source per connection that has
 * one, only while it has one. So a loop pass costs in proportion to the
 * connections that are ready, an idle connection costs one allocation
 * plus the GnuTLS session, and a callback that frees a connection cannot
 * pull the memory from under a dispatch (the ready list holds a
 * reference). */
#include "conn.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <glib-unix.h>

#define CONN_READ_CHUNK 16384
/* Reads per dispatch before letting other sources run. */
#define CONN_READS_PER_DISPATCH   8
#define CONN_HANDSHAKE_TIMEOUT_MS 30000
#define CONN_IOV_MAX              64
/* Largest TLS record payload (RFC 8446 §5.1). */
#define CONN_TLS_RECORD_MAX 16384
/* Stop reading a peer that does not read what we send: its requests would
 * only make the queue grow. The owner disconnects at its own limit. */
#define CONN_OUTPUT_READ_PAUSE (1024 * 1024)
/* epoll events taken per loop pass, and passes over the ready list per
 * dispatch (what one connection wrote to others goes out in the same
 * dispatch; a connection with more to read waits for the next pass). */
#define CONN_EPOLL_BATCH  256
#define CONN_READY_ROUNDS 4

typedef enum {
	CONN_PLAIN,
	CONN_TLS_WAIT, /* start_tls called: flushing the plaintext before the handshake */
	CONN_HANDSHAKE,
	CONN_TLS,
} ConnPhase;

/* What waits to be written, in order: a ring of items, each a GBytes
 * written as it is (large ones, shared with other connections) or a
 * buffer that small writes are copied into one after another. Copying a
 * stanza of a few hundred bytes costs less than keeping a reference to
 * it, and a stanza spliced for one address (magpie_conn_writev) needs no
 * GBytes of its own at all. The buffers come from a pool, so a busy
 * connection costs no allocation per write, and go back to it as soon as
 * they are written: an idle connection holds none. The ring usually
 * holds one or two items, so those live in the connection itself; a
 * longer queue moves to the heap until it drains. */
#define OUTQ_INLINE 2
/* Writes of up to OUT_BUF_SIZE bytes are copied; a pooled buffer's size. */
#define OUT_BUF_SIZE 2048
#define OUT_POOL_MAX 512

typedef struct {
	GBytes *bytes; /* NULL: a buffer */
	char *buf;
	gsize len;
} OutItem;

typedef struct {
	OutItem *v; /* inline_v or the heap; capacity a power of 2 */
	guint head;
	guint length;
	guint cap;
	OutItem inline_v[OUTQ_INLINE];
} OutQueue;

static char *out_pool[OUT_POOL_MAX];
static guint out_pool_len;

static char *
out_buf_new(void)
{
	return out_pool_len > 0 ? out_pool[--out_pool_len] : g_malloc(OUT_BUF_SIZE);
}

static void
out_buf_free(char *buf)
{
	if (out_pool_len < OUT_POOL_MAX)
		out_pool[out_pool_len++] = buf;
	else
		g_free(buf);
}

static void
outq_init(OutQueue *q)
{
	q->v = q->inline_v;
	q->head = 0;
	q->length = 0;
	q->cap = OUTQ_INLINE;
}

static OutItem *
outq_nth(OutQueue *q, guint i)
{
	return &q->v[(q->head + i) & (q->cap - 1)];
}

static const char *
out_item_data(const OutItem *item, gsize *size)
{
	if (item->bytes != NULL)
		return g_bytes_get_data(item->bytes, size);
	*size = item->len;
	return item->buf;
}

static OutItem *
outq_push(OutQueue *q)
{
	if (q->length == q->cap) {
		OutItem *v = g_new(OutItem, q->cap * 2);

		for (guint i = 0; i < q->length; i++)
			v[i] = *outq_nth(q, i);
		if (q->v != q->inline_v)
			g_free(q->v);
		q->v = v;
		q->head = 0;
		q->cap *= 2;
	}
	q->length++;
	return outq_nth(q, q->length - 1);
}

/* Drop the first item. */
static void
outq_pop(OutQueue *q)
{
	OutItem *item = &q->v[q->head];

	if (item->bytes != NULL)
		g_bytes_unref(item->bytes);
	else
		out_buf_free(item->buf);
	q->head = (q->head + 1) & (q->cap - 1);
	if (--q->length == 0 && q->v != q->inline_v) {
		g_free(q->v);
		outq_init(q);
	}
}

static void
outq_clear(OutQueue *q)
{
	while (q->length > 0)
		outq_pop(q);
}

/* Room for @size more bytes at the end of the queue, in a buffer. */
static char *
outq_reserve(OutQueue *q, gsize size)
{
	OutItem *last = q->length > 0 ? outq_nth(q, q->length - 1) : NULL;

	if (last == NULL || last->bytes != NULL || last->len + size > OUT_BUF_SIZE) {
		last = outq_push(q);
		last->bytes = NULL;
		last->buf = out_buf_new();
		last->len = 0;
	}
	last->len += size;
	return last->buf + last->len - size;
}

struct _MagpieConn {
	int ref_count;
	GIOCondition events;  /* what the epoll set watches for */
	GIOCondition revents; /* what it reported, not yet dispatched */
	GSource *timer;       /* wakes the connection at a deadline */
	int fd;
	char *peer;
	MagpieConnCallbacks callbacks;
	gpointer user_data;

	ConnPhase phase;
	MagpieTls *tls;
	gnutls_session_t session;
	char *sni;
	gint64 handshake_deadline;
	guint handshake_timeout_ms;

	OutQueue output;
	gsize output_offset; /* into the head buffer */
	gsize output_queued;
	gsize plain_left; /* CONN_TLS_WAIT: bytes still to send in plaintext */

	char *remainder; /* received, not yet consumed by data() */
	gsize remainder_len;
	gint64 last_read;

	gint64 close_deadline;
	char *close_reason;

	guint reading : 1;          /* the owner wants data */
	guint kick : 1;             /* dispatch soon without waiting for the fd */
	guint tls_send_pending : 1; /* GnuTLS holds a record after E_AGAIN */
	guint read_wants_out : 1;   /* gnutls_record_recv blocked on writing */
	guint closing : 1;
	guint dead : 1;
	guint closed_notified : 1;
	guint registered : 1; /* fd in the epoll set */
	guint queued : 1;     /* on the ready list */
	guint freed : 1;      /* magpie_conn_free() was called */
};

typedef struct {
	GSource source;
	gpointer epoll_tag;
	int epfd;
	GPtrArray *ready; /* MagpieConn, each holding a reference */
	GPtrArray *spare;
} ConnLoop;

static ConnLoop *conn_loop;

/* Small buffers gathered into one record. Everything runs on the main
 * thread and GnuTLS has encrypted the record before gnutls_record_send()
 * returns (even with E_AGAIN), so one buffer serves every connection. */
static char conn_send_batch[CONN_TLS_RECORD_MAX];

static void conn_update(MagpieConn *conn);
static void conn_dispatch(MagpieConn *conn);

static gboolean
conn_is_gone(MagpieConn *conn)
{
	return conn->freed;
}

static MagpieConn *
conn_ref(MagpieConn *conn)
{
	conn->ref_count++;
	return conn;
}

static void
conn_unref(MagpieConn *conn)
{
	if (--conn->ref_count == 0)
		g_free(conn);
}

/* Dispatch @conn in this or the next loop pass. */
static void
conn_queue(MagpieConn *conn)
{
	if (conn->queued || conn->freed)
		return;
	conn->queued = TRUE;
	g_ptr_array_add(conn_loop->ready, conn_ref(conn));
}

static gboolean
conn_loop_prepare(GSource *source, gint *timeout)
{
	ConnLoop *loop = (ConnLoop *) source;

	*timeout = loop->ready->len > 0 ? 0 : -1;
	return loop->ready->len > 0;
}

static gboolean
conn_loop_check(GSource *source)
{
	ConnLoop *loop = (ConnLoop *) source;

	return loop->ready->len > 0 || g_source_query_unix_fd(source, loop->epoll_tag) != 0;
}

static gboolean
conn_loop_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	ConnLoop *loop = (ConnLoop *) source;
	struct epoll_event events[CONN_EPOLL_BATCH];
	int n;

	n = epoll_wait(loop->epfd, events, CONN_EPOLL_BATCH, 0);
	for (int i = 0; i < n; i++) {
		MagpieConn *conn = events[i].data.ptr;
		guint32 e = events[i].events;

		conn->revents |= ((e & EPOLLIN) ? G_IO_IN : 0) | ((e & EPOLLOUT) ? G_IO_OUT : 0) |
		                 ((e & EPOLLHUP) ? G_IO_HUP : 0) | ((e & EPOLLERR) ? G_IO_ERR : 0);
		conn_queue(conn);
	}
	for (int round = 0; round < CONN_READY_ROUNDS && loop->ready->len > 0; round++) {
		GPtrArray *batch = loop->ready;

		loop->ready = loop->spare;
		loop->spare = batch;
		for (guint i = 0; i < batch->len; i++) {
			MagpieConn *conn = g_ptr_array_index(batch, i);

			conn->queued = FALSE;
			if (!conn->freed)
				conn_dispatch(conn);
			conn_unref(conn);
		}
		g_ptr_array_set_size(batch, 0);
	}
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs conn_loop_funcs = {
	.prepare = conn_loop_prepare,
	.check = conn_loop_check,
	.dispatch = conn_loop_dispatch,
};

static ConnLoop *
conn_loop_get(void)
{
	if (conn_loop == NULL) {
		int epfd = epoll_create1(EPOLL_CLOEXEC);

		if (epfd < 0)
			g_error("epoll_create1: %s", g_strerror(errno));
		conn_loop = (ConnLoop *) g_source_new(&conn_loop_funcs, sizeof(ConnLoop));
		conn_loop->epfd = epfd;
		conn_loop->ready = g_ptr_array_new();
		conn_loop->spare = g_ptr_array_new();
		conn_loop->epoll_tag = g_source_add_unix_fd(&conn_loop->source, epfd, G_IO_IN);
		g_source_set_name(&conn_loop->source, "magpie connections");
		g_source_attach(&conn_loop->source, g_main_context_get_thread_default());
	}
	return conn_loop;
}

static void
conn_epoll_set(MagpieConn *conn, GIOCondition want)
{
	struct epoll_event ev = {
		.events = ((want & G_IO_IN) ? EPOLLIN : 0) | ((want & G_IO_OUT) ? EPOLLOUT : 0),
		.data.ptr = conn,
	};

	if (epoll_ctl(conn_loop->epfd, conn->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, conn->fd,
	              &ev) == 0)
		conn->registered = TRUE;
	else
		g_warning("%s: epoll_ctl: %s", conn->peer, g_strerror(errno));
	conn->events = want;
}

static void
conn_epoll_remove(MagpieConn *conn)
{
	if (!conn->registered)
		return;
	epoll_ctl(conn_loop->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
	conn->registered = FALSE;
	conn->revents = 0;
}

static gboolean
conn_timer_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	g_source_set_ready_time(source, -1);
	return callback(user_data);
}

static GSourceFuncs conn_timer_funcs = {
	.dispatch = conn_timer_dispatch,
};

static gboolean
conn_timer_fired(gpointer data)
{
	MagpieConn *conn = data;

	conn_queue(conn);
	return G_SOURCE_CONTINUE;
}

/* Wake @conn at monotonic time @deadline; -1 for never. */
static void
conn_set_deadline(MagpieConn *conn, gint64 deadline)
{
	if (deadline < 0) {
		if (conn->timer != NULL) {
			g_source_destroy(conn->timer);
			g_clear_pointer(&conn->timer, g_source_unref);
		}
		return;
	}
	if (conn->timer == NULL) {
		conn->timer = g_source_new(&conn_timer_funcs, sizeof(GSource));
		g_source_set_callback(conn->timer, conn_timer_fired, conn, NULL);
		g_source_set_name(conn->timer, "magpie connection deadline");
		g_source_attach(conn->timer, g_main_context_get_thread_default());
	}
	g_source_set_ready_time(conn->timer, deadline);
}

static void
conn_clear_output(MagpieConn *conn)
{
	outq_clear(&conn->output);
	conn->output_offset = 0;
	conn->output_queued = 0;
	conn->plain_left = 0;
}

static void
conn_clear_remainder(MagpieConn *conn)
{
	g_clear_pointer(&conn->remainder, g_free);
	conn->remainder_len = 0;
}

/* Lingering close. A socket closed with unread input sends a reset, and a
 * reset can make the peer's kernel throw away our last bytes (the stream
 * error) before the client read them. So after shutdown(SHUT_WR) a dup of
 * the socket stays open, discarding input, until the peer closes too or
 * CONN_LINGER_MS pass. Bounded in number, so a flood of closes cannot use
 * up the process's descriptors. All lingering sockets share one GSource
 * (an epoll set of their own, and the deadline of the oldest): a source
 * each made the loop quadratic when thousands of clients left at once. */
#define CONN_LINGER_MS  2000
#define CONN_LINGER_MAX 1024

typedef struct {
	int fd; /* -1 once closed */
	gint64 deadline;
} ConnLinger;

typedef struct {
	GSource source;
	gpointer epoll_tag;
	int epfd;
	GQueue lingers; /* ConnLinger, oldest (earliest deadline) first */
	guint open;     /* lingers with an open fd */
} LingerSet;

static LingerSet *linger_set;

static void
linger_close(LingerSet *set, ConnLinger *linger)
{
	if (linger->fd < 0)
		return;
	epoll_ctl(set->epfd, EPOLL_CTL_DEL, linger->fd, NULL);
	close(linger->fd);
	linger->fd = -1;
	set->open--;
}

static void
linger_update_ready_time(LingerSet *set)
{
	ConnLinger *oldest = g_queue_peek_head(&set->lingers);

	g_source_set_ready_time(&set->source, oldest != NULL ? oldest->deadline : -1);
}

static gboolean
linger_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	LingerSet *set = (LingerSet *) source;
	struct epoll_event events[64];
	gint64 now = g_get_monotonic_time();
	int n = epoll_wait(set->epfd, events, G_N_ELEMENTS(events), 0);
	char buf[4096];

	for (int i = 0; i < n; i++) {
		ConnLinger *linger = events[i].data.ptr;

		for (int k = 0; k < 64 && linger->fd >= 0; k++) {
			gssize r = recv(linger->fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (r == 0 ||
			    (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
				linger_close(set, linger); /* the peer closed too */
			else if (r < 0)
				break;
		}
	}
	while (!g_queue_is_empty(&set->lingers) &&
	       ((ConnLinger *) g_queue_peek_head(&set->lingers))->deadline <= now) {
		ConnLinger *linger = g_queue_pop_head(&set->lingers);

		linger_close(set, linger);
		g_free(linger);
	}
	/* Closed early: freed here rather than searched for in the queue. */
	while (!g_queue_is_empty(&set->lingers) &&
	       ((ConnLinger *) g_queue_peek_head(&set->lingers))->fd < 0)
		g_free(g_queue_pop_head(&set->lingers));
	linger_update_ready_time(set);
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs linger_funcs = {
	.dispatch = linger_dispatch,
};

static void
conn_drain_input(MagpieConn *conn)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	ConnLinger *linger;
	int fd;

	if (linger_set == NULL) {
		int epfd = epoll_create1(EPOLL_CLOEXEC);

		if (epfd < 0)
			return;
		linger_set = (LingerSet *) g_source_new(&linger_funcs, sizeof(LingerSet));
		linger_set->epfd = epfd;
		g_queue_init(&linger_set->lingers);
		linger_set->epoll_tag = g_source_add_unix_fd(&linger_set->source, epfd, G_IO_IN);
		g_source_set_static_name(&linger_set->source, "magpie lingering closes");
		g_source_attach(&linger_set->source, NULL);
	}
	if (linger_set->open >= CONN_LINGER_MAX || (fd = dup(conn->fd)) < 0)
		return;
	linger = g_new(ConnLinger, 1);
	linger->fd = fd;
	linger->deadline = g_get_monotonic_time() + CONN_LINGER_MS * 1000;
	ev.data.ptr = linger;
	if (epoll_ctl(linger_set->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		g_free(linger);
		return;
	}
	linger_set->open++;
	g_queue_push_tail(&linger_set->lingers, linger);
	linger_update_ready_time(linger_set);
}

/* The end of the connection: shut the socket down, free the buffers and
 * schedule closed() from the loop. @reason is taken. */
static void
conn_die(MagpieConn *conn, char *reason, gboolean graceful)
{
	if (conn->dead) {
		g_free(reason);
		return;
	}
	conn->dead = TRUE;
	conn->close_reason = reason;
	g_debug("%s: %s", conn->peer, reason);

	if (graceful) {
		if (conn->phase == CONN_TLS && !conn->tls_send_pending)
			gnutls_bye(conn->session, GNUTLS_SHUT_WR); /* best effort */
		shutdown(conn->fd, SHUT_WR);
		conn_drain_input(conn);
	} else {
		shutdown(conn->fd, SHUT_RDWR);
	}
	conn_clear_output(conn);
	conn_clear_remainder(conn);
	/* HUP is reported even with no events asked for. */
	conn_epoll_remove(conn);
	conn->kick = TRUE;
	conn_update(conn);
}

static void conn_fail(MagpieConn *conn, const char *format, ...) G_GNUC_PRINTF(2, 3);

static void
conn_fail(MagpieConn *conn, const char *format, ...)
{
	va_list args;
	char *reason;

	va_start(args, format);
	reason = g_strdup_vprintf(format, args);
	va_end(args);
	conn_die(conn, reason, FALSE);
}

static gboolean
conn_can_read(MagpieConn *conn)
{
	return conn->reading && !conn->dead && !conn->closing &&
	       (conn->phase == CONN_PLAIN || conn->phase == CONN_TLS) &&
	       conn->output_queued < CONN_OUTPUT_READ_PAUSE;
}

static gboolean
conn_output_done(MagpieConn *conn)
{
	if (conn->phase == CONN_TLS_WAIT)
		return conn->plain_left == 0;
	return conn->output.length == 0 && !conn->tls_send_pending;
}

static void
conn_update(MagpieConn *conn)
{
	GIOCondition want = 0;
	gint64 ready = -1;

	if (conn->dead) {
		conn_set_deadline(conn, -1);
		if (!conn->closed_notified)
			conn_queue(conn);
		return;
	}
	switch (conn->phase) {
	case CONN_PLAIN:
	case CONN_TLS:
		if (conn_can_read(conn) && conn->remainder == NULL)
			want |= G_IO_IN;
		if (conn->output.length > 0 || conn->tls_send_pending || conn->read_wants_out)
			want |= G_IO_OUT;
		break;
	case CONN_TLS_WAIT:
		if (conn->plain_left > 0)
			want |= G_IO_OUT;
		else
			ready = 0;
		break;
	case CONN_HANDSHAKE:
		want |= gnutls_record_get_direction(conn->session) ? G_IO_OUT : G_IO_IN;
		ready = conn->handshake_deadline;
		break;
	}
	if (conn->closing && (ready < 0 || conn->close_deadline < ready))
		ready = conn->close_deadline;
	/* Records GnuTLS decrypted while we were not reading do not wake
	 * poll(): look once whenever reading starts again. */
	if (conn->phase == CONN_TLS && (want & G_IO_IN) && !(conn->events & G_IO_IN))
		conn->kick = TRUE;
	if (conn->kick)
		ready = 0;
	if (want != conn->events && conn->registered)
		conn_epoll_set(conn, want);
	if (ready == 0)
		conn_queue(conn);
	conn_set_deadline(conn, ready > 0 ? ready : -1);
}

static void
conn_consume_output(MagpieConn *conn, gsize n)
{
	conn->output_queued -= n;
	while (n > 0) {
		gsize size;

		out_item_data(outq_nth(&conn->output, 0), &size);
		gsize left = size - conn->output_offset;

		if (n < left) {
			conn->output_offset += n;
			return;
		}
		n -= left;
		outq_pop(&conn->output);
		conn->output_offset = 0;
	}
}

/* writev the queue; in CONN_TLS_WAIT only up to the start_tls boundary. */
static void
conn_flush_plain(MagpieConn *conn)
{
	while (conn->output.length > 0) {
		gsize limit = conn->phase == CONN_TLS_WAIT ? conn->plain_left : G_MAXSIZE;
		struct iovec iov[CONN_IOV_MAX];
		struct msghdr msg = { 0 };
		gsize offset = conn->output_offset;
		gsize total = 0;
		int n = 0;
		gssize written;

		if (limit == 0)
			return;
		for (guint i = 0; i < conn->output.length && n < CONN_IOV_MAX && total < limit;
		     i++) {
			gsize size;
			const char *data = out_item_data(outq_nth(&conn->output, i), &size);
			gsize chunk = MIN(size - offset, limit - total);

			iov[n].iov_base = (char *) data + offset;
			iov[n].iov_len = chunk;
			total += chunk;
			n++;
			offset = 0;
		}
		msg.msg_iov = iov;
		msg.msg_iovlen = n;
		written = sendmsg(conn->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (written < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			conn_fail(conn, "write error: %s", g_strerror(errno));
			return;
		}
		conn_consume_output(conn, written);
		if (conn->phase == CONN_TLS_WAIT)
			conn->plain_left -= written;
		if ((gsize) written < total)
			return; /* the socket buffer is full */
	}
}

/* One record per gnutls_record_send: a big buffer is sent from its own
 * memory, small ones are gathered into one record. */
static void
conn_flush_tls(MagpieConn *conn)
{
	gsize max = MIN(gnutls_record_get_max_size(conn->session), CONN_TLS_RECORD_MAX);

	while (conn->tls_send_pending || conn->output.length > 0) {
		gssize r;

		if (conn->tls_send_pending) {
			/* GnuTLS holds the encrypted record: resume it. */
			r = gnutls_record_send(conn->session, NULL, 0);
		} else {
			gsize size;
			const char *data = out_item_data(outq_nth(&conn->output, 0), &size);

			data += conn->output_offset;
			size -= conn->output_offset;
			if (size >= max || conn->output.length == 1) {
				r = gnutls_record_send(conn->session, data, MIN(size, max));
			} else {
				gsize len = 0;
				gsize offset = conn->output_offset;

				for (guint i = 0; i < conn->output.length && len < max; i++) {
					gsize chunk_size;
					const char *chunk = out_item_data(
					        outq_nth(&conn->output, i), &chunk_size);
					gsize take = MIN(chunk_size - offset, max - len);

					memcpy(conn_send_batch + len, chunk + offset, take);
					len += take;
					offset = 0;
				}
				r = gnutls_record_send(conn->session, conn_send_batch, len);
			}
		}
		if (r == GNUTLS_E_INTERRUPTED) {
			conn->tls_send_pending = TRUE;
			continue;
		}
		if (r == GNUTLS_E_AGAIN) {
			conn->tls_send_pending = TRUE;
			return;
		}
		conn->tls_send_pending = FALSE;
		if (r < 0) {
			conn_fail(conn, "TLS write error: %s", gnutls_strerror((int) r));
			return;
		}
		conn_consume_output(conn, MIN((gsize) r, conn->output_queued));
	}
}

static void
conn_handshake(MagpieConn *conn)
{
	int r;

	for (int i = 0;; i++) {
		r = gnutls_handshake(conn->session);
		if (r == GNUTLS_E_AGAIN)
			return;
		/* Warning alerts and interruptions: go on (bounded). */
		if (r < 0 && !gnutls_error_is_fatal(r) && i < 8)
			continue;
		break;
	}
	if (r < 0) {
		gnutls_alert_send_appropriate(conn->session, r);
		conn_fail(conn, "TLS handshake failed: %s", gnutls_strerror(r));
		return;
	}
	conn->phase = CONN_TLS;
	conn->handshake_deadline = 0;
	conn->sni = magpie_tls_session_get_sni(conn->session);
	/* Application data may have come with the Finished message. */
	conn->kick = TRUE;
	g_debug("%s: TLS established (%s%s%s)", conn->peer,
	        gnutls_protocol_get_name(gnutls_protocol_get_version(conn->session)),
	        conn->sni != NULL ? ", SNI " : "", conn->sni != NULL ? conn->sni : "");
	if (conn->callbacks.tls_established != NULL)
		conn->callbacks.tls_established(conn->user_data);
}

static void
conn_begin_handshake(MagpieConn *conn)
{
	g_autoptr(GError) error = NULL;

	conn->session = magpie_tls_session_new(conn->tls, &error);
	if (conn->session == NULL) {
		conn_fail(conn, "TLS setup failed: %s", error->message);
		return;
	}
	gnutls_transport_set_int(conn->session, conn->fd);
	conn->phase = CONN_HANDSHAKE;
	conn->handshake_deadline =
	        g_get_monotonic_time() + (gint64) conn->handshake_timeout_ms * 1000;
	conn_handshake(conn);
}

static void
conn_flush(MagpieConn *conn)
{
	switch (conn->phase) {
	case CONN_PLAIN:
	case CONN_TLS_WAIT:
		conn_flush_plain(conn);
		break;
	case CONN_TLS:
		conn_flush_tls(conn);
		break;
	case CONN_HANDSHAKE:
		break; /* application data waits for the handshake */
	}
	if (!conn->dead && !conn->closing && conn->phase == CONN_TLS_WAIT && conn->plain_left == 0)
		conn_begin_handshake(conn);
}

/* Hand @buf to the owner; keep what it does not take and stop reading.
 * FALSE when reading must stop. */
static gboolean
conn_deliver(MagpieConn *conn, const char *buf, gsize len)
{
	ConnPhase phase = conn->phase;
	gsize used = conn->callbacks.data(conn->user_data, buf, len);

	if (conn_is_gone(conn) || conn->dead)
		return FALSE;
	if (used > len) {
		g_critical("%s: data() consumed %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes",
		           conn->peer, used, len);
		used = len;
	}
	/* After start_tls or close the rest is not ours to deliver: plaintext
	 * after <starttls/> is the caller's business (it saw it in @buf). */
	if (used < len && conn->phase == phase && !conn->closing) {
		conn->remainder = g_memdup2(buf + used, len - used);
		conn->remainder_len = len - used;
		conn->reading = FALSE;
		return FALSE;
	}
	return conn_can_read(conn);
}

static void
conn_read(MagpieConn *conn)
{
	conn->read_wants_out = FALSE;
	for (int i = 0; i < CONN_READS_PER_DISPATCH; i++) {
		char buf[CONN_READ_CHUNK];
		gssize n;

		if (!conn_can_read(conn))
			return;
		if (conn->remainder != NULL) {
			g_autofree char *rest = g_steal_pointer(&conn->remainder);
			gsize rest_len = conn->remainder_len;

			conn->remainder_len = 0;
			if (!conn_deliver(conn, rest, rest_len))
				return;
			continue;
		}
		if (conn->phase == CONN_TLS) {
			n = gnutls_record_recv(conn->session, buf, sizeof(buf));
			if (n == GNUTLS_E_AGAIN) {
				conn->read_wants_out = gnutls_record_get_direction(conn->session);
				return;
			}
			if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
				conn_fail(conn, "peer closed the connection");
				return;
			}
			if (n == GNUTLS_E_REHANDSHAKE) {
				/* TLS 1.2 renegotiation: refuse politely. */
				gnutls_alert_send(conn->session, GNUTLS_AL_WARNING,
				                  GNUTLS_A_NO_RENEGOTIATION);
				continue;
			}
			if (n < 0 && !gnutls_error_is_fatal((int) n))
				continue;
			if (n < 0) {
				conn_fail(conn, "TLS error: %s", gnutls_strerror((int) n));
				return;
			}
		} else {
			n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return;
				conn_fail(conn, "read error: %s", g_strerror(errno));
				return;
			}
			if (n == 0) {
				conn_fail(conn, "peer closed the connection");
				return;
			}
		}
		conn->last_read = g_get_monotonic_time();
		if (!conn_deliver(conn, buf, n))
			return;
	}
	/* More may wait, in the socket or decrypted inside GnuTLS where poll()
	 * cannot see it: come back after the other sources had their turn. */
	conn->kick = TRUE;
}

static void
conn_socket_error(MagpieConn *conn, GIOCondition revents)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if ((revents & G_IO_ERR) && getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
	    err != 0)
		conn_fail(conn, "read error: %s", g_strerror(err));
	else
		conn_fail(conn, "peer closed the connection");
}

static void
conn_dispatch(MagpieConn *conn)
{
	GIOCondition revents = conn->revents;
	gboolean kick = conn->kick;
	gint64 now;

	conn->kick = FALSE;
	conn->revents = 0;
	now = g_get_monotonic_time();

	if (!conn->dead && conn->phase == CONN_HANDSHAKE && now >= conn->handshake_deadline)
		conn_fail(conn, "TLS handshake timed out");

	if (!conn->dead && conn->phase == CONN_HANDSHAKE && (revents != 0 || kick)) {
		conn_handshake(conn);
		if (conn_is_gone(conn))
			return;
	}
	if (!conn->dead &&
	    (conn->output.length > 0 || conn->tls_send_pending || conn->phase == CONN_TLS_WAIT)) {
		conn_flush(conn);
		if (conn_is_gone(conn))
			return;
	}

	if (!conn->dead && ((revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) || kick ||
	                    (conn->read_wants_out && (revents & G_IO_OUT)))) {
		conn_read(conn);
		if (conn_is_gone(conn))
			return;
	}

	if (!conn->dead && conn->closing && (conn_output_done(conn) || now >= conn->close_deadline))
		conn_die(conn, g_strdup("connection closed by the server"), TRUE);

	/* HUP and ERR are reported whatever we poll for: a connection that is
	 * not reading would spin. Everything we could do has been done. */
	if (!conn->dead && (revents & (G_IO_HUP | G_IO_ERR)) && !conn_can_read(conn) &&
	    conn->phase != CONN_HANDSHAKE)
		conn_socket_error(conn, revents);

	if (conn->dead) {
		if (!conn->closed_notified) {
			conn->closed_notified = TRUE;
			conn_set_deadline(conn, -1);
			/* Last: the owner may free the connection from here. */
			if (conn->callbacks.closed != NULL)
				conn->callbacks.closed(conn->user_data, conn->close_reason);
		}
		return;
	}
	conn_update(conn);
}

MagpieConn *
magpie_conn_new(int fd, const char *peer, const MagpieConnCallbacks *callbacks, gpointer user_data)
{
	MagpieConn *conn;
	int one = 1;

	g_return_val_if_fail(fd >= 0, NULL);
	g_return_val_if_fail(callbacks != NULL && callbacks->data != NULL, NULL);

	g_unix_set_fd_nonblocking(fd, TRUE, NULL);
	/* Stanzas are small and latency matters; we batch writes ourselves.
	 * Fails harmlessly on UNIX sockets. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	conn_loop_get();
	conn = g_new0(MagpieConn, 1);
	conn->ref_count = 1;
	conn->fd = fd;
	conn->peer = g_strdup(peer != NULL ? peer : "(unknown)");
	conn->callbacks = *callbacks;
	conn->user_data = user_data;
	conn->phase = CONN_PLAIN;
	conn->reading = TRUE;
	conn->handshake_timeout_ms = CONN_HANDSHAKE_TIMEOUT_MS;
	conn->last_read = g_get_monotonic_time();
	outq_init(&conn->output);
	conn_epoll_set(conn, G_IO_IN);
	return conn;
}

void
magpie_conn_free(MagpieConn *conn)
{
	if (conn == NULL)
		return;
	g_return_if_fail(!conn->freed);
	conn->freed = TRUE;
	conn_epoll_remove(conn);
	conn_set_deadline(conn, -1);
	conn_clear_output(conn);
	conn_clear_remainder(conn);
	if (conn->session != NULL) {
		gnutls_deinit(conn->session);
		conn->session = NULL;
	}
	g_clear_pointer(&conn->tls, magpie_tls_unref);
	g_clear_pointer(&conn->sni, g_free);
	g_clear_pointer(&conn->close_reason, g_free);
	g_clear_pointer(&conn->peer, g_free);
	if (conn->fd >= 0) {
		close(conn->fd);
		conn->fd = -1;
	}
	conn_unref(conn);
}

void
magpie_conn_start_tls(MagpieConn *conn, MagpieTls *tls)
{
	g_return_if_fail(conn != NULL);
	g_return_if_fail(tls != NULL);
	g_return_if_fail(conn->phase == CONN_PLAIN);

	if (conn->dead || conn->closing)
		return;
	conn->tls = magpie_tls_ref(tls);
	conn->phase = CONN_TLS_WAIT;
	conn->plain_left = conn->output_queued;
	/* Plaintext that arrived before the handshake can never be delivered
	 * as TLS data; the caller has seen it already. */
	conn_clear_remainder(conn);
	conn->kick = TRUE;
	conn_update(conn);
}

void
magpie_conn_set_handshake_timeout(MagpieConn *conn, guint timeout_ms)
{
	g_return_if_fail(conn != NULL);
	conn->handshake_timeout_ms = timeout_ms;
}

gboolean
magpie_conn_is_tls(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, FALSE);
	return conn->phase == CONN_TLS;
}

const char *
magpie_conn_tls_sni(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, NULL);
	return conn->phase == CONN_TLS ? conn->sni : NULL;
}

const char *
magpie_conn_tls_version(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, NULL);
	if (conn->phase != CONN_TLS || conn->session == NULL)
		return NULL;
	return gnutls_protocol_get_name(gnutls_protocol_get_version(conn->session));
}

gboolean
magpie_conn_tls_resumed(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, FALSE);
	if (conn->phase != CONN_TLS || conn->session == NULL)
		return FALSE;
	return gnutls_session_is_resumed(conn->session) != 0;
}

/* The GnuTLS binding for @type if this connection has one (RFC 9266 §3:
 * tls-exporter on TLS 1.2 only with the extended master secret; RFC 8446
 * §C.5: no tls-unique on TLS 1.3). Nothing is computed. */
static gboolean
conn_binding_type(MagpieConn *conn, const char *type, gnutls_channel_binding_t *cbtype)
{
	gboolean tls13;

	if (conn->phase != CONN_TLS || conn->session == NULL)
		return FALSE;
	tls13 = gnutls_protocol_get_version(conn->session) == GNUTLS_TLS1_3;
	if (g_str_equal(type, "tls-exporter")) {
		*cbtype = GNUTLS_CB_TLS_EXPORTER;
		return tls13 || gnutls_session_ext_master_secret_status(conn->session);
	}
	if (g_str_equal(type, "tls-server-end-point")) {
		*cbtype = GNUTLS_CB_TLS_SERVER_END_POINT;
		return TRUE;
	}
	if (g_str_equal(type, "tls-unique")) {
		*cbtype = GNUTLS_CB_TLS_UNIQUE;
		return !tls13;
	}
	return FALSE;
}

gboolean
magpie_conn_has_channel_binding(MagpieConn *conn, const char *type)
{
	gnutls_channel_binding_t cbtype;

	g_return_val_if_fail(conn != NULL, FALSE);
	g_return_val_if_fail(type != NULL, FALSE);
	return conn_binding_type(conn, type, &cbtype);
}

GBytes *
magpie_conn_channel_binding(MagpieConn *conn, const char *type)
{
	gnutls_channel_binding_t cbtype;
	gnutls_datum_t datum = { NULL, 0 };
	GBytes *bytes;

	g_return_val_if_fail(conn != NULL, NULL);
	g_return_val_if_fail(type != NULL, NULL);

	if (!conn_binding_type(conn, type, &cbtype))
		return NULL;
	/* tls-server-end-point hashes the certificate: parsed here, so only
	 * for a connection that uses it. */
	if (gnutls_session_channel_binding(conn->session, cbtype, &datum) < 0)
		return NULL;
	bytes = g_bytes_new(datum.data, datum.size);
	gnutls_free(datum.data);
	return bytes;
}

void
magpie_conn_write(MagpieConn *conn, const char *data, gsize len)
{
	struct iovec part = { (void *) data, len };

	g_return_if_fail(conn != NULL);
	g_return_if_fail(data != NULL || len == 0);

	magpie_conn_writev(conn, &part, 1);
}

/* Written out when the connection loop next runs: at the end of the
 * dispatch that queued it, or at once in the next loop pass. */
static void
conn_queued(MagpieConn *conn, gsize size)
{
	conn->output_queued += size;
	conn_queue(conn);
}

static void
gather(char *dst, const struct iovec *parts, guint n_parts)
{
	for (guint i = 0; i < n_parts; i++) {
		memcpy(dst, parts[i].iov_base, parts[i].iov_len);
		dst += parts[i].iov_len;
	}
}

void
magpie_conn_writev(MagpieConn *conn, const struct iovec *parts, guint n_parts)
{
	gsize size = 0;

	g_return_if_fail(conn != NULL);
	g_return_if_fail(parts != NULL || n_parts == 0);

	for (guint i = 0; i < n_parts; i++)
		size += parts[i].iov_len;
	if (size == 0 || conn->dead)
		return;
	if (size <= OUT_BUF_SIZE) {
		gather(outq_reserve(&conn->output, size), parts, n_parts);
	} else {
		char *data = g_malloc(size);
		OutItem *item = outq_push(&conn->output);

		gather(data, parts, n_parts);
		item->bytes = g_bytes_new_take(data, size);
	}
	conn_queued(conn, size);
}

void
magpie_conn_write_bytes(MagpieConn *conn, GBytes *bytes)
{
	gsize size;

	g_return_if_fail(conn != NULL);
	g_return_if_fail(bytes != NULL);

	size = g_bytes_get_size(bytes);
	if (size == 0 || conn->dead)
		return;
	if (size <= OUT_BUF_SIZE) {
		memcpy(outq_reserve(&conn->output, size), g_bytes_get_data(bytes, NULL), size);
	} else {
		OutItem *item = outq_push(&conn->output);

		item->bytes = g_bytes_ref(bytes);
	}
	conn_queued(conn, size);
}

gsize
magpie_conn_output_queued(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, 0);
	return conn->output_queued;
}

void
magpie_conn_set_reading(MagpieConn *conn, gboolean reading)
{
	g_return_if_fail(conn != NULL);

	reading = !!reading;
	if (conn->dead)
		return;
	if (reading && !conn->reading) {
		/* Deliver the remainder, or records GnuTLS already decrypted,
		 * from the loop: never from inside this call. */
		if (conn->remainder != NULL || conn->phase == CONN_TLS)
			conn->kick = TRUE;
	}
	conn->reading = reading;
	conn_update(conn);
}

void
magpie_conn_close(MagpieConn *conn, guint grace_ms)
{
	g_return_if_fail(conn != NULL);

	if (conn->dead || conn->closing)
		return;
	conn->closing = TRUE;
	conn_clear_remainder(conn);
	conn->close_deadline = g_get_monotonic_time() + (gint64) grace_ms * 1000;
	if (conn->phase == CONN_HANDSHAKE) {
		/* Nothing of ours can go out before the handshake ends. */
		conn_clear_output(conn);
	}
	conn->kick = TRUE;
	conn_update(conn);
}

const char *
magpie_conn_peer(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, NULL);
	return conn->peer;
}

gint64
magpie_conn_last_read(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, 0);
	return conn->last_read;
}

gsize
magpie_conn_buffer_size(MagpieConn *conn)
{
	g_return_val_if_fail(conn != NULL, 0);
	return conn->output_queued + conn->remainder_len;
}
