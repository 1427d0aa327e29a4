/* JID parsing and preparation (RFC 7622 structure, stringprep profiles). */
#include <string.h>

#include <stringprep.h>

#include <magpie/jid.h>

static void
assert_jid(const char *in, const char *node, const char *domain, const char *resource,
           const char *full)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieJid) jid = magpie_jid_parse(in, &error);

	g_assert_no_error(error);
	g_assert_nonnull(jid);
	g_assert_cmpstr(magpie_jid_node(jid), ==, node);
	g_assert_cmpstr(magpie_jid_domain(jid), ==, domain);
	g_assert_cmpstr(magpie_jid_resource(jid), ==, resource);
	g_assert_cmpstr(magpie_jid_string(jid), ==, full);
}

static void
assert_bad(const char *in, int code)
{
	g_autoptr(GError) error = NULL;
	MagpieJid *jid = magpie_jid_parse(in, &error);

	if (jid != NULL)
		g_error("'%s' accepted as '%s'", in, magpie_jid_string(jid));
	g_assert_error(error, MAGPIE_JID_ERROR, code);
}

static void
test_jid_parse_structure(void)
{
	assert_jid("example.org", NULL, "example.org", NULL, "example.org");
	assert_jid("romeo@example.org", "romeo", "example.org", NULL, "romeo@example.org");
	assert_jid("romeo@example.org/orchard", "romeo", "example.org", "orchard",
	           "romeo@example.org/orchard");
	assert_jid("example.org/res", NULL, "example.org", "res", "example.org/res");
	/* resource at the first '/', node before the first '@' of the rest */
	assert_jid("a@b/c/d@e", "a", "b", "c/d@e", "a@b/c/d@e");
	assert_jid("b/c@d", NULL, "b", "c@d", "b/c@d");
	assert_jid("romeo@example.org/ with space ", "romeo", "example.org", " with space ",
	           "romeo@example.org/ with space ");
}

static void
test_jid_parse_case_folding(void)
{
	assert_jid("RoMeO@ExAmPlE.OrG/OrChArD", "romeo", "example.org", "OrChArD",
	           "romeo@example.org/OrChArD");
	/* non-ASCII: nodeprep case-folds, resourceprep keeps case but NFKC */
	assert_jid("JULIET@EXAMPLE.COM", "juliet", "example.com", NULL, "juliet@example.com");
	assert_jid("\xc3\x84pfel@b\xc3\xbc"
	           "cher.example/\xc3\x84\xef\xac\x81",
	           "\xc3\xa4pfel",
	           "b\xc3\xbc"
	           "cher.example",
	           "\xc3\x84"
	           "fi",
	           "\xc3\xa4pfel@b\xc3\xbc"
	           "cher.example/\xc3\x84"
	           "fi");
	/* ß case-folds to "ss" in nodeprep (B.2) */
	assert_jid("stra\xc3\x9f"
	           "e@example.org",
	           "strasse", "example.org", NULL, "strasse@example.org");
	/* Greek capital sigma folds; fullwidth letters NFKC to ASCII */
	assert_jid("\xce\xa3@example.org", "\xcf\x83", "example.org", NULL, "\xcf\x83@example.org");
	assert_jid("\xef\xbc\xa1"
	           "b@EXAMPLE.org",
	           "ab", "example.org", NULL, "ab@example.org");
	/* soft hyphen maps to nothing */
	assert_jid("a\xc2\xad"
	           "b@example.org",
	           "ab", "example.org", NULL, "ab@example.org");
}

