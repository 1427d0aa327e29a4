/* The XMPP stream parser: chunking, restricted XML, limits, pause/consumed,
 * reset, dictionary rotation, release/rebuild. */
#include <malloc.h>
#include <string.h>
#include <time.h>

#include "xmlstream.h"

#define HEADER                                                                                     \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                               \
	"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "       \
	"to='example.org' version='1.0' xml:lang='en'>"

typedef struct {
	GString *log;
	MagpieXmlStream *xs;
	guint stanzas;
	guint errors;
	char *condition;
	char *pause_on; /* pause after a stanza with this name */
	gboolean pause_on_start;
	guint starts;
	guint ends;
	gboolean paused; /* what a connection remembers after pausing */
} Collector;

static void
on_start(gpointer user_data, MagpieStanza *header, const char *default_ns)
{
	Collector *c = user_data;
	const char *name, *value;

	c->starts++;
	g_string_append_printf(c->log, "START ns=%s", default_ns ? default_ns : "(null)");
	for (guint i = 0; magpie_element_attr_iter(magpie_stanza_root(header), i, &name, &value);
	     i++)
		g_string_append_printf(c->log, " %s=%s", name, value);
	g_string_append_c(c->log, '\n');
	if (c->pause_on_start) {
		magpie_xml_stream_pause(c->xs);
		c->paused = TRUE;
	}
}

static void
on_stanza(gpointer user_data, MagpieStanza *stanza)
{
	Collector *c = user_data;

	c->stanzas++;
	/* parent "" = every namespace explicit, so the log shows them all */
	magpie_element_serialize(magpie_stanza_root(stanza), NULL, c->log);
	g_string_append_c(c->log, '\n');
	if (c->pause_on != NULL && strcmp(magpie_stanza_name(stanza), c->pause_on) == 0) {
		magpie_xml_stream_pause(c->xs);
		c->paused = TRUE;
	}
}

static void
on_end(gpointer user_data)
{
	Collector *c = user_data;

	c->ends++;
	g_string_append(c->log, "END\n");
}

static void
on_error(gpointer user_data, const char *condition, const char *text)
{
	Collector *c = user_data;

	c->errors++;
	g_free(c->condition);
	c->condition = g_strdup(condition);
	g_string_append_printf(c->log, "ERROR %s\n", condition);
}

static const MagpieXmlStreamCallbacks callbacks = {
	.stream_start = on_start,
	.stanza = on_stanza,
	.stream_end = on_end,
	.error = on_error,
};

static void
collector_init(Collector *c, const MagpieXmlStreamLimits *limits)
{
	memset(c, 0, sizeof(*c));
	c->log = g_string_new(NULL);
	c->xs = magpie_xml_stream_new(&callbacks, c, limits);
}

static void
collector_clear(Collector *c)
{
	magpie_xml_stream_free(c->xs);
	g_string_free(c->log, TRUE);
	g_free(c->condition);
	g_free(c->pause_on);
}

/* Feed in chunks of @chunk bytes (0 = random 1..5000), all consumed. */
static char *
parse_chunked(const char *data, gsize len, gsize chunk, const MagpieXmlStreamLimits *limits,
              guint *rotations_out)
{
	Collector c;
	char *log;

	collector_init(&c, limits);
	for (gsize off = 0; off < len;) {
		gsize n = chunk ? chunk : (gsize) g_test_rand_int_range(1, 5000);

		n = MIN(n, len - off);
		g_assert_cmpuint(magpie_xml_stream_feed(c.xs, data + off, n), ==, n);
		off += n;
	}
	if (rotations_out != NULL)
		*rotations_out = magpie_xml_stream_rotations(c.xs);
	log = g_strdup(c.log->str);
	collector_clear(&c);
	return log;
}

