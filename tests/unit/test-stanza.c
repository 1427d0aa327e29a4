/* Stanza trees: build, serialize, escape, parse round trips, copies and the
 * cached serialization. */
#include <string.h>

#include <magpie/stanza.h>

#include "stanza-private.h"

static char *
to_string(MagpieStanza *stanza)
{
	GBytes *b = magpie_stanza_to_bytes(stanza);
	gsize len;
	const char *data = g_bytes_get_data(b, &len);

	return g_strndup(data, len);
}

static char *
serialize_ns(MagpieStanza *stanza, const char *stream_ns)
{
	GString *out = g_string_new(NULL);

	magpie_stanza_serialize(stanza, stream_ns, out);
	return g_string_free(out, FALSE);
}

static void
test_build_serialize(void)
{
	g_autoptr(MagpieStanza) st = magpie_stanza_new("message", MAGPIE_NS_CLIENT);
	MagpieElement *root = magpie_stanza_root(st);
	MagpieElement *body, *x;
	g_autofree char *s = NULL;
	g_autofree char *text = NULL;
	const char *name, *value;

	magpie_stanza_set_attr(st, "to", "juliet@example.com");
	magpie_stanza_set_attr(st, "type", "chat");
	magpie_element_set_attr(root, "xml:lang", "en");
	body = magpie_element_add_child(root, "body", NULL);
	magpie_element_add_text(body, "a < b & c > d \"'", -1);
	x = magpie_element_add_child(root, "x", "jabber:x:oob");
	magpie_element_set_attr(x, "q", "it's \"quoted\" <&>");
	magpie_element_add_child(x, "url", NULL);
	magpie_element_add_child(root, "empty", "");

	s = to_string(st);
	g_assert_cmpstr(s, ==,
	                "<message to='juliet@example.com' type='chat' xml:lang='en'>"
	                "<body>a &lt; b &amp; c &gt; d \"'</body>"
	                "<x xmlns='jabber:x:oob' q='it&apos;s &quot;quoted&quot; &lt;&amp;&gt;'>"
	                "<url/></x><empty xmlns=''/></message>");

	g_assert_cmpstr(magpie_stanza_name(st), ==, "message");
	g_assert_cmpstr(magpie_stanza_get_attr(st, "type"), ==, "chat");
	g_assert_cmpstr(magpie_element_get_attr(root, "xml:lang"), ==, "en");
	g_assert_null(magpie_stanza_get_attr(st, "from"));
	g_assert_cmpuint(magpie_element_count_children(root), ==, 3);
	g_assert_true(magpie_stanza_find_child(st, "x", "jabber:x:oob") == x);
	g_assert_null(magpie_stanza_find_child(st, "x", MAGPIE_NS_CLIENT));
	g_assert_true(magpie_stanza_find_child(st, NULL, "jabber:x:oob") == x);
	g_assert_true(magpie_stanza_find_child(st, "body", NULL) == body);
	g_assert_cmpstr(magpie_element_ns(body), ==, MAGPIE_NS_CLIENT);
	g_assert_cmpstr(magpie_element_ns(magpie_element_first_child(x)), ==, "jabber:x:oob");
	g_assert_true(magpie_element_first_child(root) == body);
	g_assert_true(magpie_element_next_sibling(body) == x);
	g_assert_true(magpie_element_stanza(x) == st);
	text = magpie_element_get_child_text(root, "body", NULL);
	g_assert_cmpstr(text, ==, "a < b & c > d \"'");
	g_assert_null(magpie_element_get_child_text(root, "subject", NULL));
	g_assert_true(magpie_element_attr_iter(root, 2, &name, &value));
	g_assert_cmpstr(name, ==, "xml:lang");
	g_assert_false(magpie_element_attr_iter(root, 3, &name, &value));

	/* remove an attribute and a child */
	magpie_stanza_set_attr(st, "type", NULL);
	magpie_element_remove_child(root, x);
	g_clear_pointer(&s, g_free);
	s = to_string(st);
	g_assert_cmpstr(s, ==,
	                "<message to='juliet@example.com' xml:lang='en'><body>a &lt; b &amp; c "
	                "&gt; d \"'</body><empty xmlns=''/></message>");
}

