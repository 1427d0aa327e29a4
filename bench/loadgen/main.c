/* loadgen: the benchmark's XMPP load generator (docs/performance.md).
 *
 *   loadgen --scenario login|messages|idle|presence [options]
 *
 * One process, one epoll set in a GLib main loop, connections from
 * several 127.0.0.x source addresses. It measures the server itself: the
 * CPU time (utime+stime from /proc) of the processes given with --pids
 * and --dbpids across each measured phase, and their PSS for idle
 * sessions. Each scenario prints one JSON line on stdout; progress goes
 * to stderr.
 */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib-unix.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- options ------------------------------------------------------------ */

static char *opt_host = "127.0.0.1";
static int opt_port = 5222;
static char *opt_domain = "bench.test";
static char *opt_password = "bench-pw";
static char *opt_mech = "SCRAM-SHA-1";
static char *opt_scenario;
static char *opt_label = "";
static char *opt_pids;
static char *opt_dbpids;
static int opt_sources = 200;
static int opt_first;
static int opt_users = 1000;
static int opt_concurrency = 50;
static double opt_duration = 10;
static int opt_rate;
static int opt_window = 1;
static char *opt_levels = "1000,5000,10000";
static double opt_settle = 15;
static int opt_clique_size = 101;
static int opt_rounds = 2;
static gboolean opt_echo;
static gboolean opt_verbose;

static GOptionEntry entries[] = {
	{ "scenario", 's', 0, G_OPTION_ARG_STRING, &opt_scenario,
	  "login, messages, idle or presence", "NAME" },
	{ "host", 0, 0, G_OPTION_ARG_STRING, &opt_host, "server address (127.0.0.1)", "IP" },
	{ "port", 'p', 0, G_OPTION_ARG_INT, &opt_port, "server port (5222)", "N" },
	{ "domain", 0, 0, G_OPTION_ARG_STRING, &opt_domain, "XMPP domain (bench.test)", "D" },
	{ "password", 0, 0, G_OPTION_ARG_STRING, &opt_password, "every account's password", "PW" },
	{ "mech", 0, 0, G_OPTION_ARG_STRING, &opt_mech, "PLAIN or SCRAM-SHA-1", "M" },
	{ "label", 0, 0, G_OPTION_ARG_STRING, &opt_label, "server name for the JSON", "S" },
	{ "pids", 0, 0, G_OPTION_ARG_STRING, &opt_pids, "server processes, comma separated",
	  "P,..." },
	{ "dbpids", 0, 0, G_OPTION_ARG_STRING, &opt_dbpids, "its database's processes", "P,..." },
	{ "sources", 0, 0, G_OPTION_ARG_INT, &opt_sources,
	  "source addresses 127.0.0.2 .. (200, so no address has more than 100 of 19k sessions; 0 "
	  "= any)",
	  "N" },
	{ "first", 0, 0, G_OPTION_ARG_INT, &opt_first, "first account index (u<first>)", "N" },
	{ "users", 'u', 0, G_OPTION_ARG_INT, &opt_users,
	  "accounts online (messages, presence) or cycled through (login)", "N" },
	{ "concurrency", 'c', 0, G_OPTION_ARG_INT, &opt_concurrency,
	  "logins in progress at once (50)", "N" },
	{ "duration", 'd', 0, G_OPTION_ARG_DOUBLE, &opt_duration, "seconds of each phase", "S" },
	{ "rate", 'r', 0, G_OPTION_ARG_INT, &opt_rate,
	  "messages: fixed-rate phase msg/s (0 = none); presence: updates/s", "N" },
	{ "window", 'w', 0, G_OPTION_ARG_INT, &opt_window,
	  "closed loop: messages in flight per user (1; 0 = no closed-loop phase)", "N" },
	{ "levels", 0, 0, G_OPTION_ARG_STRING, &opt_levels, "idle: session counts", "N,..." },
	{ "settle", 0, 0, G_OPTION_ARG_DOUBLE, &opt_settle,
	  "idle: seconds to wait before measuring", "S" },
	{ "clique-size", 0, 0, G_OPTION_ARG_INT, &opt_clique_size,
	  "presence: members of each clique", "N" },
	{ "rounds", 0, 0, G_OPTION_ARG_INT, &opt_rounds, "presence: updates per user", "N" },
	{ "echo", 0, 0, G_OPTION_ARG_NONE, &opt_echo,
	  "direct TLS to bench/tls-echo, messages come back to their sender", NULL },
	{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "log failures", NULL },
	{ NULL },
};

