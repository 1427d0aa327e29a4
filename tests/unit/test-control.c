/* The control socket's request parser and text formatting
 * (server/control-proto.c), with hostile input. */
#include <string.h>

#include "control-proto.h"

static GStrv
parse_ok(const char *line)
{
	g_autoptr(GError) error = NULL;
	GStrv argv = magpie_control_parse_array(line, strlen(line), &error);

	g_assert_no_error(error);
	g_assert_nonnull(argv);
	return argv;
}

static void
parse_fails(const char *line, gsize len, int code, const char *fragment)
{
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) argv = magpie_control_parse_array(line, len, &error);

	g_assert_null(argv);
	g_assert_error(error, MAGPIE_CONTROL_ERROR, code);
	if (fragment != NULL && strstr(error->message, fragment) == NULL)
		g_error("\"%s\" not in \"%s\"", fragment, error->message);
}

#define PARSE_FAILS(literal, fragment)                                                             \
	parse_fails(literal, sizeof(literal) - 1, MAGPIE_CONTROL_ERROR_PARSE, fragment)

static void
test_parse_simple(void)
{
	g_auto(GStrv) empty = parse_ok("[]");
	g_auto(GStrv) one = parse_ok("[\"help\"]");
	g_auto(GStrv) spaced =
	        parse_ok(" \t[ \"account\" ,\"add\",\"alice@localhost\" , \"pw\" ]\r");
	g_auto(GStrv) blank = parse_ok("[\"\"]");

	g_assert_cmpuint(g_strv_length(empty), ==, 0);
	g_assert_cmpuint(g_strv_length(one), ==, 1);
	g_assert_cmpstr(one[0], ==, "help");
	g_assert_cmpuint(g_strv_length(spaced), ==, 4);
	g_assert_cmpstr(spaced[0], ==, "account");
	g_assert_cmpstr(spaced[2], ==, "alice@localhost");
	g_assert_cmpstr(spaced[3], ==, "pw");
	g_assert_cmpuint(g_strv_length(blank), ==, 1);
	g_assert_cmpstr(blank[0], ==, "");
}

static void
test_parse_escapes(void)
{
	g_auto(GStrv) argv =
	        parse_ok("[\"a\\\"b\", \"\\\\\", \"\\/\", \"\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", "
	                 "\"\\ud83d\\ude00\", \"\\u0001\"]");

	g_assert_cmpuint(g_strv_length(argv), ==, 7);
	g_assert_cmpstr(argv[0], ==, "a\"b");
	g_assert_cmpstr(argv[1], ==, "\\");
	g_assert_cmpstr(argv[2], ==, "/");
	g_assert_cmpstr(argv[3], ==, "\b\f\n\r\t");
	g_assert_cmpstr(argv[4], ==, "\xc3\xa9\xe2\x82\xac");
	g_assert_cmpstr(argv[5], ==, "\xf0\x9f\x98\x80");
	g_assert_cmpstr(argv[6], ==, "\x01");
}

static void
test_parse_utf8(void)
{
	g_auto(GStrv) argv = parse_ok("[\"j\xc3\xbcrgen@example.org\", \"\xf0\x9f\x90\xa6\"]");

	g_assert_cmpstr(argv[0], ==, "j\xc3\xbcrgen@example.org");
	g_assert_cmpstr(argv[1], ==, "\xf0\x9f\x90\xa6");

	PARSE_FAILS("[\"\xff\"]", "UTF-8");
	PARSE_FAILS("[\"\xc3\"]", "UTF-8");
	PARSE_FAILS("[\"\xc0\xaf\"]", "UTF-8");         /* overlong "/" */
	PARSE_FAILS("[\"\xed\xa0\x80\"]", "UTF-8");     /* surrogate in UTF-8 */
	PARSE_FAILS("[\"\xf4\x90\x80\x80\"]", "UTF-8"); /* above U+10FFFF */
}

static void
test_parse_unterminated(void)
{
	PARSE_FAILS("", "empty request");
	PARSE_FAILS("   ", "empty request");
	PARSE_FAILS("[", "unterminated array");
	PARSE_FAILS("[\"help\"", "unterminated array");
	PARSE_FAILS("[\"help\",", "unterminated array");
	PARSE_FAILS("[\"help", "unterminated string");
	PARSE_FAILS("[\"help\\", "unterminated string");
	PARSE_FAILS("[\"help\\\"]", "unterminated string");
	PARSE_FAILS("[\"a\\u12", "truncated");
}