static void
test_root_namespace(void)
{
	g_autoptr(MagpieStanza) c = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
	g_autoptr(MagpieStanza) s = magpie_stanza_new("iq", MAGPIE_NS_SERVER);
	g_autoptr(MagpieStanza) o = magpie_stanza_new("result", "jabber:server:dialback");
	g_autoptr(MagpieStanza) d = magpie_stanza_new("presence", NULL);
	g_autofree char *a1 = NULL, *a2 = NULL, *a3 = NULL, *a4 = NULL, *a5 = NULL, *a6 = NULL;

	magpie_element_add_child(magpie_stanza_root(s), "error", NULL);
	a1 = serialize_ns(c, MAGPIE_NS_SERVER);
	a2 = serialize_ns(s, MAGPIE_NS_CLIENT);
	a3 = serialize_ns(o, MAGPIE_NS_SERVER);
	a4 = serialize_ns(o, "jabber:server:dialback");
	a5 = serialize_ns(c, "jabber:component:accept");
	a6 = serialize_ns(d, MAGPIE_NS_CLIENT);
	g_assert_cmpstr(a1, ==, "<iq/>");
	/* the children in the root's namespace follow the stream's default */
	g_assert_cmpstr(a2, ==, "<iq><error/></iq>");
	g_assert_cmpstr(a3, ==, "<result xmlns='jabber:server:dialback'/>");
	g_assert_cmpstr(a4, ==, "<result/>");
	g_assert_cmpstr(a5, ==, "<iq xmlns='jabber:client'/>");
	g_assert_cmpstr(a6, ==, "<presence/>");
}

static void
assert_round_trip(const char *xml, const char *expected)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieStanza) st = magpie_stanza_parse(xml, -1, MAGPIE_NS_CLIENT, &error);
	g_autoptr(MagpieStanza) again = NULL;
	g_autoptr(MagpieStanza) copy = NULL;
	g_autofree char *s1 = NULL, *s2 = NULL, *s3 = NULL;

	g_assert_no_error(error);
	s1 = to_string(st);
	if (expected != NULL)
		g_assert_cmpstr(s1, ==, expected);
	again = magpie_stanza_parse(s1, -1, MAGPIE_NS_CLIENT, &error);
	g_assert_no_error(error);
	s2 = to_string(again);
	g_assert_cmpstr(s1, ==, s2);
	copy = magpie_stanza_copy(st);
	s3 = to_string(copy);
	g_assert_cmpstr(s1, ==, s3);
}

static void
test_parse_round_trip(void)
{
	assert_round_trip(
	        "<message to='a&amp;b@x' id=\"it's\"><body>&lt;&amp;&gt;&quot;&apos;</body>"
	        "</message>",
	        "<message to='a&amp;b@x' id='it&apos;s'><body>&lt;&amp;&gt;\"'</body>"
	        "</message>");
	assert_round_trip("<iq type='get'><query xmlns='jabber:iq:roster'><item jid='x@y'>"
	                  "<group>G1</group></item></query></iq>",
	                  NULL);
	assert_round_trip("<message xml:lang='de'><body xml:lang='en'>\xe2\x82\xac &#x1F600; "
	                  "&#38;&#38;amp;</body></message>",
	                  "<message xml:lang='de'><body xml:lang='en'>\xe2\x82\xac "
	                  "\xf0\x9f\x98\x80 &amp;&amp;amp;</body></message>");
	assert_round_trip("<presence><p:x xmlns:p='urn:p' p:a='1' b='2'><p:y/><z xmlns='urn:z'/>"
	                  "</p:x></presence>",
	                  "<presence><x xmlns='urn:p' xmlns:a0='urn:p' a0:a='1' b='2'><y/>"
	                  "<z xmlns='urn:z'/></x></presence>");
	assert_round_trip("<message>\n  <body>  spaced\ttext\r\n</body>\n</message>",
	                  "<message>\n  <body>  spaced\ttext\n</body>\n</message>");
	assert_round_trip("<iq xmlns='jabber:server'><x xmlns=''><y/></x></iq>", NULL);
	assert_round_trip("<message><body><![CDATA[<b>&</b>]]></body></message>",
	                  "<message><body>&lt;b&gt;&amp;&lt;/b&gt;</body></message>");
	assert_round_trip("<x to='&#60;&#62;&#34;&#39;&#9;&#10;&#13;'/>",
	                  "<x to='&lt;&gt;&quot;&apos;&#9;&#10;&#13;'/>");
	assert_round_trip("<x to='a\tb\nc'>&#13;</x>", "<x to='a b c'>&#13;</x>");
}

