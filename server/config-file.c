/* Configuration files: loading, merging, checking and printing.
 *
 * Each file is parsed by its own GKeyFile, then its keys are merged into
 * our own structure, which keeps for every (group, key) the last plain
 * assignment (the GKeyFile-escaped text), the file it came from, and the
 * list edits ("key+=" and "key-=") made after it. Edits made while a key
 * has no assignment yet apply to the schema's default, which is only known
 * when the value is read, so a value is resolved lazily and cached. */
#include "config-file.h"
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#define CONFIG_MAX_FILE_SIZE (16 * 1024 * 1024)
#define CONFIG_DISPLAY_MAX   80
#define HOST_GROUP_PREFIX    "host "

typedef struct {
	gboolean append; /* else remove */
	GStrv items;
} ConfigEdit;

typedef struct {
	char *key;
	char *raw;        /* last plain assignment, GKeyFile-escaped; NULL if none */
	char *origin;     /* file of the last assignment or edit */
	GPtrArray *edits; /* ConfigEdit made after @raw (or on the default) */
	char *string_cache;
	GStrv strv_cache;
} ConfigEntry;

typedef struct {
	char *name;
	char *origin;     /* first file that opened the group */
	GPtrArray *order; /* ConfigEntry, in order of first appearance */
	GHashTable *keys; /* key -> ConfigEntry (borrowed from @order) */
} ConfigGroup;

struct _MagpieConfigFile {
	char *path;
	GPtrArray *files;         /* char *, the files read in order */
	GPtrArray *groups;        /* ConfigGroup, in order of first appearance */
	GHashTable *by_name;      /* name -> ConfigGroup */
	GHashTable *default_strv; /* "group\nkey" -> GStrv (parsed defaults) */
	GStrv hosts;              /* lower case */
	guint *host_hashes;       /* host_hash() of each of @hosts */
};

/* ---- Schemas ---------------------------------------------------------- */

static const MagpieConfigKey core_schema[] = {
	{ "hosts", MAGPIE_CONFIG_STRING_LIST, "", 0, 0,
	  "Virtual hosts served; [host NAME] groups add more" },
	{ "module-dir", MAGPIE_CONFIG_STRING, MAGPIE_MODULE_DIR, 0, 0,
	  "Directory the modules (<name>.so) are loaded from" },
	{ "sql-dir", MAGPIE_CONFIG_STRING, MAGPIE_SQL_DIR, 0, 0,
	  "Directory of the SQL migrations (sql/<owner>/NNNN_*.sql)" },
	{ "control-socket", MAGPIE_CONFIG_STRING, "/run/magpie/control.sock", 0, 0,
	  "UNIX socket for magpiectl" },
	{ "log-level", MAGPIE_CONFIG_STRING, "info", 0, 0,
	  "Least important messages logged: error, warning, message, info or debug" },
	{ NULL }
};

static const MagpieConfigKey c2s_schema[] = {
	{ "listen", MAGPIE_CONFIG_STRING_LIST, "0.0.0.0:5222;[::]:5222", 0, 0,
	  "Client addresses with STARTTLS (IPv4:port, [IPv6]:port or *:port)" },
	{ "listen-tls", MAGPIE_CONFIG_STRING_LIST, "0.0.0.0:5223;[::]:5223", 0, 0,
	  "Client addresses with direct TLS, XEP-0368" },
	{ "max-stanza-size", MAGPIE_CONFIG_SIZE, "256k", 4 * 1024, 16 * 1024 * 1024,
	  "Largest stanza accepted from a client" },
	{ "idle-timeout", MAGPIE_CONFIG_DURATION, "10m", 0, 0,
	  "Close a client connection silent for this long" },
	{ "auth-timeout", MAGPIE_CONFIG_DURATION, "60s", 0, 0,
	  "Close a connection not authenticated within this time" },
	{ "max-output-queue", MAGPIE_CONFIG_SIZE, "1M", 0, 0,
	  "Bytes queued for a slow reader before it is disconnected" },
	{ "max-connections-per-address", MAGPIE_CONFIG_INT, "100", 1, 100000,
	  "Simultaneous client connections from one IP address" },
	{ NULL }
};

static const MagpieConfigKey tls_schema[] = {
	{ "certificate", MAGPIE_CONFIG_STRING, NULL, 0, 0,
	  "PEM certificate chain for hosts without their own" },
	{ "key", MAGPIE_CONFIG_STRING, NULL, 0, 0, "PEM private key of that certificate" },
	{ "priority", MAGPIE_CONFIG_STRING, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", 0, 0,
	  "GnuTLS priority string" },
	{ NULL }
};

static const MagpieConfigKey auth_schema[] = {
	{ "scram-iterations", MAGPIE_CONFIG_INT, "4096", 4096, 1000000,
	  "PBKDF2 iterations for new SCRAM credentials" },
	{ "allow-plain", MAGPIE_CONFIG_BOOL, "true", 0, 0, "Offer SASL PLAIN (only inside TLS)" },
	{ "fail-delay", MAGPIE_CONFIG_DURATION, "1s", 0, 30 * 1000,
	  "Delay before answering a failed authentication" },
	{ "max-failures", MAGPIE_CONFIG_INT, "5", 1, 1000,
	  "Failed authentications per address within failure-window before refusing" },
	{ "failure-window", MAGPIE_CONFIG_DURATION, "60s", 0, 0,
	  "Window in which authentication failures are counted" },
	{ NULL }
};

static const MagpieConfigKey database_schema[] = {
	{ "conninfo", MAGPIE_CONFIG_STRING, "dbname=magpie", 0, 0,
	  "libpq connection string (keep passwords in a mode-0640 file)" },
	{ "pool-size", MAGPIE_CONFIG_INT, "2", 1, 32, "PostgreSQL connections" },
	{ "query-timeout", MAGPIE_CONFIG_DURATION, "5s", 0, 0,
	  "Give up on a query after this long" },
	{ NULL }
};

static const MagpieConfigKey host_schema[] = {
	{ "certificate", MAGPIE_CONFIG_STRING, NULL, 0, 0,
	  "PEM certificate chain of this host (else [tls] certificate)" },
	{ "key", MAGPIE_CONFIG_STRING, NULL, 0, 0, "PEM private key of this host" },
	{ "enabled", MAGPIE_CONFIG_BOOL, "true", 0, 0, "Serve this host" },
	{ NULL }
};

static const MagpieConfigKey empty_schema[] = { { NULL } };

static const MagpieConfigKey module_enabled_key = { "enabled", MAGPIE_CONFIG_BOOL, "false", 0,
	                                            0,         "Load this module" };

static const struct {
	const char *group;
	const MagpieConfigKey *schema;
} core_groups[] = {
	{ "core", core_schema }, { "c2s", c2s_schema },           { "tls", tls_schema },
	{ "auth", auth_schema }, { "database", database_schema },
};

static const char *const log_levels[] = { "error", "warning", "message", "info", "debug", NULL };

GQuark
magpie_config_error_quark(void)
{
	return g_quark_from_static_string("magpie-config-error-quark");
}

/* "[host NAME]"; a bare "[host]" counts too, so that it is reported as a
 * host group without a name rather than taken for a module. */
static gboolean
is_host_group(const char *group)
{
	return g_str_has_prefix(group, HOST_GROUP_PREFIX) || strcmp(group, "host") == 0;
}

static const char *
host_group_name(const char *group)
{
	return strlen(group) > strlen(HOST_GROUP_PREFIX) ? group + strlen(HOST_GROUP_PREFIX) : "";
}