/* ---- the engine ------------------------------------------------------- */

static ConnConfig cfg;
static GArray *server_pids, *db_pids;
static GPtrArray *conns; /* by slot; NULL when closed */

typedef struct {
	double server, db, self;
	gint64 wall;
} Clock;

static double
self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static Clock
clock_now(void)
{
	Clock c = { proc_cpu_seconds(server_pids), proc_cpu_seconds(db_pids), self_cpu(),
		    g_get_monotonic_time() };
	return c;
}

static gboolean
on_epoll(int fd, GIOCondition cond, gpointer data)
{
	struct epoll_event ev[256];
	int n, i;

	(void) cond;
	(void) data;
	n = epoll_wait(fd, ev, G_N_ELEMENTS(ev), 0);
	for (i = 0; i < n; i++) {
		Conn *c = ev[i].data.ptr;

		if (c->state != ST_CLOSED)
			conn_io(c, ev[i].events);
	}
	conn_reap();
	return G_SOURCE_CONTINUE;
}

static gboolean
wake(gpointer data)
{
	(void) data;
	return G_SOURCE_CONTINUE;
}

/* Runs the main loop until done() or the timeout; returns done(). */
static gboolean
run_until(gboolean (*done)(void), double seconds)
{
	gint64 deadline = g_get_monotonic_time() + (gint64) (seconds * 1e6);
	guint t = g_timeout_add(50, wake, NULL);

	while (!done() && g_get_monotonic_time() < deadline)
		g_main_context_iteration(NULL, TRUE);
	g_source_remove(t);
	return done();
}

/* Runs the main loop until done(), for as long as progress() keeps
 * changing within every @quiet seconds, at most @max seconds: a slow
 * server still working through its queue gets the time it needs. */
static gboolean
run_while_progressing(gboolean (*done)(void), guint64 (*progress)(void), double quiet, double max)
{
	gint64 deadline = g_get_monotonic_time() + (gint64) (max * 1e6);

	while (!done() && g_get_monotonic_time() < deadline) {
		guint64 before = progress();

		if (run_until(done, quiet) || progress() == before)
			break;
	}
	return done();
}

static gboolean
never(void)
{
	return FALSE;
}

static void
sleep_loop(double seconds)
{
	run_until(never, seconds);
}

static int
cmp_u32(const void *a, const void *b)
{
	guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;

	return x < y ? -1 : x > y;
}

/* Percentile of microsecond samples, in milliseconds. */
static double
pct_ms(GArray *us, double p)
{
	guint i;

	if (us->len == 0)
		return 0;
	i = (guint) (p / 100.0 * (us->len - 1) + 0.5);
	return g_array_index(us, guint32, i) / 1000.0;
}

static void
sort_u32(GArray *a)
{
	qsort(a->data, a->len, sizeof(guint32), cmp_u32);
}

/* ---- holding sessions open (messages, idle, presence) -------------------- */

static struct {
	guint next, end; /* users still to log in: [next, end) */
	guint in_progress;
	guint ready, failed, dropped;
	GArray *latency;
} hold;

static char *first_failure;

static void
note_failure(Conn *c, const char *why)
{
	if (first_failure == NULL)
		first_failure = g_strdup_printf("u%u: %s", c->user, why);
	if (opt_verbose)
		g_printerr("loadgen: u%u: %s\n", c->user, why);
}