static void
test_parse_bad_escapes(void)
{
	PARSE_FAILS("[\"\\x41\"]", "bad escape");
	PARSE_FAILS("[\"\\a\"]", "bad escape");
	PARSE_FAILS("[\"\\'\"]", "bad escape");
	PARSE_FAILS("[\"\\U0041\"]", "bad escape");
	PARSE_FAILS("[\"\\u00g1\"]", "bad hex digit");
	PARSE_FAILS("[\"\\u 041\"]", "bad hex digit");
	PARSE_FAILS("[\"\\u0000\"]", "NUL character");
	PARSE_FAILS("[\"\\\x01\"]", "bad escape");
}

static void
test_parse_surrogates(void)
{
	PARSE_FAILS("[\"\\ud83d\"]", "lone high surrogate");
	PARSE_FAILS("[\"\\ud83dx\"]", "lone high surrogate");
	PARSE_FAILS("[\"\\ud83d\\n\"]", "lone high surrogate");
	PARSE_FAILS("[\"\\ud83d\\u0041\"]", "not followed by a low");
	PARSE_FAILS("[\"\\ud83d\\ud83d\"]", "not followed by a low");
	PARSE_FAILS("[\"\\ude00\"]", "lone low surrogate");
	PARSE_FAILS("[\"\\ude00\\ud83d\"]", "lone low surrogate");
	PARSE_FAILS("[\"\\ud83d\\u", "truncated");
}

static void
test_parse_not_strings(void)
{
	PARSE_FAILS("[[\"help\"]]", "nested array");
	PARSE_FAILS("[\"a\", [\"b\"]]", "nested array");
	PARSE_FAILS("[1]", "number");
	PARSE_FAILS("[-1]", "number");
	PARSE_FAILS("[\"a\", 2.5]", "number");
	PARSE_FAILS("[true]", "literal");
	PARSE_FAILS("[null]", "literal");
	PARSE_FAILS("[{\"a\":\"b\"}]", "object");
	PARSE_FAILS("{\"cmd\":\"help\"}", "object");
	PARSE_FAILS("\"help\"", "expected a JSON array");
	PARSE_FAILS("help", "expected a JSON array");
	PARSE_FAILS("['help']", "expected a string");
	PARSE_FAILS("[\"a\" \"b\"]", "expected \",\"");
	PARSE_FAILS("[\"a\",]", "expected a string");
	PARSE_FAILS("[,\"a\"]", "expected a string");
	PARSE_FAILS("[\"a\"]]", "after the array");
	PARSE_FAILS("[\"a\"] [\"b\"]", "after the array");
	PARSE_FAILS("[\"a\"]x", "after the array");
	PARSE_FAILS("[\"a\tb\"]", "control character");
	PARSE_FAILS("[\"a\nb\"]", "control character");
	PARSE_FAILS("\v[\"a\"]", "expected a JSON array");
}

static void
test_parse_nul_bytes(void)
{
	static const char inside[] = "[\"ab\0cd\"]";
	static const char outside[] = "[\"ab\"\0]";
	static const char after[] = "[\"ab\"]\0";
	static const char before[] = "\0[\"ab\"]";

	parse_fails(inside, sizeof(inside) - 1, MAGPIE_CONTROL_ERROR_PARSE, "NUL byte");
	parse_fails(outside, sizeof(outside) - 1, MAGPIE_CONTROL_ERROR_PARSE, "NUL byte");
	parse_fails(after, sizeof(after) - 1, MAGPIE_CONTROL_ERROR_PARSE, "NUL byte");
	parse_fails(before, sizeof(before) - 1, MAGPIE_CONTROL_ERROR_PARSE, "NUL byte");
}

static void
test_parse_length(void)
{
	/* Exactly the limit parses; one byte more does not. */
	gsize len = MAGPIE_CONTROL_MAX_LINE;
	g_autofree char *line = g_malloc(len + 2);
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) argv = NULL;

	line[0] = '[';
	line[1] = '"';
	memset(line + 2, 'x', len - 4);
	line[len - 2] = '"';
	line[len - 1] = ']';
	line[len] = ' ';
	line[len + 1] = '\0';
	argv = magpie_control_parse_array(line, len, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(g_strv_length(argv), ==, 1);
	g_assert_cmpuint(strlen(argv[0]), ==, len - 4);

	parse_fails(line, len + 1, MAGPIE_CONTROL_ERROR_TOO_LONG, "longer than 65536");
}