static const MagpieConfigKey *
group_schema(const char *group)
{
	for (gsize i = 0; i < G_N_ELEMENTS(core_groups); i++)
		if (strcmp(group, core_groups[i].group) == 0)
			return core_groups[i].schema;
	if (is_host_group(group))
		return host_schema;
	return NULL;
}

/* @group may also be plain "host" for the schema of [host NAME] groups. */
const MagpieConfigKey *
magpie_config_core_schema(const char *group)
{
	g_return_val_if_fail(group != NULL, NULL);
	return group_schema(group);
}

/* The schema entry for @key; module groups also accept "enabled". */
static const MagpieConfigKey *
schema_lookup(const MagpieConfigKey *schema, const char *key, gboolean is_module)
{
	for (const MagpieConfigKey *k = schema; k != NULL && k->key != NULL; k++)
		if (strcmp(k->key, key) == 0)
			return k;
	if (is_module && strcmp(key, "enabled") == 0)
		return &module_enabled_key;
	return NULL;
}

/* ---- Small helpers ---------------------------------------------------- */

/* Text from a file made safe for one line of a message: valid UTF-8, no
 * control characters, at most @max characters. */
static char *
display_text(const char *text, gsize max)
{
	g_autofree char *valid = g_utf8_make_valid(text, -1);
	GString *out = g_string_new(NULL);
	gsize n = 0;

	for (const char *p = valid; *p != '\0'; p = g_utf8_next_char(p)) {
		gunichar c = g_utf8_get_char(p);

		if (n++ == max) {
			g_string_append(out, "…");
			break;
		}
		if (c < 0x20 || c == 0x7f)
			g_string_append_printf(out, "\\x%02x", c);
		else
			g_string_append_unichar(out, c);
	}
	return g_string_free(out, FALSE);
}

static char *
display(const char *text)
{
	return display_text(text, CONFIG_DISPLAY_MAX);
}

/* Unescape one GKeyFile value ("\s", "\n", "\\"...) the way GKeyFile does. */
static char *
unescape_string(const char *raw, GError **error)
{
	g_autoptr(GKeyFile) scratch = g_key_file_new();
	g_autofree char *chomped = g_strchomp(g_strdup(raw));

	g_key_file_set_value(scratch, "x", "v", chomped);
	return g_key_file_get_string(scratch, "x", "v", error);
}

/* A ';' list as GKeyFile splits it; items are trimmed, empty ones dropped. */
static GStrv
parse_list(const char *raw)
{
	g_autoptr(GKeyFile) scratch = g_key_file_new();
	g_autoptr(GStrvBuilder) builder = g_strv_builder_new();
	g_auto(GStrv) items = NULL;

	g_key_file_set_value(scratch, "x", "v", raw != NULL ? raw : "");
	items = g_key_file_get_string_list(scratch, "x", "v", NULL, NULL);
	for (gsize i = 0; items != NULL && items[i] != NULL; i++) {
		g_strstrip(items[i]);
		if (items[i][0] != '\0')
			g_strv_builder_add(builder, items[i]);
	}
	return g_strv_builder_end(builder);
}

static char *
escape_list(const char *const *items)
{
	g_autoptr(GKeyFile) scratch = g_key_file_new();

	char *value;
	gsize len;

	g_key_file_set_string_list(scratch, "x", "v", items, g_strv_length((GStrv) items));
	value = g_key_file_get_value(scratch, "x", "v", NULL);
	/* GKeyFile ends every item with ';'; the last one reads better without. */
	len = strlen(value);
	if (len > 0 && value[len - 1] == ';')
		value[len - 1] = '\0';
	return value;
}

static char *
escape_string(const char *value)
{
	g_autoptr(GKeyFile) scratch = g_key_file_new();

	g_key_file_set_string(scratch, "x", "v", value);
	return g_key_file_get_value(scratch, "x", "v", NULL);
}

static gboolean
parse_bool(const char *text, gboolean *out)
{
	g_autofree char *s = g_strstrip(g_strdup(text));

	if (g_ascii_strcasecmp(s, "true") == 0 || g_ascii_strcasecmp(s, "yes") == 0 ||
	    strcmp(s, "1") == 0) {
		*out = TRUE;
		return TRUE;
	}
	if (g_ascii_strcasecmp(s, "false") == 0 || g_ascii_strcasecmp(s, "no") == 0 ||
	    strcmp(s, "0") == 0) {
		*out = FALSE;
		return TRUE;
	}
	return FALSE;
}

static gboolean
parse_int(const char *text, gint64 *out)
{
	g_autofree char *s = g_strstrip(g_strdup(text));

	return g_ascii_string_to_signed(s, 10, G_MININT64, G_MAXINT64, out, NULL);
}

/* "<digits><unit>" with the unit looked up in @units (NULL-terminated
 * pairs of suffix and multiplier); a missing unit multiplies by @bare. */
typedef struct {
	const char *suffix;
	gint64 factor;
} Unit;

static const Unit duration_units[] = {
	{ "ms", 1 },          { "s", 1000 },         { "m", 60 * 1000 },
	{ "h", 3600 * 1000 }, { "d", 86400 * 1000 }, { NULL, 0 },
};

static const Unit size_units[] = {
	{ "k", 1024 },
	{ "kb", 1024 },
	{ "kib", 1024 },
	{ "m", 1024 * 1024 },
	{ "mb", 1024 * 1024 },
	{ "mib", 1024 * 1024 },
	{ "g", 1024 * 1024 * 1024 },
	{ "gb", 1024 * 1024 * 1024 },
	{ "gib", 1024 * 1024 * 1024 },
	{ "b", 1 },
	{ NULL, 0 },
};

static gboolean
parse_with_unit(const char *text, const Unit *units, gint64 bare, gint64 *out)
{
	g_autofree char *s = g_strstrip(g_strdup(text));
	const char *p = s;
	guint64 number = 0;
	gint64 factor = 0;

	if (!g_ascii_isdigit(*p))
		return FALSE;
	while (g_ascii_isdigit(*p)) {
		if (number > (guint64) G_MAXINT64 / 10)
			return FALSE;
		number = number * 10 + (guint64) (*p - '0');
		p++;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0') {
		factor = bare;
	} else {
		for (const Unit *u = units; u->suffix != NULL; u++) {
			if (g_ascii_strcasecmp(p, u->suffix) == 0) {
				factor = u->factor;
				break;
			}
		}
		/* "m" is minutes for durations; "M" would be a typo for months. */
		if (units == duration_units && strcmp(p, "M") == 0)
			factor = 0;
	}
	if (factor == 0 || number > (guint64) (G_MAXINT64 / factor))
		return FALSE;
	*out = (gint64) number * factor;
	return TRUE;
}

static gboolean
parse_duration(const char *text, gint64 *ms_out)
{
	return parse_with_unit(text, duration_units, 1000, ms_out);
}

static gboolean
parse_size(const char *text, gint64 *bytes_out)
{
	return parse_with_unit(text, size_units, 1, bytes_out);
}

static char *
format_duration(gint64 ms)
{
	if (ms != 0 && ms % (86400 * 1000) == 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "d", ms / (86400 * 1000));
	if (ms != 0 && ms % (3600 * 1000) == 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "h", ms / (3600 * 1000));
	if (ms != 0 && ms % (60 * 1000) == 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "m", ms / (60 * 1000));
	if (ms % 1000 == 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "s", ms / 1000);
	return g_strdup_printf("%" G_GINT64_FORMAT "ms", ms);
}