static void hold_next(void);

static void
hold_ready(Conn *c)
{
	hold.in_progress--;
	hold.ready++;
	g_array_append_val(hold.latency, (guint32){ (guint32) (c->ready_at - c->started) });
	hold_next();
}

static void
hold_failed(Conn *c, const char *why)
{
	note_failure(c, why);
	g_ptr_array_index(conns, c->index) = NULL;
	if (c->ready_at != 0) {
		hold.dropped++;
	} else {
		hold.in_progress--;
		hold.failed++;
		hold_next();
	}
	conn_close(c);
}

static void
hold_next(void)
{
	while (hold.next < hold.end && hold.in_progress < (guint) opt_concurrency) {
		guint slot = hold.next - opt_first;
		Conn *c = conn_new(&cfg, hold.next, slot);

		if (conns->len <= slot)
			g_ptr_array_set_size(conns, slot + 1);
		g_ptr_array_index(conns, slot) = c;
		hold.next++;
		hold.in_progress++;
		conn_start(c);
	}
}

static gboolean
hold_done(void)
{
	return hold.next >= hold.end && hold.in_progress == 0;
}

static guint64
hold_progress(void)
{
	return hold.ready + hold.failed;
}

/* Logs in users [opt_first + have, opt_first + want) and keeps them. */
static gboolean
hold_open(guint want)
{
	hold.end = opt_first + want;
	if (hold.next < (guint) opt_first)
		hold.next = opt_first;
	hold_next();
	run_while_progressing(hold_done, hold_progress, 30, 600);
	if (hold.failed > 0 || hold.ready < want) {
		g_printerr("loadgen: %u of %u sessions failed to log in (%s)\n", want - hold.ready,
		           want, first_failure ? first_failure : "timeout");
		return FALSE;
	}
	return TRUE;
}

static void
close_all(void)
{
	guint i;

	for (i = 0; i < conns->len; i++) {
		Conn *c = g_ptr_array_index(conns, i);

		if (c != NULL)
			conn_close(c);
		g_ptr_array_index(conns, i) = NULL;
	}
	conn_reap();
	sleep_loop(0.5);
}

static void
print_json(GString *j)
{
	g_string_append(j, "}\n");
	fputs(j->str, stdout);
	fflush(stdout);
}

static GString *
json_begin(const char *scenario)
{
	GString *j = g_string_new(NULL);

	g_string_append_printf(j, "{\"server\":\"%s\",\"scenario\":\"%s\"", opt_label, scenario);
	return j;
}

static void
json_cpu(GString *j, const Clock *a, const Clock *b)
{
	g_string_append_printf(j,
	                       ",\"wall_s\":%.3f,\"server_cpu_s\":%.3f,\"db_cpu_s\":%.3f,"
	                       "\"loadgen_cpu_s\":%.3f",
	                       (b->wall - a->wall) / 1e6, b->server - a->server, b->db - a->db,
	                       b->self - a->self);
}

/* ---- login ---------------------------------------------------------------- */

static struct {
	guint next_user;
	guint in_progress;
	guint done, failed;
	gboolean stopping;
	GArray *latency;
} login;

static void login_next(void);

static void
login_ready(Conn *c)
{
	login.in_progress--;
	login.done++;
	g_array_append_val(login.latency, (guint32){ (guint32) (c->ready_at - c->started) });
	/* A real client's first presence, then leave. */
	conn_send(c, "<presence/>", 11);
	conn_close(c);
	login_next();
}

static void
login_failed(Conn *c, const char *why)
{
	note_failure(c, why);
	login.in_progress--;
	login.failed++;
	conn_close(c);
	login_next();
}