static void
test_parse_errors(void)
{
	static const char *const bad[] = {
		"",
		"   ",
		"<a>",
		"<a></b>",
		"<a/><b/>",
		"<a/>junk",
		"junk<a/>",
		"<!DOCTYPE a><a/>",
		"<a><!-- c --></a>",
		"<a><?pi?></a>",
		"<a>&ent;</a>",
		"<a>\xff</a>",
		"<p:a/>",
		"<?xml version='1.0'?><a/>",
	};

	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) error = NULL;
		MagpieStanza *st = magpie_stanza_parse(bad[i], -1, MAGPIE_NS_CLIENT, &error);

		if (st != NULL)
			g_error("'%s' parsed", bad[i]);
		g_assert_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_PARSE);
	}
	{
		g_autoptr(GError) error = NULL;
		g_autoptr(MagpieStanza) st = magpie_stanza_parse("  <a/>\n ", -1, NULL, &error);

		g_assert_no_error(error);
		g_assert_cmpstr(magpie_element_ns(magpie_stanza_root(st)), ==, "");
	}
	{
		g_autoptr(GError) error = NULL;
		g_autoptr(MagpieStanza) st =
		        magpie_stanza_parse("<a/>ignored", 4, "jabber:server", &error);

		g_assert_no_error(error);
		g_assert_cmpstr(magpie_element_ns(magpie_stanza_root(st)), ==, "jabber:server");
	}
}

static void
test_cached_bytes(void)
{
	g_autoptr(MagpieStanza) st =
	        magpie_stanza_parse("<message id='1'><body>hi</body><x xmlns='urn:x'/></message>",
	                            -1, MAGPIE_NS_CLIENT, NULL);
	MagpieElement *root = magpie_stanza_root(st);
	MagpieElement *body = magpie_stanza_find_child(st, "body", NULL);
	g_autoptr(MagpieStanza) other = magpie_stanza_new("y", "urn:y");
	GBytes *b1, *b2;
	g_autofree char *s = NULL;

	b1 = magpie_stanza_to_bytes(st);
	g_assert_true(magpie_stanza_to_bytes(st) == b1);

	/* each kind of mutation, even deep in the tree, drops the cache */
	magpie_stanza_set_attr(st, "id", "2");
	b2 = magpie_stanza_to_bytes(st);
	g_assert_nonnull(g_strstr_len(g_bytes_get_data(b2, NULL), g_bytes_get_size(b2), "'2'"));

	magpie_element_add_text(body, " there", -1);
	s = to_string(st);
	g_assert_nonnull(strstr(s, "<body>hi there</body>"));
	g_clear_pointer(&s, g_free);

	magpie_element_set_attr(body, "a", "b");
	s = to_string(st);
	g_assert_nonnull(strstr(s, "<body a='b'>"));
	g_clear_pointer(&s, g_free);

	magpie_element_add_child(body, "deep", NULL);
	s = to_string(st);
	g_assert_nonnull(strstr(s, "<deep/></body>"));
	g_clear_pointer(&s, g_free);

	magpie_element_append_copy(root, magpie_stanza_root(other));
	s = to_string(st);
	g_assert_nonnull(strstr(s, "<y xmlns='urn:y'/></message>"));
	g_clear_pointer(&s, g_free);

	magpie_element_remove_child(root, magpie_stanza_find_child(st, "x", NULL));
	s = to_string(st);
	g_assert_cmpstr(s, ==,
	                "<message id='2'><body a='b'>hi there<deep/></body><y "
	                "xmlns='urn:y'/></message>");
}

static void
test_copy(void)
{
	g_autoptr(MagpieStanza) src = magpie_stanza_parse(
	        "<message from='a@b/c'><body>text</body><x xmlns='urn:x' k='v'><y>t</y></x>"
	        "</message>",
	        -1, MAGPIE_NS_CLIENT, NULL);
	g_autoptr(MagpieStanza) copy = magpie_stanza_copy(src);
	g_autoptr(MagpieStanza) dst = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
	g_autofree char *a = NULL, *b = NULL, *c = NULL;
	MagpieElement *copied;

	/* independent trees */
	magpie_stanza_set_attr(copy, "from", "z@z");
	a = to_string(src);
	b = to_string(copy);
	g_assert_cmpstr(a, !=, b);
	g_assert_nonnull(strstr(a, "a@b/c"));

	/* append_copy across stanzas, keeping namespaces */
	copied = magpie_element_append_copy(magpie_stanza_root(dst),
	                                    magpie_stanza_find_child(src, "x", "urn:x"));
	magpie_element_append_copy(magpie_stanza_root(dst), magpie_stanza_root(src));
	g_assert_true(magpie_element_stanza(copied) == dst);
	g_clear_pointer(&src, magpie_stanza_unref); /* the copy must not depend on it */
	c = to_string(dst);
	g_assert_cmpstr(c, ==,
	                "<iq><x xmlns='urn:x' k='v'><y>t</y></x><message from='a@b/c'>"
	                "<body>text</body><x xmlns='urn:x' k='v'><y>t</y></x></message></iq>");
}