static GString *
build_stream(guint n, gboolean close)
{
	GString *s = g_string_new(HEADER);

	for (guint i = 0; i < n; i++) {
		switch (i % 5) {
		case 0:
			g_string_append_printf(
			        s,
			        "<message to='juliet@example.com/balcony' type='chat' id='m%u' "
			        "xml:lang='fr'><body>Wherefore art thou &amp; &lt;x&gt; "
			        "&#x41;&#66; \xc3\xa9\xe2\x82\xac</body><active "
			        "xmlns='http://jabber.org/protocol/chatstates'/></message>",
			        i);
			break;
		case 1:
			g_string_append_printf(s,
			                       "\n  <iq type='get' id='q%u' to='a&amp;b@x' "
			                       "title=\"it's\"><query xmlns='jabber:iq:roster' "
			                       "ver=''/></iq>",
			                       i);
			break;
		case 2:
			g_string_append_printf(
			        s,
			        "<presence><show>away</show><status>  spaced  "
			        "text\n</status><x xmlns='urn:a'><y:z xmlns:y='urn:b' "
			        "y:attr='v%u'>t<w/>u</y:z></x></presence> ",
			        i);
			break;
		case 3:
			g_string_append_printf(s, "<db:result to='a' from='b'>key%u</db:result>",
			                       i);
			break;
		default:
			g_string_append_printf(s,
			                       "<message><body><![CDATA[<raw> & stuff %u]]></body>"
			                       "<x xmlns=''>no ns</x></message>\r\n",
			                       i);
			break;
		}
	}
	if (close)
		g_string_append(s, "</stream:stream>");
	return s;
}

static void
test_basic(void)
{
	g_autoptr(GString) s = build_stream(5, TRUE);
	g_autofree char *log = parse_chunked(s->str, s->len, s->len, NULL, NULL);
	const char *expected =
	        "START ns=jabber:client to=example.org version=1.0 xml:lang=en\n"
	        "<message xmlns='jabber:client' to='juliet@example.com/balcony' type='chat' "
	        "id='m0' xml:lang='fr'><body>Wherefore art thou &amp; &lt;x&gt; AB "
	        "\xc3\xa9\xe2\x82\xac</body><active "
	        "xmlns='http://jabber.org/protocol/chatstates'/></message>\n"
	        "<iq xmlns='jabber:client' type='get' id='q1' to='a&amp;b@x' "
	        "title='it&apos;s'><query xmlns='jabber:iq:roster' ver=''/></iq>\n"
	        "<presence xmlns='jabber:client'><show>away</show><status>  spaced  "
	        "text\n</status><x xmlns='urn:a'><z xmlns='urn:b' xmlns:a0='urn:b' "
	        "a0:attr='v2'>t<w xmlns='urn:a'/>u</z></x></presence>\n"
	        "<result xmlns='jabber:server:dialback' to='a' from='b'>key3</result>\n"
	        "<message xmlns='jabber:client'><body>&lt;raw&gt; &amp; stuff 4</body><x "
	        "xmlns=''>no ns</x></message>\n"
	        "END\n";

	g_assert_cmpstr(log, ==, expected);
}

static void
test_chunking(void)
{
	g_autoptr(GString) s = build_stream(200, TRUE);
	g_autofree char *whole = parse_chunked(s->str, s->len, s->len, NULL, NULL);
	static const gsize sizes[] = { 1, 2, 3, 7, 56, 448, 3584, 4096, 4097, 10000 };

	g_assert_null(strstr(whole, "ERROR"));
	g_assert_nonnull(strstr(whole, "END\n"));
	for (guint i = 0; i < G_N_ELEMENTS(sizes); i++) {
		g_autofree char *log = parse_chunked(s->str, s->len, sizes[i], NULL, NULL);

		g_assert_cmpstr(log, ==, whole);
	}
	for (guint i = 0; i < 30; i++) {
		g_autofree char *log = parse_chunked(s->str, s->len, 0, NULL, NULL);

		g_assert_cmpstr(log, ==, whole);
	}
}

/* Feed @input (after an optional header) and expect @condition. */
static void
expect_error_full(const char *input, gsize len, const char *condition,
                  const MagpieXmlStreamLimits *limits, gsize chunk)
{
	Collector c;

	collector_init(&c, limits);
	for (gsize off = 0; off < len && c.errors == 0; off += chunk)
		magpie_xml_stream_feed(c.xs, input + off, MIN(chunk, len - off));
	if (g_strcmp0(c.condition, condition) != 0)
		g_error("expected %s, got %s for %.300s (chunk %zu); log:\n%s", condition,
		        c.condition, input + strlen(HEADER), chunk, c.log->str);
	g_assert_cmpuint(c.errors, ==, 1);
	/* nothing more after the error */
	g_assert_cmpuint(magpie_xml_stream_feed(c.xs, "<iq/>", 5), ==, 5);
	g_assert_cmpuint(c.errors, ==, 1);
	g_assert_false(magpie_xml_stream_at_boundary(c.xs));
	collector_clear(&c);
}

static void
expect_error(const char *input, const char *condition)
{
	expect_error_full(input, strlen(input), condition, NULL, 4096);
	expect_error_full(input, strlen(input), condition, NULL, 1);
}