static char *
format_size(gint64 bytes)
{
	if (bytes != 0 && bytes % (1024 * 1024 * 1024) == 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "G", bytes / (1024 * 1024 * 1024));
	if (bytes != 0 && bytes % (1024 * 1024) == 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "M", bytes / (1024 * 1024));
	if (bytes != 0 && bytes % 1024 == 0)
		return g_strdup_printf("%" G_GINT64_FORMAT "k", bytes / 1024);
	return g_strdup_printf("%" G_GINT64_FORMAT, bytes);
}

static char *
format_number(MagpieConfigType type, gint64 value)
{
	if (type == MAGPIE_CONFIG_DURATION)
		return format_duration(value);
	if (type == MAGPIE_CONFIG_SIZE)
		return format_size(value);
	return g_strdup_printf("%" G_GINT64_FORMAT, value);
}

/* "IPv4:port", "[IPv6]:port" or "*:port". */
static gboolean
parse_listen_address(const char *text, char **error_out)
{
	g_autofree char *host = NULL;
	const char *colon = strrchr(text, ':');
	const char *port_text;
	guint64 port = 0;

	if (colon == NULL) {
		*error_out = g_strdup("has no port (use IPv4:port, [IPv6]:port or *:port)");
		return FALSE;
	}
	port_text = colon + 1;
	if (!g_ascii_string_to_unsigned(port_text, 10, 1, 65535, &port, NULL)) {
		*error_out = g_strdup("has no valid port (1..65535)");
		return FALSE;
	}
	host = g_strndup(text, (gsize) (colon - text));
	if (strcmp(host, "*") == 0)
		return TRUE;
	if (host[0] == '[') {
		gsize len = strlen(host);
		g_autoptr(GInetAddress) addr = NULL;

		if (len < 3 || host[len - 1] != ']') {
			*error_out = g_strdup("is not a valid address (use [IPv6]:port)");
			return FALSE;
		}
		host[len - 1] = '\0';
		addr = g_inet_address_new_from_string(host + 1);
		if (addr == NULL || g_inet_address_get_family(addr) != G_SOCKET_FAMILY_IPV6) {
			*error_out = g_strdup("is not a valid IPv6 address");
			return FALSE;
		}
		return TRUE;
	}
	if (strchr(host, ':') != NULL) {
		*error_out = g_strdup("is not valid: put an IPv6 address in brackets, [::1]:5222");
		return FALSE;
	}
	{
		g_autoptr(GInetAddress) addr = g_inet_address_new_from_string(host);

		if (addr == NULL || g_inet_address_get_family(addr) != G_SOCKET_FAMILY_IPV4) {
			*error_out = g_strdup("is not a valid IPv4 address (use IPv4:port, "
			                      "[IPv6]:port or *:port)");
			return FALSE;
		}
	}
	return TRUE;
}

static gboolean
is_valid_host_name(const char *name)
{
	gsize len = strlen(name);

	if (len == 0 || len > 1023 || !g_utf8_validate(name, -1, NULL))
		return FALSE;
	if (name[0] == '.' || strstr(name, "..") != NULL)
		return FALSE;
	for (const char *p = name; *p != '\0'; p++) {
		guchar c = (guchar) *p;

		if (c <= 0x20 || c == 0x7f || strchr("@/\"&'<>:[]\\;,", c) != NULL)
			return FALSE;
	}
	return TRUE;
}

static gboolean
is_valid_module_name(const char *name)
{
	gsize len = strlen(name);

	if (len == 0 || len > 64)
		return FALSE;
	for (const char *p = name; *p != '\0'; p++)
		if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-')
			return FALSE;
	return TRUE;
}

static guint
edit_distance(const char *a, const char *b)
{
	gsize la = strlen(a), lb = strlen(b);
	g_autofree guint *row = NULL;

	if (la > lb + 2 || lb > la + 2)
		return 3;
	row = g_new(guint, lb + 1);
	for (gsize j = 0; j <= lb; j++)
		row[j] = (guint) j;
	for (gsize i = 1; i <= la; i++) {
		guint diag = row[0];

		row[0] = (guint) i;
		for (gsize j = 1; j <= lb; j++) {
			guint up = row[j];
			guint best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);

			best = MIN(best, up + 1);
			best = MIN(best, row[j - 1] + 1);
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* ---- The merged structure --------------------------------------------- */

static void
config_edit_free(gpointer data)
{
	ConfigEdit *edit = data;

	g_strfreev(edit->items);
	g_free(edit);
}

static void
config_entry_free(gpointer data)
{
	ConfigEntry *entry = data;

	g_free(entry->key);
	g_free(entry->raw);
	g_free(entry->origin);
	g_clear_pointer(&entry->edits, g_ptr_array_unref);
	g_free(entry->string_cache);
	g_strfreev(entry->strv_cache);
	g_free(entry);
}

static void
config_group_free(gpointer data)
{
	ConfigGroup *group = data;

	g_free(group->name);
	g_free(group->origin);
	g_hash_table_unref(group->keys);
	g_ptr_array_unref(group->order);
	g_free(group);
}

static ConfigGroup *
config_group(MagpieConfigFile *cfg, const char *name, const char *origin)
{
	ConfigGroup *group = g_hash_table_lookup(cfg->by_name, name);

	if (group == NULL && origin != NULL) {
		group = g_new0(ConfigGroup, 1);
		group->name = g_strdup(name);
		group->origin = g_strdup(origin);
		group->order = g_ptr_array_new_with_free_func(config_entry_free);
		group->keys = g_hash_table_new(g_str_hash, g_str_equal);
		g_ptr_array_add(cfg->groups, group);
		g_hash_table_insert(cfg->by_name, group->name, group);
	}
	return group;
}

static ConfigEntry *
config_entry(MagpieConfigFile *cfg, const char *group_name, const char *key)
{
	ConfigGroup *group = g_hash_table_lookup(cfg->by_name, group_name);

	return group != NULL ? g_hash_table_lookup(group->keys, key) : NULL;
}

static void
merge_key(ConfigGroup *group, const char *name, const char *raw, const char *origin)
{
	g_autofree char *key = g_strdup(name);
	gsize len = strlen(key);
	int op = 0; /* '+', '-' or plain */
	ConfigEntry *entry;

	if (len > 1 && (key[len - 1] == '+' || key[len - 1] == '-')) {
		op = key[len - 1];
		key[len - 1] = '\0';
		g_strchomp(key);
		if (key[0] == '\0') {
			g_free(key);
			key = g_strdup(name);
			op = 0;
		}
	}
	entry = g_hash_table_lookup(group->keys, key);
	if (entry == NULL) {
		entry = g_new0(ConfigEntry, 1);
		entry->key = g_strdup(key);
		g_ptr_array_add(group->order, entry);
		g_hash_table_insert(group->keys, entry->key, entry);
	}
	g_free(entry->origin);
	entry->origin = g_strdup(origin);
	if (op == 0) {
		g_free(entry->raw);
		entry->raw = g_strdup(raw);
		g_clear_pointer(&entry->edits, g_ptr_array_unref);
	} else {
		ConfigEdit *edit = g_new0(ConfigEdit, 1);

		edit->append = op == '+';
		edit->items = parse_list(raw);
		if (entry->edits == NULL)
			entry->edits = g_ptr_array_new_with_free_func(config_edit_free);
		g_ptr_array_add(entry->edits, edit);
	}
}

/* GKeyFile quotes the offending line; find its number for the message. */
static guint
find_line(const char *contents, const char *message)
{
	const char *open = strstr(message, "“");
	const char *close;
	g_autofree char *quoted = NULL;
	g_auto(GStrv) lines = NULL;

	if (open == NULL)
		return 0;
	open += strlen("“");
	close = strstr(open, "”");
	if (close == NULL)
		return 0;
	quoted = g_strndup(open, (gsize) (close - open));
	if (quoted[0] == '\0')
		return 0;
	lines = g_strsplit(contents, "\n", -1);
	for (guint i = 0; lines[i] != NULL; i++) {
		g_strchomp(lines[i]);
		if (strcmp(g_strchug(lines[i]), quoted) == 0)
			return i + 1;
	}
	return 0;
}

static gboolean
load_one(MagpieConfigFile *cfg, const char *path, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autoptr(GError) local_error = NULL;
	g_autofree char *contents = NULL;
	g_auto(GStrv) groups = NULL;
	gsize length = 0;

	if (!g_file_get_contents(path, &contents, &length, &local_error)) {
		g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_IO, "%s: %s", path,
		            local_error->message);
		return FALSE;
	}
	if (length > CONFIG_MAX_FILE_SIZE) {
		g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_IO,
		            "%s: file too large (more than %d MiB)", path,
		            CONFIG_MAX_FILE_SIZE / (1024 * 1024));
		return FALSE;
	}
	if (memchr(contents, '\0', length) != NULL) {
		g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE,
		            "%s: contains a NUL byte (not a text file)", path);
		return FALSE;
	}
	if (!g_key_file_load_from_data(kf, contents, length, G_KEY_FILE_NONE, &local_error)) {
		guint line = find_line(contents, local_error->message);
		g_autofree char *message = display_text(local_error->message, 300);

		if (line > 0)
			g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE,
			            "%s:%u: %s", path, line, message);
		else
			g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE, "%s: %s",
			            path, message);
		return FALSE;
	}

	g_ptr_array_add(cfg->files, g_strdup(path));
	groups = g_key_file_get_groups(kf, NULL);
	for (gsize i = 0; groups[i] != NULL; i++) {
		ConfigGroup *group = config_group(cfg, groups[i], path);
		g_auto(GStrv) keys = g_key_file_get_keys(kf, groups[i], NULL, NULL);
		g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

		for (gsize j = 0; keys != NULL && keys[j] != NULL; j++) {
			g_autofree char *raw = NULL;

			/* GKeyFile lists a key repeated in one file twice;
			 * its value is the last one. */
			if (!g_hash_table_add(seen, keys[j]))
				continue;
			raw = g_key_file_get_value(kf, groups[i], keys[j], NULL);
			if (raw != NULL)
				merge_key(group, keys[j], raw, path);
		}
	}
	return TRUE;
}