static void
test_refcount_and_big(void)
{
	MagpieStanza *st = magpie_stanza_new("message", NULL);
	MagpieElement *root = magpie_stanza_root(st);
	g_autofree char *big = g_strnfill(100000, 'x');
	g_autofree char *s = NULL;
	g_autofree char *text = NULL;

	magpie_stanza_ref(st);
	magpie_stanza_unref(st);
	for (int i = 0; i < 1000; i++) {
		MagpieElement *c = magpie_element_add_child(root, "item", "urn:many");

		magpie_element_set_attr(c, "n", "1");
		magpie_element_set_attr(c, "n", "2"); /* replaced, not duplicated */
	}
	magpie_element_add_text(magpie_element_add_child(root, "body", NULL), big, -1);
	text = magpie_element_get_child_text(root, "body", NULL);
	g_assert_cmpuint(strlen(text), ==, 100000);
	s = to_string(st);
	g_assert_cmpuint(strlen(s), >, 100000 + 1000 * 20);
	g_assert_nonnull(strstr(s, "<item xmlns='urn:many' n='2'/><item xmlns='urn:many' n='2'/>"));
	magpie_stanza_unref(st);
}

static void
test_invalid_input_sanitized(void)
{
	g_autoptr(MagpieStanza) st = magpie_stanza_new("message", NULL);
	MagpieElement *body = magpie_element_add_child(magpie_stanza_root(st), "body", NULL);
	g_autofree char *s = NULL;
	g_autoptr(MagpieStanza) again = NULL;
	g_autoptr(GError) error = NULL;

	/* Modules may pass bad UTF-8 or control characters: the output must
	 * still be well-formed XML. */
	magpie_element_add_text(body,
	                        "a\xff"
	                        "b\x01"
	                        "c",
	                        -1);
	magpie_stanza_set_attr(st, "id", "\xc3(\x02");
	s = to_string(st);
	again = magpie_stanza_parse(s, -1, MAGPIE_NS_CLIENT, &error);
	g_assert_no_error(error);
	g_assert_nonnull(again);
}

static void
test_speed(void)
{
	const char *msg = "<message to='juliet@capulet.example/balcony' "
	                  "from='romeo@montague.example/orchard' type='chat' id='ktx72v49'>"
	                  "<body>Art thou not Romeo, and a Montague? Neither, fair saint, if "
	                  "either thee dislike.</body><active "
	                  "xmlns='http://jabber.org/protocol/chatstates'/></message>";
	g_autoptr(MagpieStanza) st = magpie_stanza_parse(msg, -1, MAGPIE_NS_CLIENT, NULL);
	const int n = 200000;
	gint64 t0 = g_get_monotonic_time();
	GString *out = g_string_sized_new(512);
	double secs;

	for (int i = 0; i < n; i++) {
		g_string_truncate(out, 0);
		magpie_stanza_serialize(st, MAGPIE_NS_CLIENT, out);
	}
	secs = (g_get_monotonic_time() - t0) / 1e6;
	g_test_message("serialize: %.0f stanzas/s", n / secs);
	t0 = g_get_monotonic_time();
	for (int i = 0; i < n; i++)
		magpie_stanza_unref(magpie_stanza_copy(st));
	secs = (g_get_monotonic_time() - t0) / 1e6;
	g_test_message("copy: %.0f stanzas/s", n / secs);
	g_string_free(out, TRUE);
}

/* Changing only the root's 'to' splices the new value into the cached
 * bytes; the result must always equal a fresh serialization. */
static void
assert_same_as_fresh(MagpieStanza *st)
{
	g_autofree char *cached = to_string(st);
	g_autoptr(MagpieStanza) copy = magpie_stanza_copy(st);
	g_autofree char *fresh = to_string(copy);

	g_assert_cmpstr(cached, ==, fresh);
}

/* What the router does for each address of a broadcast: the internal
 * setter (JID strings, valid UTF-8) splices like the public one. */