static void
test_restricted_xml(void)
{
	const char *laughs =
	        "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
	        "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
	        "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
	        "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
	        "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"
	        "<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"
	        "<!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>"
	        "<!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>"
	        "<!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>"
	        "<!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>"
	        "]><stream:stream xmlns='jabber:client' "
	        "xmlns:stream='http://etherx.jabber.org/streams'><message><body>&lol9;</body>"
	        "</message>";

	expect_error(laughs, "restricted-xml");
	expect_error("<!DOCTYPE stream:stream SYSTEM 'http://evil/x.dtd'>" HEADER,
	             "restricted-xml");
	expect_error(HEADER "<!DOCTYPE x>", "not-well-formed");
	expect_error(HEADER "<message><?evil data?></message>", "restricted-xml");
	expect_error("<?xml version='1.0'?><?pi?>" HEADER, "restricted-xml");
	expect_error(HEADER "<message><!-- hi --></message>", "restricted-xml");
	expect_error(HEADER "<!-- between -->", "restricted-xml");
	expect_error(HEADER "<message><body>&foo;</body></message>", "restricted-xml");
	expect_error(HEADER "<message to='&xxe;'/>", "restricted-xml");
}

static void
test_not_well_formed(void)
{
	expect_error(HEADER "<message><body>\xff\xfe</body></message>", "not-well-formed");
	expect_error(HEADER "<message><body>\xc3(</body></message>", "not-well-formed");
	expect_error(HEADER "<message to='\xed\xa0\x80'/>", "not-well-formed"); /* surrogate */
	expect_error_full(HEADER "<message><body>a\0b</body></message>",
	                  sizeof(HEADER "<message><body>a\0b</body></message>") - 1,
	                  "not-well-formed", NULL, 4096);
	expect_error(HEADER "<message><body></message>", "not-well-formed");
	expect_error(HEADER "<foo:message/>", "not-well-formed"); /* unbound prefix */
	expect_error(HEADER "<?xml version='1.0'?>", "not-well-formed");
	expect_error(HEADER "hello", "not-well-formed");
	expect_error(HEADER "<iq/>stray text<iq/>", "not-well-formed");
	expect_error(HEADER "<message a='1' a='2'/>", "not-well-formed");
	expect_error(HEADER "<message>\x01</message>", "not-well-formed");
	expect_error("<?xml version='1.0' encoding='ISO-8859-1'?>" HEADER "<message><body>caf\xe9"
	             "</body></message>",
	             "unsupported-encoding");
	expect_error("<?xml version=\"1.0\" encoding=\"UTF-16\"?><stream:stream/>",
	             "unsupported-encoding");
	{
		/* UTF-16 with a byte order mark */
		const char *h = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
		GString *u16 = g_string_new_len("\xff\xfe", 2);

		for (const char *p = h; *p != '\0'; p++)
			g_string_append_len(u16, (const char[]){ *p, 0 }, 2);
		expect_error_full(u16->str, u16->len, "unsupported-encoding", NULL, 4096);
		expect_error_full(u16->str, u16->len, "unsupported-encoding", NULL, 1);
		expect_error_full(u16->str + 2, u16->len - 2, "not-well-formed", NULL, 4096);
		g_string_free(u16, TRUE);
	}
	expect_error("<stream xmlns='jabber:client'>", "invalid-namespace");
	expect_error("<stream:stream xmlns:stream='urn:wrong'>", "invalid-namespace");
	expect_error("<html xmlns='http://etherx.jabber.org/streams'>", "not-well-formed");
	expect_error("<html>", "not-well-formed");
	expect_error("GET / HTTP/1.1\r\n", "not-well-formed");

	/* a UTF-8 declaration is fine */
	{
		const char *ok = "<?xml version='1.0' encoding='utf-8'?><stream:stream "
		                 "xmlns:stream='http://etherx.jabber.org/streams'><iq/>";
		g_autofree char *log = parse_chunked(ok, strlen(ok), 1, NULL, NULL);

		g_assert_cmpstr(log, ==, "START ns=(null)\n<iq/>\n");
	}
}

static void
test_after_stream_end(void)
{
	Collector c;
	const char *data = HEADER "<iq/></stream:stream><iq type='x'/>";

	collector_init(&c, NULL);
	magpie_xml_stream_feed(c.xs, data, strlen(data));
	g_assert_cmpuint(c.ends, ==, 1);
	g_assert_cmpuint(c.stanzas, ==, 1);
	g_assert_cmpstr(c.condition, ==, "not-well-formed");
	collector_clear(&c);
}