static int
compare_names(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static GStrv compute_hosts(MagpieConfigFile *cfg);
static guint *compute_host_hashes(const char *const *hosts);

MagpieConfigFile *
magpie_config_file_load(const char *path, GError **error)
{
	g_autoptr(GPtrArray) confd_files = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *main_file = NULL;
	g_autofree char *confd = NULL;
	MagpieConfigFile *cfg;

	g_return_val_if_fail(path != NULL, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);

	if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
		main_file = g_build_filename(path, "magpie.conf", NULL);
		confd = g_build_filename(path, "conf.d", NULL);
		if (!g_file_test(main_file, G_FILE_TEST_EXISTS))
			g_clear_pointer(&main_file, g_free);
	} else if (g_file_test(path, G_FILE_TEST_EXISTS)) {
		g_autofree char *dir = g_path_get_dirname(path);

		main_file = g_strdup(path);
		confd = g_build_filename(dir, "conf.d", NULL);
	} else {
		g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_IO,
		            "%s: no such file or directory", path);
		return NULL;
	}

	if (g_file_test(confd, G_FILE_TEST_IS_DIR)) {
		g_autoptr(GError) local_error = NULL;
		g_autoptr(GDir) dir = g_dir_open(confd, 0, &local_error);
		const char *name;

		if (dir == NULL) {
			g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_IO, "%s",
			            local_error->message);
			return NULL;
		}
		while ((name = g_dir_read_name(dir)) != NULL) {
			g_autofree char *full = NULL;

			if (name[0] == '.' || !g_str_has_suffix(name, ".conf"))
				continue;
			full = g_build_filename(confd, name, NULL);
			if (!g_file_test(full, G_FILE_TEST_IS_REGULAR))
				continue;
			g_ptr_array_add(confd_files, g_strdup(name));
		}
		g_ptr_array_sort(confd_files, compare_names);
	}

	if (main_file == NULL && confd_files->len == 0) {
		g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_IO,
		            "%s: neither magpie.conf nor conf.d/*.conf found", path);
		return NULL;
	}

	cfg = g_new0(MagpieConfigFile, 1);
	cfg->path = g_strdup(path);
	cfg->files = g_ptr_array_new_with_free_func(g_free);
	cfg->groups = g_ptr_array_new_with_free_func(config_group_free);
	cfg->by_name = g_hash_table_new(g_str_hash, g_str_equal);
	cfg->default_strv =
	        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_strfreev);

	if (main_file != NULL && !load_one(cfg, main_file, error)) {
		magpie_config_file_free(cfg);
		return NULL;
	}
	for (guint i = 0; i < confd_files->len; i++) {
		g_autofree char *full = g_build_filename(confd, confd_files->pdata[i], NULL);

		if (!load_one(cfg, full, error)) {
			magpie_config_file_free(cfg);
			return NULL;
		}
	}
	cfg->hosts = compute_hosts(cfg);
	cfg->host_hashes = compute_host_hashes((const char *const *) cfg->hosts);
	return cfg;
}

const char *
magpie_config_file_path(MagpieConfigFile *cfg)
{
	g_return_val_if_fail(cfg != NULL, NULL);
	return cfg->path;
}

void
magpie_config_file_free(MagpieConfigFile *cfg)
{
	if (cfg == NULL)
		return;
	g_free(cfg->path);
	g_ptr_array_unref(cfg->files);
	g_hash_table_unref(cfg->by_name);
	g_ptr_array_unref(cfg->groups);
	g_hash_table_unref(cfg->default_strv);
	g_strfreev(cfg->hosts);
	g_free(cfg->host_hashes);
	g_free(cfg);
}

/* ---- Resolving values ------------------------------------------------- */

static GStrv
apply_edits(const char *base_raw, GPtrArray *edits)
{
	g_auto(GStrv) base = parse_list(base_raw);
	g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func(g_free);

	for (gsize i = 0; base[i] != NULL; i++)
		g_ptr_array_add(items, g_strdup(base[i]));
	for (guint e = 0; edits != NULL && e < edits->len; e++) {
		ConfigEdit *edit = edits->pdata[e];

		for (gsize i = 0; edit->items[i] != NULL; i++) {
			if (edit->append) {
				g_ptr_array_add(items, g_strdup(edit->items[i]));
				continue;
			}
			for (guint j = items->len; j > 0; j--)
				if (strcmp(items->pdata[j - 1], edit->items[i]) == 0)
					g_ptr_array_remove_index(items, j - 1);
		}
	}
	g_ptr_array_add(items, NULL);
	return (GStrv) g_ptr_array_free(g_steal_pointer(&items), FALSE);
}

/* The list value of @entry on top of @default_raw; (transfer none). */
static const char *const *
entry_strv(ConfigEntry *entry, const char *default_raw)
{
	if (entry->strv_cache == NULL)
		entry->strv_cache =
		        apply_edits(entry->raw != NULL ? entry->raw : default_raw, entry->edits);
	return (const char *const *) entry->strv_cache;
}