static void
test_parse_many_words(void)
{
	g_autoptr(GString) line = g_string_new("[");
	g_auto(GStrv) argv = NULL;
	g_autoptr(GError) error = NULL;

	while (line->len < MAGPIE_CONTROL_MAX_LINE - 4)
		g_string_append(line, "\"\",");
	g_string_append(line, "\"\"]");
	argv = magpie_control_parse_array(line->str, line->len, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(g_strv_length(argv), >, 20000);
}

static void
test_parse_request_json(void)
{
	g_autoptr(GError) error = NULL;
	gboolean json = TRUE;
	const char *plain = "[\"stats\"]";
	const char *with = "[\"--json\", \"account\", \"list\"]";
	const char *only = "[\"--json\"]";
	const char *later = "[\"stats\", \"--json\"]";
	g_auto(GStrv) a = magpie_control_parse_request(plain, strlen(plain), &json, &error);
	g_auto(GStrv) b = NULL;
	g_auto(GStrv) c = NULL;
	g_auto(GStrv) d = NULL;

	g_assert_no_error(error);
	g_assert_false(json);
	g_assert_cmpstr(a[0], ==, "stats");

	b = magpie_control_parse_request(with, strlen(with), &json, &error);
	g_assert_no_error(error);
	g_assert_true(json);
	g_assert_cmpuint(g_strv_length(b), ==, 2);
	g_assert_cmpstr(b[0], ==, "account");
	g_assert_cmpstr(b[1], ==, "list");

	c = magpie_control_parse_request(only, strlen(only), &json, &error);
	g_assert_no_error(error);
	g_assert_true(json);
	g_assert_cmpuint(g_strv_length(c), ==, 0);

	/* Only a leading --json is an option; later it is an argument. */
	d = magpie_control_parse_request(later, strlen(later), &json, &error);
	g_assert_no_error(error);
	g_assert_false(json);
	g_assert_cmpuint(g_strv_length(d), ==, 2);
}

static char *
json_string(const char *s)
{
	GString *out = g_string_new(NULL);

	magpie_json_append_string(out, s);
	return g_string_free(out, FALSE);
}

static void
test_json_string(void)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "", "\"\"" },
		{ "alice@localhost", "\"alice@localhost\"" },
		{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"" },
		{ "\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"" },
		{ "/", "\"/\"" },
		{ "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
		{ "\xf0\x9f\x90\xa6", "\"\xf0\x9f\x90\xa6\"" },
		{ "a\xffz", "\"a\\ufffdz\"" },
		{ "\xc3", "\"\\ufffd\"" },
		{ "\xe2\x80\xa8", "\"\\u2028\"" },
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *out = json_string(cases[i].in);

		g_assert_cmpstr(out, ==, cases[i].out);
	}
}

/* Whatever goes in, encoding then parsing gives it back (valid UTF-8 without
 * NUL), which is what magpiectl and the server rely on. */
static void
test_round_trip(void)
{
	GRand *rand = g_rand_new_with_seed(42);

	for (guint round = 0; round < 2000; round++) {
		guint n = g_rand_int_range(rand, 0, 6);
		g_autoptr(GPtrArray) words = g_ptr_array_new_with_free_func(g_free);
		g_autofree char *line = NULL;
		g_auto(GStrv) back = NULL;
		g_autoptr(GError) error = NULL;

		for (guint i = 0; i < n; i++) {
			GString *w = g_string_new(NULL);
			guint len = g_rand_int_range(rand, 0, 12);

			for (guint j = 0; j < len; j++) {
				gunichar ch;

				do {
					ch = g_rand_boolean(rand)
					             ? (gunichar) g_rand_int_range(rand, 1, 0x80)
					             : (gunichar) g_rand_int_range(rand, 0x80,
					                                           0x110000);
				} while (!g_unichar_validate(ch));
				g_string_append_unichar(w, ch);
			}
			g_ptr_array_add(words, g_string_free(w, FALSE));
		}
		g_ptr_array_add(words, NULL);
		line = magpie_control_encode_request((const char *const *) words->pdata);
		g_assert_true(g_str_has_suffix(line, "]\n"));
		g_assert_true(strchr(line, '\n') == line + strlen(line) - 1);
		back = magpie_control_parse_array(line, strlen(line) - 1, &error);
		g_assert_no_error(error);
		g_assert_cmpuint(g_strv_length(back), ==, n);
		for (guint i = 0; i < n; i++)
			g_assert_cmpstr(back[i], ==, g_ptr_array_index(words, i));
	}
	g_rand_free(rand);
}