static void
test_limits(void)
{
	MagpieXmlStreamLimits limits = { .max_stanza_size = 256 * 1024 };
	GString *s;

	/* depth: 32 levels below the root are fine, 33 are not */
	for (guint depth = 32; depth <= 40; depth += 8) {
		Collector c;

		s = g_string_new(HEADER);
		for (guint i = 0; i < depth; i++)
			g_string_append(s, "<a>");
		for (guint i = 0; i < depth; i++)
			g_string_append(s, "</a>");
		collector_init(&c, NULL);
		magpie_xml_stream_feed(c.xs, s->str, s->len);
		if (depth == 32) {
			g_assert_cmpuint(c.errors, ==, 0);
			g_assert_cmpuint(c.stanzas, ==, 1);
		} else {
			g_assert_cmpstr(c.condition, ==, "policy-violation");
		}
		collector_clear(&c);
		g_string_free(s, TRUE);
	}

	/* a 300 KiB body */
	s = g_string_new(HEADER "<message><body>");
	while (s->len < 300 * 1024)
		g_string_append(s, "0123456789abcdef");
	g_string_append(s, "</body></message>");
	expect_error_full(s->str, s->len, "policy-violation", &limits, 4096);
	expect_error_full(s->str, s->len, "policy-violation", &limits, 1);
	g_string_free(s, TRUE);

	/* many small children add up too */
	s = g_string_new(HEADER "<message>");
	while (s->len < 300 * 1024)
		g_string_append(s, "<x a='1'/>");
	g_string_append(s, "</message>");
	expect_error_full(s->str, s->len, "policy-violation", &limits, 4096);
	g_string_free(s, TRUE);

	/* 250 KiB is under the limit */
	{
		Collector c;

		s = g_string_new(HEADER "<message><body>");
		while (s->len < 250 * 1024)
			g_string_append(s, "0123456789abcdef");
		g_string_append(s, "</body></message>");
		collector_init(&c, &limits);
		magpie_xml_stream_feed(c.xs, s->str, s->len);
		g_assert_cmpuint(c.errors, ==, 0);
		g_assert_cmpuint(c.stanzas, ==, 1);
		collector_clear(&c);
		g_string_free(s, TRUE);
	}
}

/* A 1 MiB attribute value without a closing quote produces no SAX event:
 * the bytes-without-event budget must catch it soon after the limit. */
static void
test_no_event_budget(void)
{
	MagpieXmlStreamLimits limits = { .max_stanza_size = 64 * 1024 };
	Collector c;
	gsize fed = 0;
	char chunk[4096];

	memset(chunk, 'a', sizeof(chunk));
	collector_init(&c, &limits);
	magpie_xml_stream_feed(c.xs, HEADER "<message to='", strlen(HEADER "<message to='"));
	while (fed < 1024 * 1024 && c.errors == 0) {
		magpie_xml_stream_feed(c.xs, chunk, sizeof(chunk));
		fed += sizeof(chunk);
	}
	g_assert_cmpstr(c.condition, ==, "policy-violation");
	g_assert_cmpuint(fed, <=, 64 * 1024 + 2 * 4096);
	collector_clear(&c);

	/* same with a huge element name and 1-byte feeding */
	collector_init(&c, &limits);
	magpie_xml_stream_feed(c.xs, HEADER "<", strlen(HEADER "<"));
	for (fed = 0; fed < 1024 * 1024 && c.errors == 0; fed++)
		magpie_xml_stream_feed(c.xs, "a", 1);
	g_assert_cmpstr(c.condition, ==, "policy-violation");
	g_assert_cmpuint(fed, <=, 64 * 1024 + 64);
	collector_clear(&c);
}

/* Feed @data in @chunk-sized pieces, honouring a pause the way a
 * connection does: stop after the consumed count, and return the offset.
 * A stanza ending exactly at the end of a chunk consumes it all. */
static gsize
feed_until_pause(Collector *c, const char *data, gsize len, gsize chunk)
{
	for (gsize off = 0; off < len;) {
		gsize n = MIN(chunk, len - off);
		gsize used = magpie_xml_stream_feed(c->xs, data + off, n);

		off += used;
		g_assert_true(used == n || c->paused);
		if (c->paused) {
			c->paused = FALSE;
			return off;
		}
	}
	return len;
}