static void
login_next(void)
{
	while (!login.stopping && login.in_progress < (guint) opt_concurrency) {
		Conn *c = conn_new(&cfg, opt_first + login.next_user, login.next_user);

		login.next_user = (login.next_user + 1) % opt_users;
		login.in_progress++;
		conn_start(c);
	}
}

static gboolean
login_idle(void)
{
	return login.in_progress == 0;
}

static int
scenario_login(void)
{
	static const ConnEvents ev = { login_ready, login_failed, NULL };
	Clock a, b;
	GString *j;

	cfg.events = &ev;
	cfg.presence = FALSE;
	login.latency = g_array_new(FALSE, FALSE, sizeof(guint32));
	a = clock_now();
	login_next();
	sleep_loop(opt_duration);
	login.stopping = TRUE;
	run_until(login_idle, 30);
	b = clock_now();
	sort_u32(login.latency);
	j = json_begin("login");
	g_string_append_printf(j,
	                       ",\"mech\":\"%s\",\"concurrency\":%d,\"logins\":%u,\"failed\":%u,"
	                       "\"logins_per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
	                       "\"server_cpu_ms_per_login\":%.3f,\"db_cpu_ms_per_login\":%.3f",
	                       opt_mech, opt_concurrency, login.done, login.failed,
	                       login.done / ((b.wall - a.wall) / 1e6), pct_ms(login.latency, 50),
	                       pct_ms(login.latency, 99),
	                       login.done ? (b.server - a.server) * 1000 / login.done : 0,
	                       login.done ? (b.db - a.db) * 1000 / login.done : 0);
	json_cpu(j, &a, &b);
	if (first_failure != NULL)
		g_string_append_printf(j, ",\"first_failure\":\"%s\"",
		                       g_strescape(first_failure, NULL));
	print_json(j);
	return login.failed == 0 && login.done > 0 ? 0 : 1;
}

/* ---- messages --------------------------------------------------------------- */

typedef struct {
	gint64 sent_at; /* 0 once received */
	guint32 from, to;
} Sent;

static guint64 phase_first_seq;

static struct {
	GArray *sent; /* Sent, by sequence number */
	guint64 delivered, errors, misrouted, unknown;
	guint64 late; /* delivered during a later phase than their own */
	gboolean closed_loop, sending;
	GArray *latency;
	GRand *rand;
	gint64 rate_start;
	guint64 rate_sent;
} msg;

static const char body_text[] = "The quick brown fox jumps over the lazy dog, benchmark payload.";

static void
send_message(guint from)
{
	Conn *c = g_ptr_array_index(conns, from);
	Sent s = { g_get_monotonic_time(), from, from };
	guint64 seq = msg.sent->len;

	if (c == NULL || c->state != ST_READY)
		return;
	if (!opt_echo) {
		do
			s.to = g_rand_int_range(msg.rand, 0, conns->len);
		while (s.to == from && conns->len > 1);
	}
	g_array_append_val(msg.sent, s);
	conn_sendf(c,
	           "<message to='u%u@%s' type='chat' id='%" G_GUINT64_FORMAT
	           "'><body>%s</body></message>",
	           opt_first + s.to, opt_domain, seq, body_text);
}

static void
msg_stanza(Conn *c, const char *d, gsize n)
{
	const char *v;
	gsize vl;
	char num[24];
	guint64 seq;
	Sent *s;

	if (!stanza_is(d, n, "message"))
		return;
	if (stanza_attr_span(d, n, "type", &v, &vl) && vl == 5 && memcmp(v, "error", 5) == 0) {
		msg.errors++;
		return;
	}
	if (!stanza_attr_span(d, n, "id", &v, &vl) || vl == 0 || vl >= sizeof num) {
		msg.unknown++;
		return;
	}
	memcpy(num, v, vl);
	num[vl] = '\0';
	seq = g_ascii_strtoull(num, NULL, 10);
	if (seq >= msg.sent->len) {
		msg.unknown++;
		return;
	}
	s = &g_array_index(msg.sent, Sent, seq);
	if (s->sent_at == 0) {
		msg.unknown++; /* a duplicate */
		return;
	}
	if (seq < phase_first_seq) {
		/* An earlier phase's message: it counts there as lost. */
		s->sent_at = 0;
		msg.late++;
		return;
	}
	if (c->index != s->to)
		msg.misrouted++;
	g_array_append_val(msg.latency,
	                   (guint32){ (guint32) (g_get_monotonic_time() - s->sent_at) });
	s->sent_at = 0;
	msg.delivered++;
	if (msg.closed_loop && msg.sending)
		send_message(s->from);
}