static void
test_set_to_internal(void)
{
	g_autoptr(MagpieStanza) st =
	        magpie_stanza_parse("<presence from='a@x/r' to='b@x'><show>away</show></presence>",
	                            -1, MAGPIE_NS_CLIENT, NULL);
	static const char *const values[] = { "c@x", "quote'\"&<>@x", "", "d@x/\xc3\xa9" };

	g_assert_nonnull(st);
	assert_same_as_fresh(st);
	for (guint i = 0; i < G_N_ELEMENTS(values); i++) {
		guint gen = magpie_stanza_generation(st);

		magpie_stanza_set_to_internal(st, values[i]);
		g_assert_cmpuint(magpie_stanza_generation(st), !=, gen);
		g_assert_cmpstr(magpie_stanza_get_attr(st, "to"), ==, values[i]);
		/* the pieces magpie_session_send() copies out: the bytes, or
		 * nothing when the value needs escaping */
		struct iovec parts[3];
		g_autoptr(MagpieStanza) copy = magpie_stanza_copy(st);
		g_autofree char *fresh = to_string(copy);
		if (magpie_stanza_splice_parts_internal(st, parts)) {
			g_autoptr(GString) joined = g_string_new(NULL);

			for (guint j = 0; j < G_N_ELEMENTS(parts); j++)
				g_string_append_len(joined, parts[j].iov_base, parts[j].iov_len);
			g_assert_cmpstr(joined->str, ==, fresh);
		} else {
			g_assert_nonnull(strpbrk(values[i], "'\"&<>"));
		}
		assert_same_as_fresh(st);
		/* serialized (cached) now: no pieces */
		g_assert_false(magpie_stanza_splice_parts_internal(st, parts));
	}
	/* a stanza never serialized has no pieces either */
	g_autoptr(MagpieStanza) unsent = magpie_stanza_copy(st);
	struct iovec none[3];
	magpie_stanza_set_to_internal(unsent, "f@x");
	g_assert_false(magpie_stanza_splice_parts_internal(unsent, none));
	/* without a 'to' yet: added */
	g_autoptr(MagpieStanza) bare = magpie_stanza_new("presence", MAGPIE_NS_CLIENT);
	assert_same_as_fresh(bare);
	magpie_stanza_set_to_internal(bare, "e@x");
	g_assert_cmpstr(magpie_stanza_get_attr(bare, "to"), ==, "e@x");
	assert_same_as_fresh(bare);
}

/* A session's stored presence: the same stanza in less memory, and still
 * a stanza like any other (modules decorate it later). */
static void
test_copy_compact(void)
{
	g_autoptr(MagpieStanza) st = magpie_stanza_parse(
	        "<presence from='a@x/r' xml:lang='en'><show>away</show><status>out &amp; "
	        "about</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' "
	        "hash='sha-1' node='n' ver='v'/></presence>",
	        -1, MAGPIE_NS_CLIENT, NULL);
	g_autoptr(GString) big = g_string_new("<presence><status>");

	g_assert_nonnull(st);
	g_autofree char *want = to_string(st);
	g_autoptr(MagpieStanza) compact = magpie_stanza_copy_compact_internal(st);
	g_autofree char *got = to_string(compact);
	g_assert_cmpstr(got, ==, want);
	g_assert_cmpuint(magpie_stanza_arena_size(compact), <, magpie_stanza_arena_size(st));
	g_autoptr(MagpieStanza) plain =
	        magpie_stanza_parse("<presence from='a@x/r'/>", -1, MAGPIE_NS_CLIENT, NULL);
	g_autoptr(MagpieStanza) plain_compact = magpie_stanza_copy_compact_internal(plain);
	g_assert_cmpuint(magpie_stanza_arena_size(plain_compact), <, 200);
	assert_same_as_fresh(plain_compact);
	assert_same_as_fresh(compact);

	/* changed afterwards: the arena grows as for any stanza */
	MagpieElement *x =
	        magpie_element_add_child(magpie_stanza_root(compact), "x", "vcard-temp:x:update");
	magpie_element_add_text(magpie_element_add_child(x, "photo", NULL), "0123456789abcdef", -1);
	magpie_stanza_set_attr(compact, "id", "a-much-longer-attribute-value-than-before");
	assert_same_as_fresh(compact);
	g_autofree char *changed = to_string(compact);
	g_assert_nonnull(strstr(changed, "<photo>0123456789abcdef</photo>"));

	/* bigger than one allocation: copied, still equal */
	for (int i = 0; i < 500; i++)
		g_string_append(big, "status text ");
	g_string_append(big, "</status></presence>");
	g_autoptr(MagpieStanza) large = magpie_stanza_parse(big->str, -1, MAGPIE_NS_CLIENT, NULL);
	g_assert_nonnull(large);
	g_autoptr(MagpieStanza) large_copy = magpie_stanza_copy_compact_internal(large);
	g_autofree char *a = to_string(large);
	g_autofree char *b = to_string(large_copy);
	g_assert_cmpstr(a, ==, b);
}