/* The text of @entry as one value (a list edited with += is rejoined). */
static const char *
entry_string(ConfigEntry *entry, const char *default_raw)
{
	if (entry->string_cache == NULL) {
		if (entry->edits != NULL) {
			entry->string_cache =
			        g_strjoinv(";", (GStrv) entry_strv(entry, default_raw));
		} else {
			entry->string_cache = unescape_string(entry->raw, NULL);
			if (entry->string_cache == NULL)
				entry->string_cache = g_strchomp(g_strdup(entry->raw));
		}
	}
	return entry->string_cache;
}

static const MagpieConfigKey *
schema_for_access(const char *group, const char *key, const MagpieConfigKey *schema)
{
	gboolean is_module = schema != NULL || group_schema(group) == NULL;
	const MagpieConfigKey *spec;

	if (schema == NULL)
		schema = group_schema(group);
	spec = schema_lookup(schema, key, is_module);
	if (spec == NULL)
		g_critical("configuration key [%s] %s is not declared", group, key);
	return spec;
}

const char *
magpie_config_file_string(MagpieConfigFile *cfg, const char *group, const char *key,
                          const MagpieConfigKey *schema)
{
	const MagpieConfigKey *spec;
	ConfigEntry *entry;

	g_return_val_if_fail(cfg != NULL, NULL);
	g_return_val_if_fail(group != NULL && key != NULL, NULL);

	spec = schema_for_access(group, key, schema);
	entry = config_entry(cfg, group, key);
	if (entry == NULL)
		return spec != NULL ? spec->default_value : NULL;
	return entry_string(entry, spec != NULL ? spec->default_value : NULL);
}

/* The number a valid text would give, else the default's, else 0. */
static gint64
number_value(MagpieConfigType type, const char *text, const char *fallback)
{
	for (int pass = 0; pass < 2; pass++) {
		const char *t = pass == 0 ? text : fallback;
		gint64 value = 0;
		gboolean ok = FALSE;

		if (t == NULL)
			continue;
		switch (type) {
		case MAGPIE_CONFIG_DURATION:
			ok = parse_duration(t, &value);
			break;
		case MAGPIE_CONFIG_SIZE:
			ok = parse_size(t, &value);
			break;
		case MAGPIE_CONFIG_BOOL: {
			gboolean b = FALSE;

			ok = parse_bool(t, &b);
			value = b;
			break;
		}
		default:
			ok = parse_int(t, &value);
			break;
		}
		if (ok)
			return value;
	}
	return 0;
}

gint64
magpie_config_file_int(MagpieConfigFile *cfg, const char *group, const char *key,
                       const MagpieConfigKey *schema)
{
	const MagpieConfigKey *spec;
	ConfigEntry *entry;

	g_return_val_if_fail(cfg != NULL, 0);
	g_return_val_if_fail(group != NULL && key != NULL, 0);

	spec = schema_for_access(group, key, schema);
	if (spec == NULL)
		return 0;
	entry = config_entry(cfg, group, key);
	return number_value(spec->type,
	                    entry != NULL ? entry_string(entry, spec->default_value) : NULL,
	                    spec->default_value);
}

gboolean
magpie_config_file_bool(MagpieConfigFile *cfg, const char *group, const char *key,
                        const MagpieConfigKey *schema)
{
	const MagpieConfigKey *spec;
	ConfigEntry *entry;
	gboolean value = FALSE;

	g_return_val_if_fail(cfg != NULL, FALSE);
	g_return_val_if_fail(group != NULL && key != NULL, FALSE);

	spec = schema_for_access(group, key, schema);
	if (spec == NULL)
		return FALSE;
	entry = config_entry(cfg, group, key);
	if (entry != NULL && parse_bool(entry_string(entry, spec->default_value), &value))
		return value;
	if (spec->default_value != NULL && parse_bool(spec->default_value, &value))
		return value;
	return FALSE;
}

static const char *const *
default_strv(MagpieConfigFile *cfg, const char *group, const char *key, const char *default_raw)
{
	g_autofree char *id = g_strdup_printf("%s\n%s", group, key);
	GStrv strv = g_hash_table_lookup(cfg->default_strv, id);

	if (strv == NULL) {
		strv = parse_list(default_raw);
		g_hash_table_insert(cfg->default_strv, g_steal_pointer(&id), strv);
	}
	return (const char *const *) strv;
}

const char *const *
magpie_config_file_strv(MagpieConfigFile *cfg, const char *group, const char *key,
                        const MagpieConfigKey *schema)
{
	const MagpieConfigKey *spec;
	ConfigEntry *entry;

	g_return_val_if_fail(cfg != NULL, NULL);
	g_return_val_if_fail(group != NULL && key != NULL, NULL);

	spec = schema_for_access(group, key, schema);
	entry = config_entry(cfg, group, key);
	if (entry != NULL)
		return entry_strv(entry, spec != NULL ? spec->default_value : NULL);
	return default_strv(cfg, group, key, spec != NULL ? spec->default_value : NULL);
}

const char *
magpie_config_file_origin(MagpieConfigFile *cfg, const char *group, const char *key)
{
	ConfigEntry *entry;

	g_return_val_if_fail(cfg != NULL, NULL);
	g_return_val_if_fail(group != NULL && key != NULL, NULL);

	entry = config_entry(cfg, group, key);
	return entry != NULL ? entry->origin : NULL;
}

/* ---- Hosts and modules ------------------------------------------------ */

static gboolean
host_group_enabled(MagpieConfigFile *cfg, const char *group)
{
	ConfigEntry *entry = config_entry(cfg, group, "enabled");
	gboolean enabled = TRUE;

	if (entry != NULL && !parse_bool(entry_string(entry, "true"), &enabled))
		enabled = TRUE;
	return enabled;
}

static GStrv
compute_hosts(MagpieConfigFile *cfg)
{
	g_autoptr(GPtrArray) hosts = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GHashTable) disabled =
	        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	const char *const *listed = magpie_config_file_strv(cfg, "core", "hosts", NULL);

	for (guint i = 0; i < cfg->groups->len; i++) {
		ConfigGroup *group = cfg->groups->pdata[i];

		if (is_host_group(group->name) && !host_group_enabled(cfg, group->name))
			g_hash_table_add(disabled,
			                 g_ascii_strdown(host_group_name(group->name), -1));
	}
	for (gsize i = 0; listed[i] != NULL; i++)
		g_ptr_array_add(hosts, g_ascii_strdown(listed[i], -1));
	for (guint i = 0; i < cfg->groups->len; i++) {
		ConfigGroup *group = cfg->groups->pdata[i];
		const char *name = host_group_name(group->name);

		if (is_host_group(group->name) && is_valid_host_name(name))
			g_ptr_array_add(hosts, g_ascii_strdown(name, -1));
	}

	{
		g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
		g_autoptr(GStrvBuilder) builder = g_strv_builder_new();

		for (guint i = 0; i < hosts->len; i++) {
			const char *host = hosts->pdata[i];

			if (g_hash_table_contains(disabled, host) || !is_valid_host_name(host) ||
			    !g_hash_table_add(seen, (gpointer) host))
				continue;
			g_strv_builder_add(builder, host);
		}
		return g_strv_builder_end(builder);
	}
}

/* g_str_hash() of the ASCII lower case of @name; *@upper_out tells whether
 * @name had upper case letters. */