static void
test_jid_domain_forms(void)
{
	assert_jid("example.org.", NULL, "example.org", NULL, "example.org");
	assert_jid("user@Example.ORG./r", "user", "example.org", "r", "user@example.org/r");
	assert_jid("user@192.168.0.1/r", "user", "192.168.0.1", "r", "user@192.168.0.1/r");
	assert_jid("[::1]", NULL, "[::1]", NULL, "[::1]");
	assert_jid("u@[2001:DB8::1]/x", "u", "[2001:db8::1]", "x", "u@[2001:db8::1]/x");
	assert_bad("[not-an-ip]", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("[1.2.3.4]", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("example.org..", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("a..b", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad(".example.org", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("exa mple.org", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("exa_mple.org", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("a@b@c", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("exam\xe2\x80\x8eple.org", MAGPIE_JID_ERROR_NAMEPREP); /* LRM prohibited */
}

static void
test_jid_invalid(void)
{
	assert_bad("", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad("@example.org", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad("example.org/", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad("user@example.org/", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad("user@", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad("user@/res", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad("/res", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad(".", MAGPIE_JID_ERROR_MALFORMED);
	assert_bad("@", MAGPIE_JID_ERROR_MALFORMED);
	/* nodeprep's prohibited ASCII: " & ' / : < > @ and space */
	assert_bad("a\"b@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a&b@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a'b@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a:b@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a<b@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a>b@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a b@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a\tb@example.org", MAGPIE_JID_ERROR_NODEPREP);
	/* non-ASCII space (C.1.2) and unassigned code points in the node */
	assert_bad("a\xc2\xa0"
	           "b@example.org",
	           MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a\xf3\xa0\x80\x80@example.org", MAGPIE_JID_ERROR_NODEPREP); /* U+E0000 */
	/* bidi: RandAL with L in one part */
	assert_bad("\xd7\x90"
	           "a@example.org",
	           MAGPIE_JID_ERROR_NODEPREP);
	/* control characters in the resource */
	assert_bad("a@example.org/x\x01y", MAGPIE_JID_ERROR_RESOURCEPREP);
	assert_bad("a@example.org/x\x7fy", MAGPIE_JID_ERROR_RESOURCEPREP);
	assert_bad("a@example.org/x\xe2\x80\xa8y", MAGPIE_JID_ERROR_RESOURCEPREP); /* LS */
	/* bad UTF-8 anywhere */
	assert_bad("a\xff@example.org", MAGPIE_JID_ERROR_NODEPREP);
	assert_bad("a@exa\xc3mple.org", MAGPIE_JID_ERROR_NAMEPREP);
	assert_bad("a@example.org/\xc0\x80", MAGPIE_JID_ERROR_RESOURCEPREP);
	/* a node made only of characters mapped to nothing */
	assert_bad("\xc2\xad@example.org", MAGPIE_JID_ERROR_NODEPREP);
}

static void
test_jid_length_limits(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *n1023 = g_strnfill(1023, 'n');
	g_autofree char *n1024 = g_strnfill(1024, 'n');
	g_autofree char *d1023 = g_strnfill(1023, 'd');
	g_autofree char *d1024 = g_strnfill(1024, 'd');
	g_autofree char *r1023 = g_strnfill(1023, 'r');
	g_autofree char *r1024 = g_strnfill(1024, 'r');
	g_autofree char *huge = g_strnfill(1 << 20, 'x');
	g_autofree char *s = NULL;
	g_autoptr(MagpieJid) jid = NULL;
	GString *mapped;

	s = g_strdup_printf("%s@%s/%s", n1023, d1023, r1023);
	jid = magpie_jid_parse(s, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(strlen(magpie_jid_string(jid)), ==, 3 * 1023 + 2);
	g_clear_pointer(&s, g_free);

	s = g_strdup_printf("%s@d", n1024);
	assert_bad(s, MAGPIE_JID_ERROR_TOO_LONG);
	g_clear_pointer(&s, g_free);
	s = g_strdup_printf("n@%s", d1024);
	assert_bad(s, MAGPIE_JID_ERROR_TOO_LONG);
	g_clear_pointer(&s, g_free);
	s = g_strdup_printf("n@d/%s", r1024);
	assert_bad(s, MAGPIE_JID_ERROR_TOO_LONG);
	g_clear_pointer(&s, g_free);
	assert_bad(huge, MAGPIE_JID_ERROR_TOO_LONG);
	/* a domain of 1024 bytes whose trailing dot is stripped is fine */
	s = g_strdup_printf("%s.", d1023);
	g_clear_pointer(&jid, magpie_jid_unref);
	jid = magpie_jid_parse(s, &error);
	g_assert_no_error(error);
	g_clear_pointer(&s, g_free);

	/* The limit applies after preparation: 1023 'A' + 600 soft hyphens
	 * prepare to 1023 bytes; 1024 non-ASCII upper-case 'Ä' (2 bytes)
	 * prepare to 2048 bytes. */
	mapped = g_string_new(NULL);
	for (int i = 0; i < 1023; i++)
		g_string_append(mapped, i < 600 ? "A\xc2\xad" : "A");
	g_string_append(mapped, "@example.org");
	g_clear_pointer(&jid, magpie_jid_unref);
	jid = magpie_jid_parse(mapped->str, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(strlen(magpie_jid_node(jid)), ==, 1023);
	g_string_truncate(mapped, 0);
	for (int i = 0; i < 600; i++)
		g_string_append(mapped, "\xc3\x84");
	g_string_append(mapped, "@example.org");
	assert_bad(mapped->str, MAGPIE_JID_ERROR_TOO_LONG);
	g_string_free(mapped, TRUE);
}

/* The ASCII fast path must agree with libidn for every ASCII character. */
static void
test_jid_ascii_matches_libidn(void)
{
	for (int c = 1; c < 0x80; c++) {
		char in[4] = { 'a', (char) c, 'b', 0 };
		char buf[64];
		g_autofree char *node = NULL;
		g_autofree char *res = NULL;
		int rc;

		node = magpie_jid_nodeprep(in, NULL);
		strcpy(buf, in);
		rc = stringprep(buf, sizeof(buf), STRINGPREP_NO_UNASSIGNED,
		                stringprep_xmpp_nodeprep);
		if (rc == STRINGPREP_OK)
			g_assert_cmpstr(node, ==, buf);
		else
			g_assert_null(node);

		res = magpie_jid_resourceprep(in, NULL);
		strcpy(buf, in);
		rc = stringprep(buf, sizeof(buf), 0, stringprep_xmpp_resourceprep);
		if (rc == STRINGPREP_OK)
			g_assert_cmpstr(res, ==, buf);
		else
			g_assert_null(res);
	}
}

static void
test_jid_prep_functions(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *n = magpie_jid_nodeprep("UsEr", &error);
	g_autofree char *d = magpie_jid_nameprep("ExAmple.ORG.", &error);
	g_autofree char *r = magpie_jid_resourceprep("Res \xe2\x85\xa0", &error); /* roman one */
	char *bad;

	g_assert_no_error(error);
	g_assert_cmpstr(n, ==, "user");
	g_assert_cmpstr(d, ==, "example.org");
	g_assert_cmpstr(r, ==, "Res I");
	bad = magpie_jid_nodeprep("a@b", &error);
	g_assert_null(bad);
	g_assert_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_NODEPREP);
	g_clear_error(&error);
	bad = magpie_jid_nameprep("", &error);
	g_assert_null(bad);
	g_assert_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED);
}

static void
test_jid_new_and_derive(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieJid) full = magpie_jid_new("Romeo", "Example.org", "Phone", &error);
	g_autoptr(MagpieJid) bare = NULL;
	g_autoptr(MagpieJid) bare2 = NULL;
	g_autoptr(MagpieJid) other = NULL;
	g_autoptr(MagpieJid) parsed = NULL;
	g_autoptr(MagpieJid) dom = NULL;
	MagpieJid *bad;

	g_assert_no_error(error);
	g_assert_cmpstr(magpie_jid_string(full), ==, "romeo@example.org/Phone");
	g_assert_cmpstr(magpie_jid_bare_string(full), ==, "romeo@example.org");
	g_assert_false(magpie_jid_is_bare(full));

	bare = magpie_jid_bare(full);
	g_assert_true(magpie_jid_is_bare(bare));
	g_assert_cmpstr(magpie_jid_string(bare), ==, "romeo@example.org");
	bare2 = magpie_jid_bare(bare);
	g_assert_true(bare2 == bare);
	g_assert_true(magpie_jid_bare_equal(full, bare));
	g_assert_false(magpie_jid_equal(full, bare));

	other = magpie_jid_with_resource(bare, "Laptop", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(magpie_jid_string(other), ==, "romeo@example.org/Laptop");
	g_assert_null(magpie_jid_with_resource(bare, "", &error));
	g_assert_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED);
	g_clear_error(&error);

	parsed = magpie_jid_parse("ROMEO@example.ORG/Phone", &error);
	g_assert_true(magpie_jid_equal(parsed, full));
	g_assert_cmpuint(magpie_jid_hash(parsed), ==, magpie_jid_hash(full));

	dom = magpie_jid_new(NULL, "example.org", NULL, &error);
	g_assert_no_error(error);
	g_assert_null(magpie_jid_node(dom));
	g_assert_cmpstr(magpie_jid_string(dom), ==, "example.org");

	bad = magpie_jid_new("a/b", "example.org", NULL, &error);
	g_assert_null(bad);
	g_assert_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_NODEPREP);
	g_clear_error(&error);
	bad = magpie_jid_new("", "example.org", NULL, &error);
	g_assert_null(bad);
	g_assert_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED);
	g_clear_error(&error);
	bad = magpie_jid_new("a", "", NULL, &error);
	g_assert_null(bad);
	g_assert_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED);
}

static void
test_jid_hash_table(void)
{
	g_autoptr(GHashTable) table =
	        g_hash_table_new_full((GHashFunc) magpie_jid_hash, (GEqualFunc) magpie_jid_equal,
	                              (GDestroyNotify) magpie_jid_unref, NULL);
	g_autoptr(MagpieJid) probe = magpie_jid_parse("USER7@EXAMPLE.org/r", NULL);

	for (int i = 0; i < 100; i++) {
		g_autofree char *s = g_strdup_printf("user%d@example.org/r", i);

		g_hash_table_add(table, magpie_jid_parse(s, NULL));
	}
	g_assert_cmpuint(g_hash_table_size(table), ==, 100);
	g_assert_true(g_hash_table_contains(table, probe));
}

static void
test_jid_speed(void)
{
	gint64 t0 = g_get_monotonic_time();
	const int n = 200000;

	for (int i = 0; i < n; i++) {
		MagpieJid *jid = magpie_jid_parse("romeo@example.org/orchard-1234", NULL);

		magpie_jid_unref(jid);
	}
	g_test_message("ASCII JID parse: %.0f/s", n / ((g_get_monotonic_time() - t0 + 1) / 1e6));
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/jid/parse/structure", test_jid_parse_structure);
	g_test_add_func("/jid/parse/case-folding", test_jid_parse_case_folding);
	g_test_add_func("/jid/parse/domain-forms", test_jid_domain_forms);
	g_test_add_func("/jid/parse/invalid", test_jid_invalid);
	g_test_add_func("/jid/parse/length-limits", test_jid_length_limits);
	g_test_add_func("/jid/prep/ascii-matches-libidn", test_jid_ascii_matches_libidn);
	g_test_add_func("/jid/prep/functions", test_jid_prep_functions);
	g_test_add_func("/jid/new-and-derive", test_jid_new_and_derive);
	g_test_add_func("/jid/hash-table", test_jid_hash_table);
	g_test_add_func("/jid/speed", test_jid_speed);
	return g_test_run();
}