static void
test_pause_starttls(void)
{
	const char *head = "<stream:stream xmlns='jabber:client' "
	                   "xmlns:stream='http://etherx.jabber.org/streams' to='example.org' "
	                   "version='1.0'>";
	const char *tls = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
	g_autofree char *data = g_strconcat(head, tls, "<iq type='set' id='evil'/>", NULL);
	gsize expected = strlen(head) + strlen(tls);
	static const gsize chunks[] = { 1, 2, 5, 13, 100, 4096, 100000 };

	for (guint i = 0; i < G_N_ELEMENTS(chunks); i++) {
		Collector c;
		gsize consumed;

		collector_init(&c, NULL);
		c.pause_on = g_strdup("starttls");
		consumed = feed_until_pause(&c, data, strlen(data), chunks[i]);
		g_assert_cmpuint(consumed, ==, expected);
		g_assert_cmpuint(c.stanzas, ==, 1);
		/* the injected plaintext was not parsed */
		g_assert_null(strstr(c.log->str, "evil"));
		g_assert_true(magpie_xml_stream_at_boundary(c.xs));
		collector_clear(&c);
	}

	/* "<starttls/>" alone: everything consumed, no injection */
	{
		Collector c;
		g_autofree char *clean = g_strconcat(head, tls, NULL);

		collector_init(&c, NULL);
		c.pause_on = g_strdup("starttls");
		g_assert_cmpuint(magpie_xml_stream_feed(c.xs, clean, strlen(clean)), ==,
		                 strlen(clean));
		collector_clear(&c);
	}
}

/* Several stanzas in one chunk, pausing at each, the stanza ending in the
 * middle of an internal 4 KiB slice, beyond the first slice. */
static void
test_pause_exact(void)
{
	g_autoptr(GString) s = build_stream(300, TRUE);
	g_autofree char *whole = parse_chunked(s->str, s->len, s->len, NULL, NULL);
	static const gsize chunks[] = { 1, 3, 1000, 4096, 9000, 1 << 20 };

	for (guint k = 0; k < G_N_ELEMENTS(chunks); k++) {
		Collector c;
		gsize off = 0;
		guint pauses = 0;

		collector_init(&c, NULL);
		c.pause_on = g_strdup("iq");
		while (off < s->len) {
			gsize used = feed_until_pause(&c, s->str + off, s->len - off, chunks[k]);

			off += used;
			if (off < s->len) {
				/* consumed stops right after "</iq>" or "/>" of an iq */
				g_assert_true(g_str_has_suffix(c.log->str, "</iq>\n"));
				g_assert_true(s->str[off - 1] == '>');
				g_assert_true(strncmp(s->str + off - 5, "</iq>", 5) == 0);
				g_assert_true(magpie_xml_stream_at_boundary(c.xs));
				pauses++;
			}
		}
		g_assert_cmpuint(pauses, ==, 60);
		g_assert_cmpstr(c.log->str, ==, whole);
		collector_clear(&c);
	}
}

/* SASL success: pause, reset, feed the pipelined new header and stanza. */
static void
test_reset_refeed(void)
{
	const char *head = "<stream:stream xmlns='jabber:client' "
	                   "xmlns:stream='http://etherx.jabber.org/streams' to='example.org' "
	                   "version='1.0'>";
	g_autofree char *data = g_strconcat(
	        head,
	        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>",
	        "<stream:stream xmlns='jabber:client' "
	        "xmlns:stream='http://etherx.jabber.org/streams' to='example.org' id='2'>"
	        "<iq type='set' id='bind'/>",
	        NULL);
	static const gsize chunks[] = { 1, 7, 4096 };

	for (guint k = 0; k < G_N_ELEMENTS(chunks); k++) {
		Collector c;
		gsize off, len = strlen(data);

		collector_init(&c, NULL);
		c.pause_on = g_strdup("auth");
		off = feed_until_pause(&c, data, len, chunks[k]);
		g_assert_cmpuint(off, <, len);
		g_assert_true(g_str_has_prefix(data + off, "<stream:stream"));
		magpie_xml_stream_reset(c.xs);
		g_clear_pointer(&c.pause_on, g_free);
		off += feed_until_pause(&c, data + off, len - off, chunks[k]);
		g_assert_cmpuint(off, ==, len);
		g_assert_cmpuint(c.errors, ==, 0);
		g_assert_cmpuint(c.starts, ==, 2);
		g_assert_true(g_str_has_suffix(c.log->str,
		                               "START ns=jabber:client to=example.org id=2\n<iq "
		                               "xmlns='jabber:client' type='set' id='bind'/>\n"));
		collector_clear(&c);
	}

	/* reset also clears an error */
	{
		Collector c;

		collector_init(&c, NULL);
		magpie_xml_stream_feed(c.xs, "<junk>", 6);
		g_assert_cmpuint(c.errors, ==, 1);
		magpie_xml_stream_reset(c.xs);
		magpie_xml_stream_feed(c.xs, head, strlen(head));
		magpie_xml_stream_feed(c.xs, "<iq/>", 5);
		g_assert_cmpuint(c.errors, ==, 1);
		g_assert_cmpuint(c.stanzas, ==, 1);
		collector_clear(&c);
	}
}