/* Random bytes never crash the parser, and whatever it accepts is valid UTF-8
 * without NUL. */
static void
test_parse_garbage(void)
{
	GRand *rand = g_rand_new_with_seed(7);
	static const char alphabet[] = "[]\",\\u0dDfF8e \t\r\n\x01\xc3\xa9\xed\xff";

	for (guint round = 0; round < 20000; round++) {
		guint len = g_rand_int_range(rand, 0, 40);
		g_autofree char *buf = g_malloc(len + 1);
		g_autoptr(GError) error = NULL;
		g_auto(GStrv) argv = NULL;

		for (guint i = 0; i < len; i++)
			buf[i] =
			        g_rand_int_range(rand, 0, 4) == 0
			                ? (char) g_rand_int_range(rand, 0, 256)
			                : alphabet[g_rand_int_range(rand, 0, sizeof(alphabet) - 1)];
		buf[len] = '\0';
		argv = magpie_control_parse_array(buf, len, &error);
		if (argv == NULL) {
			g_assert_nonnull(error);
			continue;
		}
		g_assert_no_error(error);
		for (guint i = 0; argv[i] != NULL; i++)
			g_assert_true(g_utf8_validate(argv[i], -1, NULL));
	}
	g_rand_free(rand);
}

static void
test_format_table(void)
{
	/* clang-format off */
	const char *cells[] = {
		"JID", "STATUS", "CREATED",
		"alice@localhost", "enabled", "2024-05-01T12:00:00Z",
		"b@x", NULL, "",
		"j\xc3\xbcrgen@x", "disabled", "-",
	};
	/* clang-format on */
	g_autoptr(GString) out = g_string_new(NULL);

	magpie_control_format_table(out, 3, cells, G_N_ELEMENTS(cells));
	g_assert_cmpstr(out->str, ==,
	                "JID              STATUS    CREATED\n"
	                "alice@localhost  enabled   2024-05-01T12:00:00Z\n"
	                "b@x              -         -\n"
	                "j\xc3\xbcrgen@x         disabled  -\n");

	g_string_truncate(out, 0);
	magpie_control_format_table(out, 2, cells, 0);
	g_assert_cmpstr(out->str, ==, "");
}

static void
test_format_duration(void)
{
	static const struct {
		gint64 seconds;
		const char *text;
	} cases[] = {
		{ -5, "0s" },
		{ 0, "0s" },
		{ 59, "59s" },
		{ 60, "1m 0s" },
		{ 3599, "59m 59s" },
		{ 3600, "1h 0m 0s" },
		{ 86399, "23h 59m 59s" },
		{ 86400 * 3 + 3600 * 4 + 60 * 5 + 6, "3d 4h 5m 6s" },
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *text = magpie_control_format_duration(cases[i].seconds);

		g_assert_cmpstr(text, ==, cases[i].text);
	}
}

static void
test_format_time(void)
{
	g_autofree char *t1 = magpie_control_format_time(1714564800);
	g_autofree char *t2 = magpie_control_format_time(0);
	g_autofree char *t3 = magpie_control_format_time(G_MAXINT64);

	g_assert_cmpstr(t1, ==, "2024-05-01T12:00:00Z");
	g_assert_cmpstr(t2, ==, "-");
	g_assert_cmpstr(t3, ==, "-");
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/control/parse/simple", test_parse_simple);
	g_test_add_func("/control/parse/escapes", test_parse_escapes);
	g_test_add_func("/control/parse/utf8", test_parse_utf8);
	g_test_add_func("/control/parse/unterminated", test_parse_unterminated);
	g_test_add_func("/control/parse/bad-escapes", test_parse_bad_escapes);
	g_test_add_func("/control/parse/surrogates", test_parse_surrogates);
	g_test_add_func("/control/parse/not-strings", test_parse_not_strings);
	g_test_add_func("/control/parse/nul-bytes", test_parse_nul_bytes);
	g_test_add_func("/control/parse/length", test_parse_length);
	g_test_add_func("/control/parse/many-words", test_parse_many_words);
	g_test_add_func("/control/parse/garbage", test_parse_garbage);
	g_test_add_func("/control/request/json", test_parse_request_json);
	g_test_add_func("/control/json/string", test_json_string);
	g_test_add_func("/control/json/round-trip", test_round_trip);
	g_test_add_func("/control/format/table", test_format_table);
	g_test_add_func("/control/format/duration", test_format_duration);
	g_test_add_func("/control/format/time", test_format_time);
	return g_test_run();
}