static void
msg_failed(Conn *c, const char *why)
{
	hold_failed(c, why);
}

static gboolean
msg_rate_tick(gpointer data)
{
	gint64 now = g_get_monotonic_time();
	guint64 due = (guint64) ((now - msg.rate_start) / 1e6 * opt_rate);

	(void) data;
	if (!msg.sending)
		return G_SOURCE_REMOVE;
	while (msg.rate_sent < due) {
		send_message(g_rand_int_range(msg.rand, 0, conns->len));
		msg.rate_sent++;
	}
	return G_SOURCE_CONTINUE;
}

static gboolean
msg_drained(void)
{
	return msg.delivered + msg.errors >= msg.sent->len - phase_first_seq;
}

static guint64
msg_progress(void)
{
	return msg.delivered + msg.errors;
}

/* One measured phase: rate 0 = closed loop with opt_window in flight. */
static gboolean
msg_phase(int rate, guint64 *lost_out)
{
	Clock a, b;
	GString *j;
	guint64 sent, lost;
	guint i, k;
	double secs;

	msg.delivered = msg.errors = msg.misrouted = msg.unknown = 0;
	g_array_set_size(msg.latency, 0);
	phase_first_seq = msg.sent->len;
	msg.sending = TRUE;
	msg.closed_loop = rate == 0;
	a = clock_now();
	if (rate == 0) {
		for (k = 0; k < (guint) opt_window; k++)
			for (i = 0; i < conns->len; i++)
				send_message(i);
	} else {
		msg.rate_start = g_get_monotonic_time();
		msg.rate_sent = 0;
		g_timeout_add(5, msg_rate_tick, NULL);
	}
	sleep_loop(opt_duration);
	msg.sending = FALSE;
	/* Every message of the phase, or nothing more for 10 s. */
	run_while_progressing(msg_drained, msg_progress, 10, 180);
	b = clock_now();
	sent = msg.sent->len - phase_first_seq;
	lost = sent > msg.delivered + msg.errors ? sent - msg.delivered - msg.errors : 0;
	*lost_out += lost;
	secs = (b.wall - a.wall) / 1e6;
	sort_u32(msg.latency);
	j = json_begin("messages");
	g_string_append_printf(
	        j,
	        ",\"mode\":\"%s\",\"users\":%u,\"target_rate\":%d,\"window\":%d,\"sent\":"
	        "%" G_GUINT64_FORMAT ",\"delivered\":%" G_GUINT64_FORMAT
	        ",\"lost\":%" G_GUINT64_FORMAT ",\"errors\":%" G_GUINT64_FORMAT
	        ",\"misrouted\":%" G_GUINT64_FORMAT
	        ",\"msgs_per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
	        "\"server_cpu_s_per_100k\":%.3f,\"db_cpu_s_per_100k\":%.3f,"
	        "\"loadgen_cpu_s_per_100k\":%.3f,\"dropped_sessions\":%u",
	        rate == 0 ? "closed-loop" : "fixed-rate", conns->len, rate,
	        rate == 0 ? opt_window : 0, sent, msg.delivered, lost, msg.errors, msg.misrouted,
	        msg.delivered / secs, pct_ms(msg.latency, 50), pct_ms(msg.latency, 99),
	        pct_ms(msg.latency, 100),
	        msg.delivered ? (b.server - a.server) * 1e5 / msg.delivered : 0,
	        msg.delivered ? (b.db - a.db) * 1e5 / msg.delivered : 0,
	        msg.delivered ? (b.self - a.self) * 1e5 / msg.delivered : 0, hold.dropped);
	json_cpu(j, &a, &b);
	print_json(j);
	g_printerr("loadgen: %s: %" G_GUINT64_FORMAT " delivered (%.0f/s), %" G_GUINT64_FORMAT
	           " lost\n",
	           rate == 0 ? "closed loop" : "fixed rate", msg.delivered, msg.delivered / secs,
	           lost);
	return lost == 0 && msg.errors == 0 && msg.misrouted == 0;
}