static void
test_spliced_to(void)
{
	g_autoptr(MagpieStanza) st = magpie_stanza_parse(
	        "<presence from='a@x/r' to='b@x' xmlns:q='urn:q' q:to='keep'>"
	        "<show>away</show><status>b&amp;c &lt;d&gt; 'e'</status></presence>",
	        -1, MAGPIE_NS_CLIENT, NULL);
	static const char *const values[] = {
		"c@x",
		"",
		"a much longer address@example.org/with resource",
		"quote'\"&<>\t\n\r",
		"d\x01\x1f@x",
		"\xff\xfe not UTF-8",
		"e@x",
	};

	g_assert_nonnull(st);
	assert_same_as_fresh(st);
	for (guint i = 0; i < G_N_ELEMENTS(values); i++) {
		guint gen = magpie_stanza_generation(st);

		magpie_stanza_set_attr(st, "to", values[i]);
		g_assert_cmpuint(magpie_stanza_generation(st), !=, gen);
		assert_same_as_fresh(st);
		/* twice in a row without serializing in between */
		magpie_stanza_set_attr(st, "to", values[(i + 1) % G_N_ELEMENTS(values)]);
		magpie_stanza_set_attr(st, "to", values[i]);
		assert_same_as_fresh(st);
	}
	g_autofree char *s = to_string(st);
	g_assert_nonnull(strstr(s, "to='e@x'"));
	g_assert_nonnull(strstr(s, ":to='keep'"));

	/* any other change after a splice: full serialization again */
	magpie_element_add_text(magpie_stanza_find_child(st, "show", NULL), "!", -1);
	magpie_stanza_set_attr(st, "to", "f@x");
	assert_same_as_fresh(st);
	g_clear_pointer(&s, g_free);
	s = to_string(st);
	g_assert_nonnull(strstr(s, "<show>away!</show>"));

	/* removing 'to', then adding it back (a new attribute, at the end) */
	magpie_stanza_set_attr(st, "to", NULL);
	assert_same_as_fresh(st);
	g_clear_pointer(&s, g_free);
	s = to_string(st);
	g_assert_null(strstr(s, " to="));
	magpie_stanza_set_attr(st, "to", "g@x");
	assert_same_as_fresh(st);
	magpie_stanza_set_attr(st, "to", "h@x");
	assert_same_as_fresh(st);

	/* 'to' on a child is not the stanza's */
	magpie_element_set_attr(magpie_stanza_find_child(st, "show", NULL), "to", "i@x");
	assert_same_as_fresh(st);

	/* a stanza whose bytes were made without 'to' */
	g_autoptr(MagpieStanza) bare = magpie_stanza_new("presence", MAGPIE_NS_CLIENT);
	assert_same_as_fresh(bare);
	magpie_stanza_set_attr(bare, "to", "j@x");
	assert_same_as_fresh(bare);
	magpie_stanza_set_attr(bare, "to", "k@x");
	assert_same_as_fresh(bare);
	g_clear_pointer(&s, g_free);
	s = to_string(bare);
	g_assert_cmpstr(s, ==, "<presence to='k@x'/>");

	g_assert_false(magpie_stanza_is_shared(bare));
	magpie_stanza_ref(bare);
	g_assert_true(magpie_stanza_is_shared(bare));
	magpie_stanza_unref(bare);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/stanza/build-serialize", test_build_serialize);
	g_test_add_func("/stanza/root-namespace", test_root_namespace);
	g_test_add_func("/stanza/parse/round-trip", test_parse_round_trip);
	g_test_add_func("/stanza/parse/errors", test_parse_errors);
	g_test_add_func("/stanza/cached-bytes", test_cached_bytes);
	g_test_add_func("/stanza/spliced-to", test_spliced_to);
	g_test_add_func("/stanza/copy", test_copy);
	g_test_add_func("/stanza/copy-compact", test_copy_compact);
	g_test_add_func("/stanza/set-to-internal", test_set_to_internal);
	g_test_add_func("/stanza/refcount-and-big", test_refcount_and_big);
	g_test_add_func("/stanza/invalid-input-sanitized", test_invalid_input_sanitized);
	g_test_add_func("/stanza/speed", test_speed);
	return g_test_run();
}
