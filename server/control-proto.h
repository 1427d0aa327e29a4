/* The control socket's wire format and text formatting, as pure functions
 * (no sockets, no daemon state), so they can be tested on their own.
 *
 * A request is one line holding a JSON array of strings. The parser is
 * strict: only an array of strings, the escapes of RFC 8259 §7, valid
 * UTF-8, no NUL (raw or \u0000), no unpaired surrogates. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Longest request line in bytes, without its "\n". */
#define MAGPIE_CONTROL_MAX_LINE 65536

#define MAGPIE_CONTROL_ERROR (magpie_control_error_quark())
GQuark magpie_control_error_quark(void);
typedef enum {
	MAGPIE_CONTROL_ERROR_PARSE,    /* not a JSON array of strings */
	MAGPIE_CONTROL_ERROR_TOO_LONG, /* longer than MAGPIE_CONTROL_MAX_LINE */
	MAGPIE_CONTROL_ERROR_USAGE,    /* unknown command, wrong arguments */
	MAGPIE_CONTROL_ERROR_FAILED,   /* the command ran and failed */
} MagpieControlError;

/* Parse @len bytes of @line (without the "\n"; whitespace around tokens,
 * including a trailing "\r", is allowed) as a JSON array of strings.
 * Returns the strings (possibly none) as a NULL-terminated vector. */
GStrv magpie_control_parse_array(const char *line, gsize len, GError **error);

/* Parse a request line and strip a leading "--json" word into @json_out. */
GStrv magpie_control_parse_request(const char *line, gsize len, gboolean *json_out, GError **error);

/* Append @s as a quoted JSON string. Invalid UTF-8 bytes become U+FFFD;
 * control characters are escaped. */
void magpie_json_append_string(GString *out, const char *s);

/* The request line for @argv: a JSON array of strings and "\n". */
char *magpie_control_encode_request(const char *const *argv);

/* Aligned columns: @cells holds @n_cells strings, row-major, @n_columns per
 * row (the first row is usually a header). Columns are separated by two
 * spaces, the last one is not padded; NULL and "" cells print as "-". */
void magpie_control_format_table(GString *out, guint n_columns, const char *const *cells,
                                 guint n_cells);

/* "3d 4h 5m 6s", "5m 0s", "0s". */
char *magpie_control_format_duration(gint64 seconds);

/* "2024-05-01T12:00:00Z" (UTC), or "-" for 0 or out of range. */
char *magpie_control_format_time(gint64 unix_seconds);

G_END_DECLS