static int
scenario_messages(void)
{
	static const ConnEvents ev = { hold_ready, msg_failed, msg_stanza };
	guint64 lost = 0;
	gboolean ok = TRUE;

	cfg.events = &ev;
	cfg.presence = TRUE;
	msg.sent = g_array_sized_new(FALSE, FALSE, sizeof(Sent), 1 << 20);
	msg.latency = g_array_sized_new(FALSE, FALSE, sizeof(guint32), 1 << 20);
	msg.rand = g_rand_new_with_seed(4242);
	if (!hold_open(opt_users))
		return 1;
	g_printerr("loadgen: %u sessions online\n", hold.ready);
	sleep_loop(1);
	if (opt_rate > 0)
		ok &= msg_phase(opt_rate, &lost);
	if (opt_window > 0)
		ok &= msg_phase(0, &lost);
	close_all();
	return ok && hold.dropped == 0 ? 0 : 1;
}

/* ---- idle sessions ---------------------------------------------------------- */

static void
ignore_stanza(Conn *c, const char *d, gsize n)
{
	(void) c;
	(void) d;
	(void) n;
}

static int
scenario_idle(void)
{
	static const ConnEvents ev = { hold_ready, hold_failed, ignore_stanza };
	g_auto(GStrv) levels = g_strsplit(opt_levels, ",", -1);
	GString *j = json_begin("idle");
	guint64 prev_pss = 0, pss = 0, rss = 0;
	guint prev_n = 0, n = 0, i;
	gboolean ok = TRUE;
	guint64 base_pss, base_rss;

	cfg.events = &ev;
	cfg.presence = TRUE;
	base_pss = proc_pss_kb(server_pids, &base_rss);
	g_string_append_printf(j, ",\"base_pss_kb\":%" G_GUINT64_FORMAT ",\"levels\":[", base_pss);
	for (i = 0; levels[i] != NULL; i++) {
		guint want = (guint) g_ascii_strtoull(levels[i], NULL, 10);

		prev_n = n;
		prev_pss = pss;
		if (!hold_open(want)) {
			ok = FALSE;
			break;
		}
		g_printerr("loadgen: %u sessions, settling %.0f s\n", want, opt_settle);
		sleep_loop(opt_settle);
		n = want;
		pss = proc_pss_kb(server_pids, &rss);
		g_string_append_printf(j,
		                       "%s{\"sessions\":%u,\"pss_kb\":%" G_GUINT64_FORMAT
		                       ",\"rss_kb\":%" G_GUINT64_FORMAT "}",
		                       i ? "," : "", n, pss, rss);
		g_printerr("loadgen: %u sessions: PSS %" G_GUINT64_FORMAT
		           " KB, RSS %" G_GUINT64_FORMAT " KB\n",
		           n, pss, rss);
	}
	g_string_append_printf(j,
	                       "],\"kb_per_session\":%.2f,\"max_sessions\":%u,"
	                       "\"max_rss_kb\":%" G_GUINT64_FORMAT ",\"failed\":%u,\"dropped\":%u",
	                       /* signed: a server still returning memory from an
	                        * earlier load can shrink between levels */
	                       n > prev_n ? ((double) pss - (double) prev_pss) / (n - prev_n)
	                                  : (n ? ((double) pss - (double) base_pss) / n : 0),
	                       n, rss, hold.failed, hold.dropped);
	print_json(j);
	close_all();
	return ok && hold.dropped == 0 ? 0 : 1;
}

