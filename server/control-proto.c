/* The control socket's wire format: a strict parser for a JSON array of
 * strings, JSON string output and aligned text columns. */
#include "control-proto.h"

#include <string.h>

G_DEFINE_QUARK(magpie - control - error - quark, magpie_control_error)

typedef struct {
	const char *p;
	const char *start;
	const char *end;
} Cursor;

static gboolean G_GNUC_PRINTF(3, 4) parse_fail(Cursor *c, GError **error, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *msg = NULL;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, MAGPIE_CONTROL_ERROR, MAGPIE_CONTROL_ERROR_PARSE,
	            "invalid request at byte %" G_GSIZE_FORMAT ": %s", (gsize) (c->p - c->start),
	            msg);
	return FALSE;
}

static void
skip_whitespace(Cursor *c)
{
	/* RFC 8259 §2: space, tab, line feed, carriage return. */
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int
hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Four hex digits after "\u"; @c->p points at the first digit. */
static gboolean
parse_hex4(Cursor *c, gunichar *value_out, GError **error)
{
	gunichar v = 0;

	if (c->end - c->p < 4)
		return parse_fail(c, error, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		int h = hex_value(c->p[i]);

		if (h < 0)
			return parse_fail(c, error, "bad hex digit in \\u escape");
		v = (v << 4) | (gunichar) h;
	}
	c->p += 4;
	*value_out = v;
	return TRUE;
}

static gboolean
parse_escape(Cursor *c, GString *out, GError **error)
{
	gunichar ch;

	/* @c->p is just after the backslash. */
	if (c->p >= c->end)
		return parse_fail(c, error, "unterminated string");
	switch (*c->p) {
	case '"':
	case '\\':
	case '/':
		g_string_append_c(out, *c->p);
		c->p++;
		return TRUE;
	case 'b':
		g_string_append_c(out, '\b');
		c->p++;
		return TRUE;
	case 'f':
		g_string_append_c(out, '\f');
		c->p++;
		return TRUE;
	case 'n':
		g_string_append_c(out, '\n');
		c->p++;
		return TRUE;
	case 'r':
		g_string_append_c(out, '\r');
		c->p++;
		return TRUE;
	case 't':
		g_string_append_c(out, '\t');
		c->p++;
		return TRUE;
	case 'u':
		c->p++;
		break;
	default:
		return parse_fail(c, error, "bad escape \"\\%c\"",
		                  g_ascii_isprint(*c->p) ? *c->p : '?');
	}

	if (!parse_hex4(c, &ch, error))
		return FALSE;
	if (ch >= 0xDC00 && ch <= 0xDFFF)
		return parse_fail(c, error, "lone low surrogate in \\u escape");
	if (ch >= 0xD800 && ch <= 0xDBFF) {
		gunichar low;

		if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
			return parse_fail(c, error, "lone high surrogate in \\u escape");
		c->p += 2;
		if (!parse_hex4(c, &low, error))
			return FALSE;
		if (low < 0xDC00 || low > 0xDFFF)
			return parse_fail(c, error, "high surrogate not followed by a low one");
		ch = 0x10000 + ((ch - 0xD800) << 10) + (low - 0xDC00);
	}
	if (ch == 0)
		return parse_fail(c, error, "NUL character in string");
	g_string_append_unichar(out, ch);
	return TRUE;
}

/* A string; @c->p points at the opening quote. */
static char *
parse_string(Cursor *c, GError **error)
{
	g_autoptr(GString) out = g_string_new(NULL);
	const char *open = c->p;

	c->p++;
	for (;;) {
		const char *run = c->p;

		while (c->p < c->end && *c->p != '"' && *c->p != '\\' && (guchar) *c->p >= 0x20)
			c->p++;
		g_string_append_len(out, run, c->p - run);
		if (c->p >= c->end) {
			c->p = open;
			parse_fail(c, error, "unterminated string");
			return NULL;
		}
		if (*c->p == '"') {
			c->p++;
			break;
		}
		if (*c->p == '\\') {
			c->p++;
			if (!parse_escape(c, out, error))
				return NULL;
			continue;
		}
		if (*c->p == '\0')
			parse_fail(c, error, "NUL byte in request");
		else
			parse_fail(c, error, "unescaped control character in string");
		return NULL;
	}
	if (!g_utf8_validate(out->str, out->len, NULL)) {
		c->p = open;
		parse_fail(c, error, "string is not valid UTF-8");
		return NULL;
	}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

static const char *
describe_token(char ch)
{
	if (ch == '\0')
		return "NUL byte";
	if (ch == '[')
		return "nested array";
	if (ch == '{')
		return "object";
	if (ch == '-' || (ch >= '0' && ch <= '9'))
		return "number";
	if (ch == 't' || ch == 'f' || ch == 'n')
		return "literal";
	return "unexpected character";
}

GStrv
magpie_control_parse_array(const char *line, gsize len, GError **error)
{
	g_autoptr(GPtrArray) words = g_ptr_array_new_with_free_func(g_free);
	Cursor c;

	g_return_val_if_fail(line != NULL || len == 0, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);

	if (len > MAGPIE_CONTROL_MAX_LINE) {
		g_set_error(error, MAGPIE_CONTROL_ERROR, MAGPIE_CONTROL_ERROR_TOO_LONG,
		            "request longer than %d bytes", MAGPIE_CONTROL_MAX_LINE);
		return NULL;
	}
	c.start = c.p = line;
	c.end = line + len;

	skip_whitespace(&c);
	if (c.p >= c.end) {
		parse_fail(&c, error, "empty request, expected a JSON array of strings");
		return NULL;
	}
	if (*c.p != '[') {
		parse_fail(&c, error, "expected a JSON array of strings, found %s",
		           describe_token(*c.p));
		return NULL;
	}
	c.p++;
	skip_whitespace(&c);
	if (c.p < c.end && *c.p == ']') {
		c.p++;
	} else {
		for (;;) {
			char *word;

			skip_whitespace(&c);
			if (c.p >= c.end) {
				parse_fail(&c, error, "unterminated array");
				return NULL;
			}
			if (*c.p != '"') {
				parse_fail(&c, error, "expected a string, found %s",
				           describe_token(*c.p));
				return NULL;
			}
			word = parse_string(&c, error);
			if (word == NULL)
				return NULL;
			g_ptr_array_add(words, word);
			skip_whitespace(&c);
			if (c.p >= c.end) {
				parse_fail(&c, error, "unterminated array");
				return NULL;
			}
			if (*c.p == ']') {
				c.p++;
				break;
			}
			if (*c.p != ',') {
				parse_fail(&c, error, "expected \",\" or \"]\", found %s",
				           describe_token(*c.p));
				return NULL;
			}
			c.p++;
		}
	}
	skip_whitespace(&c);
	if (c.p < c.end) {
		parse_fail(&c, error, "%s after the array", describe_token(*c.p));
		return NULL;
	}
	g_ptr_array_add(words, NULL);
	return (GStrv) g_ptr_array_free(g_steal_pointer(&words), FALSE);
}

GStrv
magpie_control_parse_request(const char *line, gsize len, gboolean *json_out, GError **error)
{
	GStrv argv = magpie_control_parse_array(line, len, error);
	gboolean json = FALSE;

	if (argv == NULL)
		return NULL;
	if (argv[0] != NULL && strcmp(argv[0], "--json") == 0) {
		json = TRUE;
		g_free(argv[0]);
		memmove(argv, argv + 1, g_strv_length(argv) * sizeof(char *));
	}
	if (json_out != NULL)
		*json_out = json;
	return argv;
}

void
magpie_json_append_string(GString *out, const char *s)
{
	const char *p = s;

	g_return_if_fail(out != NULL);

	g_string_append_c(out, '"');
	if (s == NULL)
		p = "";
	while (*p != '\0') {
		guchar ch = (guchar) *p;
		gunichar uc;

		switch (ch) {
		case '"':
			g_string_append(out, "\\\"");
			p++;
			continue;
		case '\\':
			g_string_append(out, "\\\\");
			p++;
			continue;
		case '\n':
			g_string_append(out, "\\n");
			p++;
			continue;
		case '\r':
			g_string_append(out, "\\r");
			p++;
			continue;
		case '\t':
			g_string_append(out, "\\t");
			p++;
			continue;
		case '\b':
			g_string_append(out, "\\b");
			p++;
			continue;
		case '\f':
			g_string_append(out, "\\f");
			p++;
			continue;
		default:
			break;
		}
		if (ch < 0x20 || ch == 0x7f) {
			g_string_append_printf(out, "\\u%04x", ch);
			p++;
			continue;
		}
		if (ch < 0x80) {
			g_string_append_c(out, (char) ch);
			p++;
			continue;
		}
		uc = g_utf8_get_char_validated(p, -1);
		if (uc == (gunichar) -1 || uc == (gunichar) -2) {
			g_string_append(out, "\\ufffd");
			p++;
			continue;
		}
		/* U+2028/U+2029 are valid JSON but break JavaScript consumers. */
		if (uc == 0x2028 || uc == 0x2029)
			g_string_append_printf(out, "\\u%04x", uc);
		else
			g_string_append_len(out, p, g_utf8_next_char(p) - p);
		p = g_utf8_next_char(p);
	}
	g_string_append_c(out, '"');
}

char *
magpie_control_encode_request(const char *const *argv)
{
	GString *out = g_string_new("[");

	g_return_val_if_fail(argv != NULL, NULL);

	for (guint i = 0; argv[i] != NULL; i++) {
		if (i > 0)
			g_string_append_c(out, ',');
		magpie_json_append_string(out, argv[i]);
	}
	g_string_append(out, "]\n");
	return g_string_free(out, FALSE);
}

static const char *
cell_text(const char *s)
{
	return s == NULL || *s == '\0' ? "-" : s;
}

static gsize
cell_width(const char *s)
{
	if (g_utf8_validate(s, -1, NULL))
		return g_utf8_strlen(s, -1);
	return strlen(s);
}

void
magpie_control_format_table(GString *out, guint n_columns, const char *const *cells, guint n_cells)
{
	g_autofree gsize *widths = NULL;

	g_return_if_fail(out != NULL);
	g_return_if_fail(n_columns > 0);
	g_return_if_fail(n_cells % n_columns == 0);

	widths = g_new0(gsize, n_columns);
	for (guint i = 0; i < n_cells; i++)
		widths[i % n_columns] = MAX(widths[i % n_columns], cell_width(cell_text(cells[i])));

	for (guint i = 0; i < n_cells; i++) {
		const char *text = cell_text(cells[i]);
		guint col = i % n_columns;

		g_string_append(out, text);
		if (col == n_columns - 1) {
			g_string_append_c(out, '\n');
		} else {
			for (gsize w = cell_width(text); w < widths[col] + 2; w++)
				g_string_append_c(out, ' ');
		}
	}
}

char *
magpie_control_format_duration(gint64 seconds)
{
	gint64 days, hours, minutes;

	if (seconds < 0)
		seconds = 0;
	days = seconds / 86400;
	hours = seconds / 3600 % 24;
	minutes = seconds / 60 % 60;
	seconds %= 60;
	if (days > 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "d %" G_GINT64_FORMAT
		                       "h %" G_GINT64_FORMAT "m %" G_GINT64_FORMAT "s",
		                       days, hours, minutes, seconds);
	if (hours > 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "h %" G_GINT64_FORMAT
		                       "m %" G_GINT64_FORMAT "s",
		                       hours, minutes, seconds);
	if (minutes > 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "m %" G_GINT64_FORMAT "s", minutes,
		                       seconds);
	return g_strdup_printf("%" G_GINT64_FORMAT "s", seconds);
}

char *
magpie_control_format_time(gint64 unix_seconds)
{
	g_autoptr(GDateTime) dt = NULL;

	if (unix_seconds <= 0)
		return g_strdup("-");
	dt = g_date_time_new_from_unix_utc(unix_seconds);
	if (dt == NULL)
		return g_strdup("-");
	return g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");
}
