/* The load generator's stanza splitter and attribute reader, fed whole,
 * byte by byte and with hostile input. */
#include "loadgen.h"

#include <string.h>

static GPtrArray *got;
static char *fail_reason;

static void
on_ready(Conn *c)
{
	(void) c;
}

static void
on_failed(Conn *c, const char *why)
{
	(void) c;
	g_free(fail_reason);
	fail_reason = g_strdup(why);
}

static void
on_stanza(Conn *c, const char *d, gsize n)
{
	(void) c;
	g_ptr_array_add(got, g_strndup(d, n));
}

static const ConnEvents events = { on_ready, on_failed, on_stanza };
static ConnConfig cfg = { .events = &events, .epfd = -1 };

/* A connection that is past login, inside an open stream. */
static Conn *
ready_conn(void)
{
	Conn *c = conn_new(&cfg, 7, 0);

	c->state = ST_READY;
	c->depth = 1;
	if (got != NULL)
		g_ptr_array_unref(got);
	got = g_ptr_array_new_with_free_func(g_free);
	g_clear_pointer(&fail_reason, g_free);
	return c;
}

static const char *stream =
        "<message to='u1@bench.test' id='42' type='chat'><body>a &lt; b</body></message>"
        "<presence from=\"u2@bench.test/b\" to='u1@bench.test/b'><show>away</show></presence>"
        "<iq type='result' id='p'/>"
        "<message id='q' x='a>b/c' y=\"it's\"><body>/&gt;</body><x xmlns='y'/></message>"
        "\n  <presence/>";

static void
check_stream_stanzas(void)
{
	g_assert_cmpuint(got->len, ==, 5);
	g_assert_cmpstr(
	        got->pdata[0], ==,
	        "<message to='u1@bench.test' id='42' type='chat'><body>a &lt; b</body></message>");
	g_assert_cmpstr(got->pdata[2], ==, "<iq type='result' id='p'/>");
	g_assert_cmpstr(got->pdata[4], ==, "<presence/>");
	g_assert_null(fail_reason);
}

static void
test_whole(void)
{
	Conn *c = ready_conn();

	conn_feed(c, stream, strlen(stream));
	check_stream_stanzas();
	conn_free(c);
}

/* Every split point of the same input gives the same stanzas. */
static void
test_every_split(void)
{
	gsize len = strlen(stream), cut;

	for (cut = 1; cut < len; cut++) {
		Conn *c = ready_conn();

		conn_feed(c, stream, cut);
		conn_feed(c, stream + cut, len - cut);
		check_stream_stanzas();
		conn_free(c);
	}
}

static void
test_byte_by_byte(void)
{
	Conn *c = ready_conn();
	gsize i;

	for (i = 0; stream[i] != '\0'; i++)
		conn_feed(c, stream + i, 1);
	check_stream_stanzas();
	conn_free(c);
}

/* The server closing its stream fails the connection, and nothing after
 * it is read. */
static void
test_stream_end(void)
{
	Conn *c = ready_conn();
	const char *in = "<iq type='result' id='p'/></stream:stream><message id='1'/>";

	conn_feed(c, in, strlen(in));
	g_assert_cmpuint(got->len, ==, 1);
	g_assert_cmpstr(fail_reason, ==, "the server closed the stream");
	g_assert_cmpint(c->state, ==, ST_CLOSED);
	conn_free(c);
}

/* A stanza that never ends is kept, not lost or mis-split; garbage
 * without '<' is skipped. */
static void
test_unfinished_and_garbage(void)
{
	Conn *c = ready_conn();
	const char *in = "junk > / ' \" <message id='x'><body>never ends";

	conn_feed(c, in, strlen(in));
	g_assert_cmpuint(got->len, ==, 0);
	g_assert_null(fail_reason);
	conn_feed(c, "</body></message>", 17);
	g_assert_cmpuint(got->len, ==, 1);
	g_assert_cmpstr(got->pdata[0], ==, "<message id='x'><body>never ends</body></message>");
	conn_free(c);
}

/* A large stanza arriving in pieces is reassembled. */
static void
test_large(void)
{
	Conn *c = ready_conn();
	GString *big = g_string_new("<message id='big'><body>");
	gsize i;

	for (i = 0; i < 100000; i++)
		g_string_append_c(big, 'a' + i % 26);
	g_string_append(big, "</body></message>");
	for (i = 0; i < big->len; i += 4093)
		conn_feed(c, big->str + i, MIN(4093, big->len - i));
	g_assert_cmpuint(got->len, ==, 1);
	g_assert_cmpuint(strlen(got->pdata[0]), ==, big->len);
	g_string_free(big, TRUE);
	conn_free(c);
}

static void
test_attrs(void)
{
	const char *s =
	        "<message  from=\"a@b/c\"\n to='x@y' id='7' type='error'><body id='no'/></message>";
	const char *v;
	gsize vl;
	char *id = stanza_attr(s, strlen(s), "id");

	g_assert_cmpstr(id, ==, "7");
	g_free(id);
	g_assert_true(stanza_attr_span(s, strlen(s), "from", &v, &vl));
	g_assert_cmpmem(v, vl, "a@b/c", 5);
	g_assert_false(stanza_attr_span(s, strlen(s), "xml:lang", &v, &vl));
	/* Only the top element's attributes count. */
	g_assert_false(stanza_attr_span("<iq><x id='1'/></iq>", 20, "id", &v, &vl));
	/* Truncated and malformed tags. */
	g_assert_false(stanza_attr_span("<iq id='1", 9, "id", &v, &vl));
	g_assert_false(stanza_attr_span("<iq id=1>", 9, "id", &v, &vl));
	g_assert_false(stanza_attr_span("<iq id", 6, "id", &v, &vl));
	g_assert_true(stanza_is(s, strlen(s), "message"));
	g_assert_true(stanza_is("<stream:features>", 17, "features"));
	g_assert_false(stanza_is("<messages/>", 11, "message"));
	g_assert_false(stanza_is("<", 1, "message"));
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/loadgen/scan/whole", test_whole);
	g_test_add_func("/loadgen/scan/every-split", test_every_split);
	g_test_add_func("/loadgen/scan/byte-by-byte", test_byte_by_byte);
	g_test_add_func("/loadgen/scan/stream-end", test_stream_end);
	g_test_add_func("/loadgen/scan/unfinished-and-garbage", test_unfinished_and_garbage);
	g_test_add_func("/loadgen/scan/large", test_large);
	g_test_add_func("/loadgen/attrs", test_attrs);
	return g_test_run();
}