static guint
host_hash(const char *name, gboolean *upper_out)
{
	guint h = 5381;
	gboolean upper = FALSE;

	for (const char *p = name; *p; p++) {
		guchar c = (guchar) *p;
		if (c >= 'A' && c <= 'Z') {
			c += 'a' - 'A';
			upper = TRUE;
		}
		h = (h << 5) + h + c;
	}
	if (upper_out)
		*upper_out = upper;
	return h;
}

static guint *
compute_host_hashes(const char *const *hosts)
{
	gsize n = g_strv_length((char **) hosts);
	guint *hashes = g_new(guint, n + 1);

	for (gsize i = 0; i < n; i++)
		hashes[i] = host_hash(hosts[i], NULL);
	return hashes;
}

const char *const *
magpie_config_file_hosts(MagpieConfigFile *cfg)
{
	g_return_val_if_fail(cfg != NULL, NULL);
	return (const char *const *) cfg->hosts;
}

GStrv
magpie_config_file_module_groups(MagpieConfigFile *cfg)
{
	g_autoptr(GStrvBuilder) builder = g_strv_builder_new();

	g_return_val_if_fail(cfg != NULL, NULL);

	for (guint i = 0; i < cfg->groups->len; i++) {
		ConfigGroup *group = cfg->groups->pdata[i];

		if (group_schema(group->name) == NULL && is_valid_module_name(group->name))
			g_strv_builder_add(builder, group->name);
	}
	return g_strv_builder_end(builder);
}

gboolean
magpie_config_file_module_enabled(MagpieConfigFile *cfg, const char *module)
{
	ConfigEntry *entry;
	gboolean enabled = FALSE;

	g_return_val_if_fail(cfg != NULL, FALSE);
	g_return_val_if_fail(module != NULL, FALSE);

	if (group_schema(module) != NULL)
		return FALSE;
	entry = config_entry(cfg, module, "enabled");
	if (entry == NULL || !parse_bool(entry_string(entry, "false"), &enabled))
		return FALSE;
	return enabled;
}

/* ---- Checking --------------------------------------------------------- */

static void add_problem(GPtrArray *list, const char *file, const char *group, const char *key,
                        const char *format, ...) G_GNUC_PRINTF(5, 6);

static void
add_problem(GPtrArray *list, const char *file, const char *group, const char *key,
            const char *format, ...)
{
	g_autofree char *message = NULL;
	g_autofree char *shown_group = display(group);
	g_autofree char *shown_key = key != NULL ? display(key) : NULL;
	va_list args;

	if (list == NULL)
		return;
	va_start(args, format);
	message = g_strdup_vprintf(format, args);
	va_end(args);
	if (shown_key != NULL)
		g_ptr_array_add(list, g_strdup_printf("%s: [%s] %s: %s", file, shown_group,
		                                      shown_key, message));
	else
		g_ptr_array_add(list, g_strdup_printf("%s: [%s] %s", file, shown_group, message));
}

static const char *
main_file(MagpieConfigFile *cfg)
{
	return cfg->files->len > 0 ? cfg->files->pdata[0] : cfg->path;
}

/* Check one present key against its spec. */
static void
check_value(const char *group, ConfigEntry *entry, const MagpieConfigKey *spec, GPtrArray *problems)
{
	const char *file = entry->origin;
	g_autoptr(GError) error = NULL;
	g_autofree char *text = NULL;
	g_autofree char *shown = NULL;
	gint64 value = 0;
	gboolean ok = TRUE;

	if (entry->edits != NULL && spec->type != MAGPIE_CONFIG_STRING_LIST) {
		add_problem(problems, file, group, entry->key,
		            "'+=' and '-=' work only on lists; use '='");
		return;
	}
	if (spec->type == MAGPIE_CONFIG_STRING_LIST)
		return; /* any text is a list; items are checked by the caller */

	text = unescape_string(entry->raw, &error);
	if (text == NULL) {
		g_autofree char *raw = display(entry->raw);

		if (!g_utf8_validate(entry->raw, -1, NULL))
			add_problem(problems, file, group, entry->key, "'%s' is not valid UTF-8",
			            raw);
		else
			add_problem(problems, file, group, entry->key,
			            "'%s' has an invalid escape sequence (use \\s, \\n, \\t, "
			            "\\r or \\\\)",
			            raw);
		return;
	}
	shown = display(text);
	switch (spec->type) {
	case MAGPIE_CONFIG_BOOL: {
		gboolean b;

		if (!parse_bool(text, &b))
			add_problem(problems, file, group, entry->key,
			            "'%s' is not a boolean (use true or false)", shown);
		return;
	}
	case MAGPIE_CONFIG_INT:
		ok = parse_int(text, &value);
		if (!ok)
			add_problem(problems, file, group, entry->key, "'%s' is not an integer",
			            shown);
		break;
	case MAGPIE_CONFIG_DURATION:
		ok = parse_duration(text, &value);
		if (!ok)
			add_problem(problems, file, group, entry->key,
			            "'%s' is not a duration (use 500ms, 30s, 5m, 2h, 1d)", shown);
		break;
	case MAGPIE_CONFIG_SIZE:
		ok = parse_size(text, &value);
		if (!ok)
			add_problem(problems, file, group, entry->key,
			            "'%s' is not a size (use 512, 64k, 1M)", shown);
		break;
	case MAGPIE_CONFIG_STRING:
	case MAGPIE_CONFIG_STRING_LIST:
		return;
	}
	if (ok && (spec->min != 0 || spec->max != 0) && (value < spec->min || value > spec->max)) {
		g_autofree char *min = format_number(spec->type, spec->min);
		g_autofree char *max = format_number(spec->type, spec->max);

		add_problem(problems, file, group, entry->key, "'%s' is out of range (%s..%s)",
		            shown, min, max);
	}
}

static void
check_unknown_key(const char *group, ConfigEntry *entry, const MagpieConfigKey *schema,
                  gboolean is_module, GPtrArray *warnings)
{
	const char *best = NULL;
	guint best_distance = 3;

	for (const MagpieConfigKey *k = schema; k != NULL && k->key != NULL; k++) {
		guint d = edit_distance(entry->key, k->key);

		if (d < best_distance) {
			best = k->key;
			best_distance = d;
		}
	}
	if (is_module && edit_distance(entry->key, "enabled") < best_distance)
		best = "enabled";
	if (best != NULL)
		add_problem(warnings, entry->origin, group, entry->key,
		            "unknown key (did you mean '%s'?)", best);
	else
		add_problem(warnings, entry->origin, group, entry->key, "unknown key");
}

static void
check_group(MagpieConfigFile *cfg, const char *group_name, const MagpieConfigKey *schema,
            gboolean is_module, GPtrArray *problems, GPtrArray *warnings)
{
	ConfigGroup *group = g_hash_table_lookup(cfg->by_name, group_name);

	if (group == NULL)
		return;
	for (guint i = 0; i < group->order->len; i++) {
		ConfigEntry *entry = group->order->pdata[i];
		const MagpieConfigKey *spec = schema_lookup(schema, entry->key, is_module);

		if (spec == NULL)
			check_unknown_key(group_name, entry, schema, is_module, warnings);
		else
			check_value(group_name, entry, spec, problems);
	}
}