/* A pause from stream_start, then the rest fed later (a pending hook). */
static void
test_pause_at_header(void)
{
	g_autoptr(GString) s = build_stream(10, TRUE);
	g_autofree char *whole = parse_chunked(s->str, s->len, s->len, NULL, NULL);
	static const gsize chunks[] = { 1, 7, 4096, 1 << 20 };

	for (guint k = 0; k < G_N_ELEMENTS(chunks); k++) {
		Collector c;
		gsize off;

		collector_init(&c, NULL);
		c.pause_on_start = TRUE;
		off = feed_until_pause(&c, s->str, s->len, chunks[k]);
		g_assert_cmpuint(off, ==, strlen(HEADER));
		g_assert_true(magpie_xml_stream_at_boundary(c.xs));
		c.pause_on_start = FALSE;
		g_assert_cmpuint(feed_until_pause(&c, s->str + off, s->len - off, chunks[k]), ==,
		                 s->len - off);
		g_assert_cmpstr(c.log->str, ==, whole);
		collector_clear(&c);
	}
}

static void
count_stanza(gpointer user_data, MagpieStanza *stanza)
{
	(*(guint *) user_data)++;
}

static gsize
heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static GString *
build_unique_stream(guint n)
{
	GString *s = g_string_new(HEADER);

	for (guint i = 0; i < n; i++)
		g_string_append_printf(
		        s, "<message><e%u xmlns='urn:u:%u' a%u='v'>x</e%u></message>", i, i, i, i);
	return s;
}

static void
test_dict_rotation(void)
{
	g_autoptr(GString) s = build_unique_stream(50000);
	MagpieXmlStreamLimits no_rotation = { .dict_rotate_threshold = G_MAXUINT };
	g_autofree char *reference = NULL;
	guint rotations = 0;
	gsize before, grown_rotating = 0, grown_plain = 0;

	reference = parse_chunked(s->str, s->len, 4096, &no_rotation, &rotations);
	g_assert_cmpuint(rotations, ==, 0);
	g_assert_null(strstr(reference, "ERROR"));

	for (guint k = 0; k < 4; k++) {
		g_autofree char *log =
		        parse_chunked(s->str, s->len, k == 0 ? 4096 : 0, NULL, &rotations);

		g_assert_cmpstr(log, ==, reference);
		/* 3 names per stanza, threshold 5000 */
		g_assert_cmpuint(rotations, >=, 25);
	}

	/* Memory: keep a stream alive at the end and compare heaps. */
	for (guint k = 0; k < 2; k++) {
		const MagpieXmlStreamCallbacks count_cb = { .stanza = count_stanza };
		guint count = 0;
		MagpieXmlStream *xs =
		        magpie_xml_stream_new(&count_cb, &count, k == 0 ? NULL : &no_rotation);
		gsize grown;

		before = heap_used();
		for (gsize off = 0; off < s->len; off += 4096)
			magpie_xml_stream_feed(xs, s->str + off, MIN(4096, s->len - off));
		grown = heap_used() > before ? heap_used() - before : 0;
		g_assert_cmpuint(count, ==, 50000);
		if (k == 0)
			grown_rotating = grown;
		else
			grown_plain = grown;
		magpie_xml_stream_free(xs);
	}
	g_test_message("heap kept by one stream after 50k unique names: %zu KiB rotating, "
	               "%zu KiB without rotation",
	               grown_rotating / 1024, grown_plain / 1024);
	if (grown_plain == 0) {
		/* mallinfo2() sees nothing under a sanitizer's allocator */
		g_test_message("heap not measurable here");
		return;
	}
	g_assert_cmpuint(grown_rotating, <, 1024 * 1024);
	g_assert_cmpuint(grown_plain, >, 2 * grown_rotating);
}