/* ---- presence ------------------------------------------------------------- */

static struct {
	guint64 delivered, self, sent;
	gboolean counting;
	guint next;
	guint64 due_sent;
	gint64 start;
} pres;

static void
pres_stanza(Conn *c, const char *d, gsize n)
{
	const char *v;
	gsize vl;
	char own[24];
	int ol;

	if (!pres.counting || !stanza_is(d, n, "presence"))
		return;
	ol = g_snprintf(own, sizeof own, "u%u@", c->user);
	if (stanza_attr_span(d, n, "from", &v, &vl) && vl >= (gsize) ol && memcmp(v, own, ol) == 0)
		pres.self++;
	else
		pres.delivered++;
}

static gboolean
pres_tick(gpointer data)
{
	guint64 total = (guint64) conns->len * opt_rounds;
	guint64 due = (guint64) ((g_get_monotonic_time() - pres.start) / 1e6 * opt_rate);

	(void) data;
	while (pres.sent < MIN(due, total)) {
		Conn *c = g_ptr_array_index(conns, pres.next);
		guint round = pres.sent / conns->len;

		if (c != NULL && c->state == ST_READY)
			conn_sendf(c, "<presence><show>%s</show><status>r%u</status></presence>",
			           round % 2 ? "chat" : "away", round);
		pres.sent++;
		pres.next = (pres.next + 1) % conns->len;
	}
	return pres.sent < total ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static guint64
pres_progress(void)
{
	return pres.delivered;
}

static gboolean
pres_drained(void)
{
	return pres.sent >= (guint64) conns->len * opt_rounds &&
	       pres.delivered >= pres.sent * (opt_clique_size - 1);
}

static int
scenario_presence(void)
{
	static const ConnEvents ev = { hold_ready, hold_failed, pres_stanza };
	Clock a, b;
	GString *j;
	guint64 expected, lost;

	cfg.events = &ev;
	cfg.presence = TRUE;
	if (opt_rate <= 0)
		opt_rate = 500;
	if (!hold_open(opt_users))
		return 1;
	g_printerr("loadgen: %u sessions online, letting the initial presence settle\n",
	           hold.ready);
	sleep_loop(3);
	pres.counting = TRUE;
	pres.start = g_get_monotonic_time();
	a = clock_now();
	g_timeout_add(5, pres_tick, NULL);
	run_until(pres_drained, (double) conns->len * opt_rounds / opt_rate + 5);
	run_while_progressing(pres_drained, pres_progress, 10, 180);
	b = clock_now();
	pres.counting = FALSE;
	expected = pres.sent * (opt_clique_size - 1);
	lost = expected > pres.delivered ? expected - pres.delivered : 0;
	j = json_begin("presence");
	g_string_append_printf(
	        j,
	        ",\"users\":%u,\"clique_size\":%d,\"updates\":%" G_GUINT64_FORMAT
	        ",\"delivered\":%" G_GUINT64_FORMAT ",\"expected\":%" G_GUINT64_FORMAT
	        ",\"lost\":%" G_GUINT64_FORMAT ",\"self\":%" G_GUINT64_FORMAT
	        ",\"presences_per_s\":%.1f,\"server_cpu_us_per_presence\":%.2f,"
	        "\"db_cpu_us_per_presence\":%.2f,\"dropped_sessions\":%u",
	        conns->len, opt_clique_size, pres.sent, pres.delivered, expected, lost, pres.self,
	        pres.delivered / ((b.wall - a.wall) / 1e6),
	        pres.delivered ? (b.server - a.server) * 1e6 / pres.delivered : 0,
	        pres.delivered ? (b.db - a.db) * 1e6 / pres.delivered : 0, hold.dropped);
	json_cpu(j, &a, &b);
	print_json(j);
	close_all();
	return lost == 0 && hold.dropped == 0 ? 0 : 1;
}

/* ---- setup -------------------------------------------------------------- */

static GArray *
parse_pids(const char *list)
{
	GArray *a = g_array_new(FALSE, FALSE, sizeof(int));
	g_auto(GStrv) parts = NULL;
	char **p;

	if (list == NULL)
		return a;
	parts = g_strsplit(list, ",", -1);
	for (p = parts; *p != NULL; p++) {
		int pid = atoi(*p);

		if (pid > 0)
			g_array_append_val(a, pid);
	}
	return a;
}

static void
setup_tls(void)
{
	const char *err;
	int r;

	gnutls_global_init();
	gnutls_certificate_allocate_credentials(&cfg.cred);
	/* The benchmark's certificate is self-signed: nothing to verify. */
	r = gnutls_priority_init(&cfg.priority, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", &err);
	if (r < 0) {
		g_printerr("loadgen: TLS priority: %s\n", gnutls_strerror(r));
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	g_autoptr(GOptionContext) ctx = g_option_context_new("- XMPP load generator");
	g_autoptr(GError) error = NULL;
	struct rlimit rl;
	int i, rc;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
		g_printerr("loadgen: %s\n", error->message);
		return 2;
	}
	if (opt_scenario == NULL) {
		g_printerr("loadgen: --scenario is required (login, messages, idle, presence)\n");
		return 2;
	}
	if (g_strcmp0(opt_mech, "PLAIN") == 0) {
		cfg.mech = MECH_PLAIN;
	} else if (g_strcmp0(opt_mech, "SCRAM-SHA-1") == 0) {
		cfg.mech = MECH_SCRAM_SHA1;
	} else {
		g_printerr("loadgen: --mech must be PLAIN or SCRAM-SHA-1\n");
		return 2;
	}
	if (opt_users <= 0 || opt_concurrency <= 0 || opt_clique_size < 2) {
		g_printerr("loadgen: --users, --concurrency and --clique-size must be positive\n");
		return 2;
	}
	/* As many descriptors as this process may have. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	server_pids = parse_pids(opt_pids);
	db_pids = parse_pids(opt_dbpids);
	conns = g_ptr_array_new();
	hold.latency = g_array_new(FALSE, FALSE, sizeof(guint32));
	setup_tls();
	cfg.host = opt_host;
	cfg.port = opt_port;
	cfg.domain = opt_domain;
	cfg.password = opt_password;
	cfg.echo = opt_echo;
	cfg.n_sources = MAX(opt_sources, 0);
	cfg.sources = g_new0(struct sockaddr_in, cfg.n_sources + 1);
	for (i = 0; i < opt_sources; i++) {
		g_autofree char *ip = g_strdup_printf("127.0.0.%d", 2 + i);

		cfg.sources[i].sin_family = AF_INET;
		inet_pton(AF_INET, ip, &cfg.sources[i].sin_addr);
	}
	cfg.epfd = epoll_create1(EPOLL_CLOEXEC);
	g_unix_fd_add(cfg.epfd, G_IO_IN, on_epoll, NULL);

	if (strcmp(opt_scenario, "login") == 0)
		rc = scenario_login();
	else if (strcmp(opt_scenario, "messages") == 0)
		rc = scenario_messages();
	else if (strcmp(opt_scenario, "idle") == 0)
		rc = scenario_idle();
	else if (strcmp(opt_scenario, "presence") == 0)
		rc = scenario_presence();
	else {
		g_printerr("loadgen: unknown scenario %s\n", opt_scenario);
		return 2;
	}
	if (rc != 0 && first_failure != NULL)
		g_printerr("loadgen: first failure: %s\n", first_failure);
	return rc;
}