/* A certificate or key file must exist and be readable by us. */
static void
check_readable(MagpieConfigFile *cfg, const char *group, const char *key, GPtrArray *problems)
{
	ConfigEntry *entry = config_entry(cfg, group, key);
	const char *path;
	g_autofree char *shown = NULL;
	int fd;

	if (entry == NULL)
		return;
	path = entry_string(entry, NULL);
	shown = display(path);
	if (path[0] == '\0') {
		add_problem(problems, entry->origin, group, key, "empty path");
		return;
	}
	fd = g_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		int saved = errno;

		if (saved == ENOENT)
			add_problem(problems, entry->origin, group, key, "'%s' does not exist",
			            shown);
		else
			add_problem(problems, entry->origin, group, key, "cannot read '%s': %s",
			            shown, g_strerror(saved));
		return;
	}
	g_close(fd, NULL);
	if (!g_file_test(path, G_FILE_TEST_IS_REGULAR))
		add_problem(problems, entry->origin, group, key, "'%s' is not a regular file",
		            shown);
}

/* certificate and key come as a pair. Returns TRUE when the group sets
 * either of them (a missing half is reported here). */
static gboolean
check_cert_pair(MagpieConfigFile *cfg, const char *group, GPtrArray *problems)
{
	gboolean has_cert = config_entry(cfg, group, "certificate") != NULL;
	gboolean has_key = config_entry(cfg, group, "key") != NULL;

	check_readable(cfg, group, "certificate", problems);
	check_readable(cfg, group, "key", problems);
	if (has_cert && !has_key)
		add_problem(problems, magpie_config_file_origin(cfg, group, "certificate"), group,
		            "key", "missing: 'certificate' is set without its 'key'");
	if (has_key && !has_cert)
		add_problem(problems, magpie_config_file_origin(cfg, group, "key"), group,
		            "certificate", "missing: 'key' is set without its 'certificate'");
	return has_cert || has_key;
}

static void
check_listen(MagpieConfigFile *cfg, const char *key, GPtrArray *problems)
{
	ConfigEntry *entry = config_entry(cfg, "c2s", key);
	const char *const *addresses;

	if (entry == NULL)
		return;
	addresses = entry_strv(entry, schema_lookup(c2s_schema, key, FALSE)->default_value);
	for (gsize i = 0; addresses[i] != NULL; i++) {
		g_autofree char *why = NULL;

		if (!parse_listen_address(addresses[i], &why)) {
			g_autofree char *shown = display(addresses[i]);

			add_problem(problems, entry->origin, "c2s", key, "'%s' %s", shown, why);
		}
	}
}

void
magpie_config_file_check_core(MagpieConfigFile *cfg, GPtrArray *problems, GPtrArray *warnings)
{
	gboolean tls_default;
	ConfigEntry *entry;

	g_return_if_fail(cfg != NULL);

	for (gsize i = 0; i < G_N_ELEMENTS(core_groups); i++)
		check_group(cfg, core_groups[i].group, core_groups[i].schema, FALSE, problems,
		            warnings);

	entry = config_entry(cfg, "core", "log-level");
	if (entry != NULL && entry->edits == NULL) {
		const char *level = entry_string(entry, NULL);

		if (!g_strv_contains(log_levels, level)) {
			g_autofree char *shown = display(level);

			add_problem(problems, entry->origin, "core", "log-level",
			            "'%s' is not a log level (use error, warning, message, "
			            "info or debug)",
			            shown);
		}
	}
	check_listen(cfg, "listen", problems);
	check_listen(cfg, "listen-tls", problems);

	entry = config_entry(cfg, "core", "hosts");
	if (entry != NULL) {
		const char *const *hosts = entry_strv(entry, "");

		for (gsize i = 0; hosts[i] != NULL; i++) {
			if (!is_valid_host_name(hosts[i])) {
				g_autofree char *shown = display(hosts[i]);

				add_problem(problems, entry->origin, "core", "hosts",
				            "'%s' is not a valid domain name", shown);
			}
		}
	}

	tls_default = check_cert_pair(cfg, "tls", problems);

	for (guint i = 0; i < cfg->groups->len; i++) {
		ConfigGroup *group = cfg->groups->pdata[i];
		const char *name = host_group_name(group->name);

		if (!is_host_group(group->name)) {
			if (group_schema(group->name) == NULL && !is_valid_module_name(group->name))
				add_problem(problems, group->origin, group->name, NULL,
				            "is not a valid group name: use [core], [c2s], [tls], "
				            "[auth], [database], [host NAME] or a module name "
				            "(letters, digits, '-', '_')");
			continue;
		}
		if (name[0] == '\0') {
			add_problem(problems, group->origin, group->name, NULL,
			            "needs a host name, as in [host example.org]");
			continue;
		}
		if (!is_valid_host_name(name)) {
			add_problem(problems, group->origin, group->name, NULL,
			            "is not a valid host name");
			continue;
		}
		check_group(cfg, group->name, host_schema, FALSE, problems, warnings);
		if (!check_cert_pair(cfg, group->name, problems) && !tls_default &&
		    host_group_enabled(cfg, group->name))
			add_problem(problems, group->origin, group->name, NULL,
			            "no certificate and key (set them here or in [tls])");
	}

	/* Hosts named only in [core] hosts need the [tls] default. */
	if (!tls_default && entry != NULL) {
		const char *const *hosts = entry_strv(entry, "");

		for (gsize i = 0; hosts[i] != NULL; i++) {
			g_autofree char *group = g_strconcat(HOST_GROUP_PREFIX, hosts[i], NULL);
			g_autofree char *shown = NULL;

			if (!is_valid_host_name(hosts[i]) ||
			    g_hash_table_contains(cfg->by_name, group))
				continue;
			shown = display(hosts[i]);
			add_problem(problems, entry->origin, "core", "hosts",
			            "host '%s' has no certificate and key (add a [host %s] group "
			            "with them, or set [tls] certificate and key)",
			            shown, shown);
		}
	}

	if (cfg->hosts == NULL || cfg->hosts[0] == NULL)
		add_problem(problems, entry != NULL ? entry->origin : main_file(cfg), "core",
		            "hosts",
		            "no virtual host configured (list them in [core] hosts or add "
		            "[host NAME] groups)");
}

void
magpie_config_file_check_group(MagpieConfigFile *cfg, const char *group,
                               const MagpieConfigKey *schema, GPtrArray *problems,
                               GPtrArray *warnings)
{
	g_return_if_fail(cfg != NULL);
	g_return_if_fail(group != NULL);

	check_group(cfg, group, schema, TRUE, problems, warnings);
}

/* ---- Printing --------------------------------------------------------- */

static gboolean
is_secret_key(const char *key)
{
	return strstr(key, "password") != NULL || strstr(key, "secret") != NULL ||
	       strstr(key, "token") != NULL || strstr(key, "api-key") != NULL;
}

/* libpq conninfo with any password=... replaced. */
static char *
hide_conninfo_password(const char *conninfo)
{
	g_autoptr(GRegex) keyword = g_regex_new("(password\\s*=\\s*)('(?:[^'\\\\]|\\\\.)*'|\\S+)",
	                                        G_REGEX_CASELESS, 0, NULL);
	g_autoptr(GRegex) uri = g_regex_new("(://[^:/@]*:)[^@/]*@", 0, 0, NULL);
	g_autofree char *step = g_regex_replace(keyword, conninfo, -1, 0, "\\1(hidden)", 0, NULL);

	if (step == NULL)
		return g_strdup("(hidden)");
	return g_regex_replace(uri, step, -1, 0, "\\1(hidden)@", 0, NULL);
}