static void
test_release_rebuild(void)
{
	g_autoptr(GString) s = build_stream(40, TRUE);
	g_autofree char *whole = parse_chunked(s->str, s->len, s->len, NULL, NULL);
	static const gsize chunks[] = { 1, 17, 300, 1000 };

	for (guint k = 0; k < G_N_ELEMENTS(chunks); k++) {
		Collector c;
		guint released = 0;

		collector_init(&c, NULL);
		for (gsize off = 0; off < s->len; off += chunks[k]) {
			gsize n = MIN(chunks[k], s->len - off);

			g_assert_cmpuint(magpie_xml_stream_feed(c.xs, s->str + off, n), ==, n);
			released += magpie_xml_stream_at_boundary(c.xs);
			magpie_xml_stream_release(c.xs);
		}
		g_assert_cmpuint(c.starts, ==, 1);
		g_assert_cmpstr(c.log->str, ==, whole);
		if (released < (chunks[k] == 1 ? 40u : chunks[k] < 300 ? 1u : 0u))
			g_error("chunk %zu: never at a boundary; log %s", chunks[k], c.log->str);
		collector_clear(&c);
	}

	/* release inside a stanza is a no-op */
	{
		Collector c;

		collector_init(&c, NULL);
		magpie_xml_stream_feed(c.xs, HEADER "<message><body>he", strlen(HEADER) + 17);
		g_assert_false(magpie_xml_stream_at_boundary(c.xs));
		g_assert_false(magpie_xml_stream_release(c.xs));
		magpie_xml_stream_feed(c.xs, "llo</body></message><db:result/>", 32);
		g_assert_cmpuint(c.errors, ==, 0);
		g_assert_true(g_str_has_suffix(
		        c.log->str, "<message xmlns='jabber:client'><body>hello</body></message>\n"
		                    "<result xmlns='jabber:server:dialback'/>\n"));
		g_assert_true(magpie_xml_stream_at_boundary(c.xs));
		g_assert_true(magpie_xml_stream_release(c.xs));
		/* nothing left to free */
		g_assert_false(magpie_xml_stream_release(c.xs));
		g_assert_true(magpie_xml_stream_at_boundary(c.xs));
		magpie_xml_stream_feed(c.xs, "  <db:verify id='1'/>", 21);
		g_assert_true(g_str_has_suffix(
		        c.log->str, "<verify xmlns='jabber:server:dialback' id='1'/>\n"));
		collector_clear(&c);
	}
}

/* A released stream closed by its peer: "</stream:stream>" alone ends it
 * without a parser context; anything else goes through a rebuilt one, as
 * before, so a near miss is judged by libxml2. */
static void
test_release_close(void)
{
	static const struct {
		const char *input;
		gboolean ends;   /* stream_end called */
		gboolean errors; /* a parse error */
	} cases[] = {
		{ "</stream:stream>", TRUE, FALSE },
		{ "\r\n  </stream:stream >\n", TRUE, FALSE },
		{ "</stream:stream><message/>", TRUE, TRUE },
		{ "</stream:streamx>", FALSE, TRUE },
		{ "</stream>", FALSE, TRUE },
		{ "</stream:str", FALSE, FALSE },
		{ "</db:stream>", FALSE, TRUE },
		{ "x</stream:stream>", FALSE, TRUE },
		{ "<presence/></stream:stream>", TRUE, FALSE },
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		Collector c;

		collector_init(&c, NULL);
		magpie_xml_stream_feed(c.xs, HEADER "<presence/>", strlen(HEADER) + 11);
		g_assert_true(magpie_xml_stream_release(c.xs));
		magpie_xml_stream_feed(c.xs, cases[i].input, strlen(cases[i].input));
		if ((c.ends > 0) != cases[i].ends || (c.errors > 0) != cases[i].errors)
			g_error("%s: %u ends, %u errors; log %s", cases[i].input, c.ends, c.errors,
			        c.log->str);
		collector_clear(&c);
	}

	/* The fast path keeps no context: nothing to release afterwards, and
	 * the heap does not grow by one per stream. */
	{
		const guint n = 500;
		MagpieXmlStream **streams = g_new(MagpieXmlStream *, n);
		Collector c;
		gsize before;

		collector_init(&c, NULL);
		for (guint i = 0; i < n; i++) {
			streams[i] = magpie_xml_stream_new(&callbacks, &c, NULL);
			magpie_xml_stream_feed(streams[i], HEADER "<presence/>",
			                       strlen(HEADER) + 11);
			magpie_xml_stream_release(streams[i]);
		}
		before = heap_used();
		for (guint i = 0; i < n; i++) {
			magpie_xml_stream_feed(streams[i], "</stream:stream>", 16);
			g_assert_false(magpie_xml_stream_release(streams[i]));
		}
		g_assert_cmpuint(c.ends, ==, n);
		if (before > 0)
			g_assert_cmpuint(heap_used() - MIN(heap_used(), before), <, n * 256);
		for (guint i = 0; i < n; i++)
			magpie_xml_stream_free(streams[i]);
		g_free(streams);
		collector_clear(&c);
	}
}

static void
test_idle_memory(void)
{
	const guint n = 1000;
	MagpieXmlStream **streams = g_new(MagpieXmlStream *, n);
	Collector c;
	gsize before, live, released;

	collector_init(&c, NULL);
	before = heap_used();
	for (guint i = 0; i < n; i++) {
		streams[i] = magpie_xml_stream_new(&callbacks, &c, NULL);
		magpie_xml_stream_feed(streams[i], HEADER "<presence/>", strlen(HEADER) + 11);
	}
	live = heap_used() - before;
	for (guint i = 0; i < n; i++)
		magpie_xml_stream_release(streams[i]);
	released = heap_used() - before;
	g_test_message("heap per stream: %zu bytes with a context, %zu bytes released", live / n,
	               released / n);
	g_assert_cmpuint(released / n, <, 1024);
	for (guint i = 0; i < n; i++)
		magpie_xml_stream_free(streams[i]);
	g_free(streams);
	collector_clear(&c);
}

static gint64
cpu_time_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void
test_throughput(void)
{
	const MagpieXmlStreamCallbacks count_cb = { .stanza = count_stanza };
	const char *msg = "<message to='juliet@capulet.example/balcony' "
	                  "from='romeo@montague.example/orchard' type='chat' id='ktx72v49'>"
	                  "<body>Art thou not Romeo, and a Montague? Neither, fair saint, if "
	                  "either thee dislike. How camest thou hither, tell me, and "
	                  "wherefore?</body><active "
	                  "xmlns='http://jabber.org/protocol/chatstates'/></message>";
	const guint per_buffer = 10000;
	GString *buf = g_string_new(NULL);
	guint count = 0;
	MagpieXmlStream *xs = magpie_xml_stream_new(&count_cb, &count, NULL);
	gint64 t0, c0;
	double secs, cpu;
	guint rounds = g_test_perf() ? 20 : 5;

	for (guint i = 0; i < per_buffer; i++)
		g_string_append(buf, msg);
	magpie_xml_stream_feed(xs, HEADER, strlen(HEADER));
	t0 = g_get_monotonic_time();
	c0 = cpu_time_us();
	for (guint r = 0; r < rounds; r++) {
		for (gsize off = 0; off < buf->len; off += 4096)
			magpie_xml_stream_feed(xs, buf->str + off, MIN(4096, buf->len - off));
	}
	secs = (g_get_monotonic_time() - t0) / 1e6;
	cpu = (cpu_time_us() - c0) / 1e6;
	g_assert_cmpuint(count, ==, rounds * per_buffer);
	g_test_message("%zu-byte message in 4 KiB chunks: %.0f stanzas/s of CPU time "
	               "(%.1f MB/s), %.0f/s wall clock",
	               strlen(msg), count / cpu, count * strlen(msg) / cpu / 1e6, count / secs);
	magpie_xml_stream_free(xs);
	g_string_free(buf, TRUE);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/xmlstream/basic", test_basic);
	g_test_add_func("/xmlstream/chunking", test_chunking);
	g_test_add_func("/xmlstream/hostile/restricted-xml", test_restricted_xml);
	g_test_add_func("/xmlstream/hostile/not-well-formed", test_not_well_formed);
	g_test_add_func("/xmlstream/hostile/after-stream-end", test_after_stream_end);
	g_test_add_func("/xmlstream/hostile/limits", test_limits);
	g_test_add_func("/xmlstream/hostile/no-event-budget", test_no_event_budget);
	g_test_add_func("/xmlstream/pause/starttls", test_pause_starttls);
	g_test_add_func("/xmlstream/pause/exact", test_pause_exact);
	g_test_add_func("/xmlstream/pause/at-header", test_pause_at_header);
	g_test_add_func("/xmlstream/reset/refeed", test_reset_refeed);
	g_test_add_func("/xmlstream/dict-rotation", test_dict_rotation);
	g_test_add_func("/xmlstream/release-rebuild", test_release_rebuild);
	g_test_add_func("/xmlstream/release-close", test_release_close);
	g_test_add_func("/xmlstream/idle-memory", test_idle_memory);
	g_test_add_func("/xmlstream/throughput", test_throughput);
	return g_test_run();
}