static void
print_value(GString *out, MagpieConfigFile *cfg, const char *group, const MagpieConfigKey *spec)
{
	ConfigEntry *entry = config_entry(cfg, group, spec->key);
	const char *doc = spec->doc != NULL ? spec->doc : spec->key;
	g_autofree char *value = NULL;

	if (entry != NULL)
		g_string_append_printf(out, "# %s (from %s)\n", doc, entry->origin);
	else
		g_string_append_printf(out, "# %s (default)\n", doc);

	if (spec->type == MAGPIE_CONFIG_STRING_LIST) {
		value = escape_list(
		        entry != NULL ? entry_strv(entry, spec->default_value)
		                      : default_strv(cfg, group, spec->key, spec->default_value));
	} else if (entry != NULL) {
		value = entry->edits != NULL ? escape_string(entry_string(entry, NULL))
		                             : g_strchomp(g_strdup(entry->raw));
	} else if (spec->default_value != NULL) {
		value = escape_string(spec->default_value);
	} else {
		g_string_append_printf(out, "#%s =\n", spec->key);
		return;
	}
	if (is_secret_key(spec->key)) {
		g_free(value);
		value = g_strdup("(hidden)");
	} else if (strcmp(group, "database") == 0 && strcmp(spec->key, "conninfo") == 0) {
		g_autofree char *hidden = hide_conninfo_password(value);

		g_free(value);
		value = g_steal_pointer(&hidden);
	}
	{
		/* Whatever the file holds, the output is clean UTF-8 text. */
		g_autofree char *shown = display_text(value, G_MAXSIZE);

		g_string_append_printf(out, "%s = %s\n", spec->key, shown);
	}
}

static void
print_group(GString *out, MagpieConfigFile *cfg, const char *group_name,
            const MagpieConfigKey *schema, gboolean is_module)
{
	ConfigGroup *group = g_hash_table_lookup(cfg->by_name, group_name);

	g_string_append_printf(out, "[%s]\n", group_name);
	if (is_module)
		print_value(out, cfg, group_name, &module_enabled_key);
	for (const MagpieConfigKey *k = schema; k != NULL && k->key != NULL; k++) {
		if (is_module && strcmp(k->key, "enabled") == 0)
			continue;
		print_value(out, cfg, group_name, k);
	}
	for (guint i = 0; group != NULL && i < group->order->len; i++) {
		ConfigEntry *entry = group->order->pdata[i];
		g_autofree char *key = NULL;
		g_autofree char *value = NULL;

		if (schema_lookup(schema, entry->key, is_module) != NULL)
			continue;
		/* Unknown keys are shown as written, but commented out so the
		 * output stays loadable without them taking effect. */
		key = display(entry->key);
		value = display(entry->raw != NULL ? entry->raw : "");
		g_string_append_printf(out, "# unknown key (from %s)\n#%s = %s\n", entry->origin,
		                       key, value);
	}
	g_string_append_c(out, '\n');
}

char *
magpie_config_file_print(MagpieConfigFile *cfg, GHashTable *module_schemas)
{
	GString *out = g_string_new(NULL);
	g_autoptr(GPtrArray) modules = g_ptr_array_new();

	g_return_val_if_fail(cfg != NULL, NULL);

	g_string_append_printf(out, "# Merged configuration from %s\n", cfg->path);
	for (guint i = 0; i < cfg->files->len; i++)
		g_string_append_printf(out, "#   %s\n", (const char *) cfg->files->pdata[i]);
	g_string_append_c(out, '\n');

	for (gsize i = 0; i < G_N_ELEMENTS(core_groups); i++)
		print_group(out, cfg, core_groups[i].group, core_groups[i].schema, FALSE);
	for (guint i = 0; i < cfg->groups->len; i++) {
		ConfigGroup *group = cfg->groups->pdata[i];

		if (is_host_group(group->name) && is_valid_host_name(host_group_name(group->name)))
			print_group(out, cfg, group->name, host_schema, FALSE);
	}

	if (module_schemas != NULL) {
		GHashTableIter iter;
		gpointer name;

		g_hash_table_iter_init(&iter, module_schemas);
		while (g_hash_table_iter_next(&iter, &name, NULL))
			g_ptr_array_add(modules, name);
	}
	for (guint i = 0; i < cfg->groups->len; i++) {
		ConfigGroup *group = cfg->groups->pdata[i];

		if (group_schema(group->name) == NULL && is_valid_module_name(group->name) &&
		    (module_schemas == NULL || !g_hash_table_contains(module_schemas, group->name)))
			g_ptr_array_add(modules, group->name);
	}
	g_ptr_array_sort(modules, compare_names);
	for (guint i = 0; i < modules->len; i++) {
		const char *name = modules->pdata[i];
		const MagpieConfigKey *schema =
		        module_schemas != NULL ? g_hash_table_lookup(module_schemas, name) : NULL;

		if (schema == NULL && module_schemas != NULL &&
		    g_hash_table_contains(module_schemas, name))
			schema = empty_schema;
		if (schema == NULL) {
			/* No schema known: print what the files say. */
			ConfigGroup *group = g_hash_table_lookup(cfg->by_name, name);

			g_string_append_printf(out, "# module %s: no schema known\n[%s]\n", name,
			                       name);
			for (guint j = 0; group != NULL && j < group->order->len; j++) {
				ConfigEntry *entry = group->order->pdata[j];
				g_autofree char *key = display_text(entry->key, G_MAXSIZE);
				g_autofree char *value = NULL;

				if (is_secret_key(entry->key))
					value = g_strdup("(hidden)");
				else if (entry->edits != NULL)
					value = escape_string(entry_string(entry, NULL));
				else
					value = g_strchomp(g_strdup(entry->raw));
				{
					g_autofree char *shown = display_text(value, G_MAXSIZE);

					g_string_append_printf(out, "# (from %s)\n%s = %s\n",
					                       entry->origin, key, shown);
				}
			}
			g_string_append_c(out, '\n');
			continue;
		}
		print_group(out, cfg, name, schema, TRUE);
	}
	return g_string_free(out, FALSE);
}

/* ---- The configuration in force --------------------------------------- */

static MagpieConfigFile *active_config;

MagpieConfigFile *
magpie_config_get_active(void)
{
	return active_config;
}

void
magpie_config_set_active(MagpieConfigFile *cfg)
{
	MagpieConfigFile *old = active_config;

	active_config = cfg;
	magpie_config_file_free(old);
}

const char *const *
magpie_config_hosts(void)
{
	static const char *const none[] = { NULL };

	if (active_config == NULL)
		return none;
	return magpie_config_file_hosts(active_config);
}

gboolean
magpie_config_is_local_host(const char *domain)
{
	g_return_val_if_fail(domain != NULL, FALSE);

	if (active_config == NULL)
		return FALSE;
	/* Called several times per stanza. A JID's domain is in lower case
	 * already, so an exact match is the usual answer and needs no hash;
	 * otherwise one pass over @domain, then a case-insensitive compare
	 * only where the hash matches. */
	const char *const *hosts = (const char *const *) active_config->hosts;
	for (gsize i = 0; hosts[i] != NULL; i++) {
		if (hosts[i][0] == domain[0] && strcmp(hosts[i], domain) == 0)
			return TRUE;
	}
	gboolean upper;
	guint h = host_hash(domain, &upper);
	if (!upper)
		return FALSE; /* hosts are in lower case: compared exactly above */
	for (gsize i = 0; hosts[i] != NULL; i++) {
		if (active_config->host_hashes[i] != h)
			continue;
		if (g_ascii_strcasecmp(hosts[i], domain) == 0)
			return TRUE;
	}
	return FALSE;
}
