/* Unit tests for server/config-file.c: loading and merging, list edits,
 * checks (each problem names file, group and key), printing, hosts and
 * hostile input. */
#include "config-file.h"

#include <string.h>

#include <glib/gstdio.h>

typedef struct {
	char *dir;
	char *confd;
} Fixture;

static void
fixture_setup(Fixture *fx, gconstpointer data)
{
	g_autoptr(GError) error = NULL;

	fx->dir = g_dir_make_tmp("magpie-config-XXXXXX", &error);
	g_assert_no_error(error);
	fx->confd = g_build_filename(fx->dir, "conf.d", NULL);
	g_assert_cmpint(g_mkdir(fx->confd, 0700), ==, 0);
}

static void
remove_tree(const char *path)
{
	if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
		g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
		const char *name;

		while (dir != NULL && (name = g_dir_read_name(dir)) != NULL) {
			g_autofree char *child = g_build_filename(path, name, NULL);

			remove_tree(child);
		}
		g_rmdir(path);
	} else {
		g_unlink(path);
	}
}

static void
fixture_teardown(Fixture *fx, gconstpointer data)
{
	remove_tree(fx->dir);
	g_free(fx->dir);
	g_free(fx->confd);
}

/* Writes @contents to @name under the fixture's directory; returns the path. */
static char *
write_file(Fixture *fx, const char *name, const char *contents, gssize length)
{
	g_autoptr(GError) error = NULL;
	char *path = g_build_filename(fx->dir, name, NULL);

	g_file_set_contents(path, contents, length, &error);
	g_assert_no_error(error);
	return path;
}

static MagpieConfigFile *
load_ok(Fixture *fx)
{
	g_autoptr(GError) error = NULL;
	MagpieConfigFile *cfg = magpie_config_file_load(fx->dir, &error);

	g_assert_no_error(error);
	g_assert_nonnull(cfg);
	return cfg;
}

static gboolean
contains_line(GPtrArray *lines, const char *expected)
{
	for (guint i = 0; i < lines->len; i++)
		if (strcmp(lines->pdata[i], expected) == 0)
			return TRUE;
	return FALSE;
}

static void
dump(const char *title, GPtrArray *lines)
{
	for (guint i = 0; i < lines->len; i++)
		g_test_message("%s: %s", title, (const char *) lines->pdata[i]);
}

static void
assert_has(GPtrArray *lines, const char *expected)
{
	if (!contains_line(lines, expected)) {
		dump("have", lines);
		g_test_message("missing: %s", expected);
		g_test_fail();
	}
}

/* A certificate and key that exist, for configurations meant to be valid. */
static char *
tls_section(Fixture *fx)
{
	g_autofree char *cert = write_file(fx, "cert.pem", "not checked here\n", -1);
	g_autofree char *key = write_file(fx, "key.pem", "not checked here\n", -1);

	return g_strdup_printf("[tls]\ncertificate = %s\nkey = %s\n", cert, key);
}

static void
test_defaults(Fixture *fx, gconstpointer data)
{
	g_autofree char *tls = tls_section(fx);
	g_autofree char *main_conf = g_strdup_printf("[core]\nhosts = example.org\n%s", tls);
	g_autofree char *path = write_file(fx, "magpie.conf", main_conf, -1);
	MagpieConfigFile *cfg = load_ok(fx);
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	const char *const *listen;

	magpie_config_file_check_core(cfg, problems, warnings);
	dump("problem", problems);
	dump("warning", warnings);
	g_assert_cmpuint(problems->len, ==, 0);
	g_assert_cmpuint(warnings->len, ==, 0);

	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "max-stanza-size", NULL), ==,
	                256 * 1024);
	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "idle-timeout", NULL), ==,
	                10 * 60 * 1000);
	g_assert_cmpint(magpie_config_file_int(cfg, "auth", "fail-delay", NULL), ==, 1000);
	g_assert_cmpint(magpie_config_file_int(cfg, "database", "pool-size", NULL), ==, 2);
	g_assert_true(magpie_config_file_bool(cfg, "auth", "allow-plain", NULL));
	g_assert_cmpstr(magpie_config_file_string(cfg, "core", "log-level", NULL), ==, "info");
	g_assert_cmpstr(magpie_config_file_string(cfg, "database", "conninfo", NULL), ==,
	                "dbname=magpie");
	g_assert_cmpstr(magpie_config_file_string(cfg, "core", "module-dir", NULL), !=, NULL);
	listen = magpie_config_file_strv(cfg, "c2s", "listen", NULL);
	g_assert_cmpuint(g_strv_length((GStrv) listen), ==, 2);
	g_assert_cmpstr(listen[0], ==, "0.0.0.0:5222");
	g_assert_cmpstr(listen[1], ==, "[::]:5222");
	g_assert_cmpstr(magpie_config_file_origin(cfg, "core", "hosts"), ==, path);
	g_assert_null(magpie_config_file_origin(cfg, "c2s", "listen"));
	g_assert_cmpstr(magpie_config_file_path(cfg), ==, fx->dir);
	g_assert_nonnull(magpie_config_core_schema("host"));
	g_assert_true(magpie_config_core_schema("host example.org") ==
	              magpie_config_core_schema("host"));
	g_assert_null(magpie_config_core_schema("offline"));
	g_assert_cmpstr(g_quark_to_string(MAGPIE_CONFIG_ERROR), ==, "magpie-config-error-quark");
	/* A host without a group reads the [host NAME] defaults. */
	g_assert_true(magpie_config_file_bool(cfg, "host example.org", "enabled",
	                                      magpie_config_core_schema("host")));
	g_assert_null(magpie_config_file_string(cfg, "host example.org", "certificate", NULL));
	magpie_config_file_free(cfg);
}

static void
test_merge_order(Fixture *fx, gconstpointer data)
{
	g_autofree char *main_path =
	        write_file(fx, "magpie.conf",
	                   "[core]\nhosts = example.org\n[c2s]\nmax-stanza-size = 64k\n"
	                   "idle-timeout = 1m\n",
	                   -1);
	g_autofree char *a = write_file(fx, "conf.d/10-a.conf",
	                                "[c2s]\nmax-stanza-size = 128k\nauth-timeout = 30s\n", -1);
	g_autofree char *b =
	        write_file(fx, "conf.d/20-b.conf", "[c2s]\nmax-stanza-size=512k\n", -1);
	g_autofree char *ignored1 =
	        write_file(fx, "conf.d/30-c.conf.disabled", "[c2s]\nmax-stanza-size=4k\n", -1);
	g_autofree char *ignored2 =
	        write_file(fx, "conf.d/.99-hidden.conf", "[c2s]\nmax-stanza-size=8k\n", -1);
	/* Lexical order, not creation order. */
	g_autofree char *first = write_file(fx, "conf.d/05-first.conf",
	                                    "[c2s]\nmax-stanza-size=1M\nauth-timeout=5s\n", -1);
	MagpieConfigFile *cfg = load_ok(fx);

	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "max-stanza-size", NULL), ==,
	                512 * 1024);
	g_assert_cmpstr(magpie_config_file_origin(cfg, "c2s", "max-stanza-size"), ==, b);
	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "auth-timeout", NULL), ==, 30000);
	g_assert_cmpstr(magpie_config_file_origin(cfg, "c2s", "auth-timeout"), ==, a);
	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "idle-timeout", NULL), ==, 60000);
	g_assert_cmpstr(magpie_config_file_origin(cfg, "c2s", "idle-timeout"), ==, main_path);
	magpie_config_file_free(cfg);
}

static void
test_load_file_path(Fixture *fx, gconstpointer data)
{
	g_autofree char *main_path =
	        write_file(fx, "other.conf", "[core]\nhosts = a.example\n", -1);
	g_autofree char *extra =
	        write_file(fx, "conf.d/10-h.conf", "[core]\nhosts += b.example\n", -1);
	g_autoptr(GError) error = NULL;
	MagpieConfigFile *cfg = magpie_config_file_load(main_path, &error);
	const char *const *hosts;

	g_assert_no_error(error);
	hosts = magpie_config_file_hosts(cfg);
	g_assert_cmpuint(g_strv_length((GStrv) hosts), ==, 2);
	g_assert_cmpstr(hosts[1], ==, "b.example");
	magpie_config_file_free(cfg);

	cfg = magpie_config_file_load("/nonexistent/magpie", &error);
	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_IO);
}

static void
test_list_edits(Fixture *fx, gconstpointer data)
{
	g_autofree char *m =
	        write_file(fx, "magpie.conf", "[core]\nhosts = a.example;b.example\n", -1);
	g_autofree char *x = write_file(fx, "conf.d/10-x.conf",
	                                "[core]\nhosts+=c.example;d.example\nhosts -= b.example\n"
	                                "[c2s]\nlisten += *:5299\nlisten-tls -= [::]:5223\n",
	                                -1);
	g_autofree char *y = write_file(fx, "conf.d/20-y.conf",
	                                "[core]\nhosts-=d.example\nhosts+=e.example\n", -1);
	MagpieConfigFile *cfg = load_ok(fx);
	const char *const *hosts = magpie_config_file_strv(cfg, "core", "hosts", NULL);
	const char *const *listen;
	const char *const *listen_tls;
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);

	g_assert_cmpuint(g_strv_length((GStrv) hosts), ==, 3);
	g_assert_cmpstr(hosts[0], ==, "a.example");
	g_assert_cmpstr(hosts[1], ==, "c.example");
	g_assert_cmpstr(hosts[2], ==, "e.example");
	g_assert_cmpstr(magpie_config_file_origin(cfg, "core", "hosts"), ==, y);

	/* Edits without an earlier assignment apply to the default. */
	listen = magpie_config_file_strv(cfg, "c2s", "listen", NULL);
	g_assert_cmpuint(g_strv_length((GStrv) listen), ==, 3);
	g_assert_cmpstr(listen[2], ==, "*:5299");
	listen_tls = magpie_config_file_strv(cfg, "c2s", "listen-tls", NULL);
	g_assert_cmpuint(g_strv_length((GStrv) listen_tls), ==, 1);
	g_assert_cmpstr(listen_tls[0], ==, "0.0.0.0:5223");
	magpie_config_file_free(cfg);

	/* A later plain assignment drops earlier edits; += on a non-list is an error. */
	g_free(write_file(fx, "conf.d/30-z.conf",
	                  "[core]\nhosts=z.example\n[auth]\nmax-failures+=3\n", -1));
	cfg = load_ok(fx);
	hosts = magpie_config_file_strv(cfg, "core", "hosts", NULL);
	g_assert_cmpuint(g_strv_length((GStrv) hosts), ==, 1);
	g_assert_cmpstr(hosts[0], ==, "z.example");
	magpie_config_file_check_core(cfg, problems, NULL);
	g_assert_true(g_str_has_suffix(problems->pdata[0],
	                               "30-z.conf: [auth] max-failures: '+=' and '-=' work only on "
	                               "lists; use '='"));
	magpie_config_file_free(cfg);
}

static void
test_check_errors(Fixture *fx, gconstpointer data)
{
	g_autofree char *m = write_file(fx, "magpie.conf", "[core]\nlog-level = loud\n", -1);
	g_autofree char *c2s =
	        write_file(fx, "conf.d/10-c2s.conf",
	                   "[c2s]\nmax-stanza-size = 12q\nmax-connections-per-address = lots\n"
	                   "idle-timeout = 10 minutes\nlisten = 1.2.3.4:99999;[zz]:5222;::1:5222;"
	                   "300.1.1.1:5222;*:5222;[::1]:5222;nohost\nmax-output-queue = "
	                   "99999999999999999999\n",
	                   -1);
	g_autofree char *auth = write_file(fx, "conf.d/20-auth.conf",
	                                   "[auth]\nallow-plain = maybe\nfail-delay = 31s\n"
	                                   "scram-iterations = 100\n",
	                                   -1);
	g_autofree char *db =
	        write_file(fx, "conf.d/30-db.conf", "[database]\npool-size = 64\n", -1);
	g_autofree char *tls = write_file(fx, "conf.d/40-tls.conf",
	                                  "[tls]\ncertificate = /nonexistent/cert.pem\n"
	                                  "key = /nonexistent/key.pem\n",
	                                  -1);
	MagpieConfigFile *cfg = load_ok(fx);
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *line = NULL;

	magpie_config_file_check_core(cfg, problems, warnings);
	dump("problem", problems);

#define EXPECT(file, rest)                                                                         \
	do {                                                                                       \
		g_free(line);                                                                      \
		line = g_strdup_printf("%s: %s", file, rest);                                      \
		assert_has(problems, line);                                                        \
	} while (0)

	EXPECT(m, "[core] log-level: 'loud' is not a log level (use error, warning, message, info "
	          "or debug)");
	EXPECT(c2s, "[c2s] max-stanza-size: '12q' is not a size (use 512, 64k, 1M)");
	EXPECT(c2s, "[c2s] max-connections-per-address: 'lots' is not an integer");
	EXPECT(c2s, "[c2s] idle-timeout: '10 minutes' is not a duration (use 500ms, 30s, 5m, 2h, "
	            "1d)");
	EXPECT(c2s, "[c2s] max-output-queue: '99999999999999999999' is not a size (use 512, 64k, "
	            "1M)");
	EXPECT(c2s, "[c2s] listen: '1.2.3.4:99999' has no valid port (1..65535)");
	EXPECT(c2s, "[c2s] listen: '[zz]:5222' is not a valid IPv6 address");
	EXPECT(c2s, "[c2s] listen: '::1:5222' is not valid: put an IPv6 address in brackets, "
	            "[::1]:5222");
	EXPECT(c2s, "[c2s] listen: '300.1.1.1:5222' is not a valid IPv4 address (use IPv4:port, "
	            "[IPv6]:port or *:port)");
	EXPECT(c2s, "[c2s] listen: 'nohost' has no port (use IPv4:port, [IPv6]:port or *:port)");
	EXPECT(auth, "[auth] allow-plain: 'maybe' is not a boolean (use true or false)");
	EXPECT(auth, "[auth] fail-delay: '31s' is out of range (0s..30s)");
	EXPECT(auth, "[auth] scram-iterations: '100' is out of range (4096..1000000)");
	EXPECT(db, "[database] pool-size: '64' is out of range (1..32)");
	EXPECT(tls, "[tls] certificate: '/nonexistent/cert.pem' does not exist");
	EXPECT(tls, "[tls] key: '/nonexistent/key.pem' does not exist");
	EXPECT(m, "[core] hosts: no virtual host configured (list them in [core] hosts or add "
	          "[host NAME] groups)");
#undef EXPECT
	/* Valid addresses are not reported. */
	for (guint i = 0; i < problems->len; i++) {
		g_assert_null(strstr(problems->pdata[i], "'*:5222'"));
		g_assert_null(strstr(problems->pdata[i], "'[::1]:5222'"));
	}
	g_assert_cmpuint(problems->len, ==, 17);
	g_assert_cmpuint(warnings->len, ==, 0);

	/* Typed getters never fail: an invalid value reads as the default. */
	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "max-stanza-size", NULL), ==,
	                256 * 1024);
	g_assert_true(magpie_config_file_bool(cfg, "auth", "allow-plain", NULL));
	magpie_config_file_free(cfg);
}

static void
test_check_hosts_certificates(Fixture *fx, gconstpointer data)
{
	g_autofree char *cert = write_file(fx, "host-cert.pem", "x\n", -1);
	g_autofree char *key = write_file(fx, "host-key.pem", "x\n", -1);
	g_autofree char *conf = g_strdup_printf("[core]\nhosts = bare.example;bad host\n"
	                                        "[host good.example]\ncertificate = %s\nkey = %s\n"
	                                        "[host nocert.example]\n"
	                                        "[host half.example]\ncertificate = %s\n"
	                                        "[host off.example]\nenabled = false\n",
	                                        cert, key, cert);
	g_autofree char *m = write_file(fx, "magpie.conf", conf, -1);
	MagpieConfigFile *cfg = load_ok(fx);
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *line = NULL;

	magpie_config_file_check_core(cfg, problems, warnings);
	dump("problem", problems);
	line = g_strdup_printf("%s: [core] hosts: 'bad host' is not a valid domain name", m);
	assert_has(problems, line);
	g_free(line);
	line = g_strdup_printf("%s: [core] hosts: host 'bare.example' has no certificate and key "
	                       "(add a [host bare.example] group with them, or set [tls] "
	                       "certificate and key)",
	                       m);
	assert_has(problems, line);
	g_free(line);
	line = g_strdup_printf("%s: [host nocert.example] no certificate and key (set them here "
	                       "or in [tls])",
	                       m);
	assert_has(problems, line);
	g_free(line);
	line = g_strdup_printf("%s: [host half.example] key: missing: 'certificate' is set without "
	                       "its 'key'",
	                       m);
	assert_has(problems, line);
	g_assert_cmpuint(problems->len, ==, 4);
	magpie_config_file_free(cfg);
}

static void
test_unknown_key(Fixture *fx, gconstpointer data)
{
	g_autofree char *m = write_file(fx, "magpie.conf",
	                                "[core]\nhosts = example.org\n[c2s]\nmax-stanza-sise = 1M\n"
	                                "[auth]\nfrobnicate = 1\n[host example.org]\nenable = no\n",
	                                -1);
	MagpieConfigFile *cfg = load_ok(fx);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *line = NULL;

	magpie_config_file_check_core(cfg, NULL, warnings);
	dump("warning", warnings);
	g_assert_cmpuint(warnings->len, ==, 3);
	line = g_strdup_printf("%s: [c2s] max-stanza-sise: unknown key (did you mean "
	                       "'max-stanza-size'?)",
	                       m);
	assert_has(warnings, line);
	g_free(line);
	line = g_strdup_printf("%s: [auth] frobnicate: unknown key", m);
	assert_has(warnings, line);
	g_free(line);
	line = g_strdup_printf("%s: [host example.org] enable: unknown key (did you mean "
	                       "'enabled'?)",
	                       m);
	assert_has(warnings, line);
	magpie_config_file_free(cfg);
}

static void
test_syntax_error(Fixture *fx, gconstpointer data)
{
	g_autofree char *m = write_file(fx, "magpie.conf", "[core]\nhosts = example.org\n", -1);
	g_autofree char *bad =
	        write_file(fx, "conf.d/50-bad.conf",
	                   "# comment\n[c2s]\nlisten = *:5222\nthis is not valid\n", -1);
	g_autoptr(GError) error = NULL;
	g_autofree char *prefix = g_strdup_printf("%s:4: ", bad);
	MagpieConfigFile *cfg = magpie_config_file_load(fx->dir, &error);

	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE);
	g_test_message("%s", error->message);
	g_assert_true(g_str_has_prefix(error->message, prefix));

	/* A key before any group. */
	g_clear_error(&error);
	g_free(write_file(fx, "conf.d/50-bad.conf", "hosts = x\n", -1));
	cfg = magpie_config_file_load(fx->dir, &error);
	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE);
	g_assert_true(g_str_has_prefix(error->message, bad));
}

static const MagpieConfigKey sample_schema[] = {
	{ "max-messages", MAGPIE_CONFIG_INT, "500", 0, 100000, "Stored messages per user" },
	{ "expire-after", MAGPIE_CONFIG_DURATION, "30d", 60 * 1000,
	  G_GINT64_CONSTANT(365) * 86400000, "Drop older messages" },
	{ "max-size", MAGPIE_CONFIG_SIZE, "64k", 0, 0, "Largest stored message" },
	{ "notify", MAGPIE_CONFIG_BOOL, "false", 0, 0, "Tell the sender" },
	{ "domains", MAGPIE_CONFIG_STRING_LIST, "a;b", 0, 0, "Some list" },
	{ "api-key", MAGPIE_CONFIG_STRING, NULL, 0, 0, "A secret" },
	{ NULL }
};

static void
test_module_group(Fixture *fx, gconstpointer data)
{
	g_autofree char *m = write_file(fx, "magpie.conf", "[core]\nhosts = example.org\n", -1);
	g_autofree char *o = write_file(fx, "conf.d/50-offline.conf",
	                                "[offline]\nenabled = yes\nmax-messages = abc\n"
	                                "max-mesages = 3\nexpire-after = 2h\nnotify = 1\n"
	                                "domains += c\napi-key = s3cret\n"
	                                "[muc]\nenabled=false\n[otherthing]\n",
	                                -1);
	g_autofree char *o2 =
	        write_file(fx, "conf.d/60-offline.conf", "[offline]\nmax-size = 1M\n", -1);
	MagpieConfigFile *cfg = load_ok(fx);
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *line = NULL;
	g_auto(GStrv) groups = magpie_config_file_module_groups(cfg);
	const char *const *domains;

	g_assert_cmpuint(g_strv_length(groups), ==, 3);
	g_assert_cmpstr(groups[0], ==, "offline");
	g_assert_cmpstr(groups[1], ==, "muc");
	g_assert_cmpstr(groups[2], ==, "otherthing");
	g_assert_true(magpie_config_file_module_enabled(cfg, "offline"));
	g_assert_false(magpie_config_file_module_enabled(cfg, "muc"));
	g_assert_false(magpie_config_file_module_enabled(cfg, "otherthing"));
	g_assert_false(magpie_config_file_module_enabled(cfg, "absent"));
	g_assert_false(magpie_config_file_module_enabled(cfg, "core"));

	magpie_config_file_check_group(cfg, "offline", sample_schema, problems, warnings);
	dump("problem", problems);
	dump("warning", warnings);
	g_assert_cmpuint(problems->len, ==, 1);
	g_assert_cmpuint(warnings->len, ==, 1);
	line = g_strdup_printf("%s: [offline] max-messages: 'abc' is not an integer", o);
	assert_has(problems, line);
	g_free(line);
	line = g_strdup_printf("%s: [offline] max-mesages: unknown key (did you mean "
	                       "'max-messages'?)",
	                       o);
	assert_has(warnings, line);

	g_assert_cmpint(magpie_config_file_int(cfg, "offline", "max-messages", sample_schema), ==,
	                500);
	g_assert_cmpint(magpie_config_file_int(cfg, "offline", "expire-after", sample_schema), ==,
	                2 * 3600 * 1000);
	g_assert_cmpint(magpie_config_file_int(cfg, "offline", "max-size", sample_schema), ==,
	                1024 * 1024);
	g_assert_cmpstr(magpie_config_file_origin(cfg, "offline", "max-size"), ==, o2);
	g_assert_true(magpie_config_file_bool(cfg, "offline", "notify", sample_schema));
	g_assert_true(magpie_config_file_bool(cfg, "offline", "enabled", sample_schema));
	domains = magpie_config_file_strv(cfg, "offline", "domains", sample_schema);
	g_assert_cmpuint(g_strv_length((GStrv) domains), ==, 3);
	g_assert_cmpstr(domains[2], ==, "c");
	/* [muc] has no such key: the default. */
	g_assert_cmpint(magpie_config_file_int(cfg, "muc", "max-messages", sample_schema), ==, 500);

	/* Out of range for a duration names the bounds in duration units. */
	g_free(write_file(fx, "conf.d/70-offline.conf", "[offline]\nexpire-after = 10s\n", -1));
	magpie_config_file_free(cfg);
	cfg = load_ok(fx);
	g_ptr_array_set_size(problems, 0);
	magpie_config_file_check_group(cfg, "offline", sample_schema, problems, NULL);
	g_free(line);
	line = g_strdup_printf("%s/conf.d/70-offline.conf: [offline] expire-after: '10s' is out of "
	                       "range (1m..365d)",
	                       fx->dir);
	assert_has(problems, line);
	magpie_config_file_free(cfg);
}

static void
test_print(Fixture *fx, gconstpointer data)
{
	g_autofree char *m = write_file(fx, "magpie.conf",
	                                "[core]\nhosts = example.org\n[c2s]\nidle-timeout = 5m\n"
	                                "[database]\nconninfo = dbname=magpie password=hunter2 "
	                                "host=/tmp\n[host example.org]\n",
	                                -1);
	g_autofree char *o = write_file(fx, "conf.d/50-offline.conf",
	                                "[offline]\nenabled = true\nmax-messages = 42\n"
	                                "api-key = s3cret\ntypo = 1\n[zeta]\nfoo = bar\n",
	                                -1);
	MagpieConfigFile *cfg = load_ok(fx);
	g_autoptr(GHashTable) schemas = g_hash_table_new(g_str_hash, g_str_equal);
	g_autofree char *text = NULL;
	g_autofree char *expect = NULL;
	g_autoptr(GKeyFile) reparsed = g_key_file_new();
	g_autoptr(GError) error = NULL;

	g_hash_table_insert(schemas, "offline", (gpointer) sample_schema);
	g_hash_table_insert(schemas, "muc", (gpointer) sample_schema);
	text = magpie_config_file_print(cfg, schemas);
	g_test_message("%s", text);

	g_assert_nonnull(strstr(text, "# Largest stanza accepted from a client (default)\n"
	                              "max-stanza-size = 256k\n"));
	expect = g_strdup_printf("# Close a client connection silent for this long (from %s)\n"
	                         "idle-timeout = 5m\n",
	                         m);
	g_assert_nonnull(strstr(text, expect));
	g_assert_nonnull(strstr(text, "listen = 0.0.0.0:5222;[::]:5222\n"));
	g_assert_nonnull(strstr(text, "[host example.org]\n"));
	g_assert_nonnull(strstr(text, "[offline]\n# Load this module (from "));
	g_free(expect);
	expect = g_strdup_printf("# Stored messages per user (from %s)\nmax-messages = 42\n", o);
	g_assert_nonnull(strstr(text, expect));
	g_assert_nonnull(strstr(text, "[muc]\n# Load this module (default)\nenabled = false\n"));
	g_assert_nonnull(strstr(text, "expire-after = 30d\n"));
	g_assert_nonnull(strstr(text, "#typo = 1\n"));
	g_assert_nonnull(strstr(text, "[zeta]\n"));
	/* Secrets stay out of the output. */
	g_assert_null(strstr(text, "hunter2"));
	g_assert_null(strstr(text, "s3cret"));
	g_assert_nonnull(strstr(text, "password=(hidden)"));
	/* Stable order: core groups first, modules sorted. */
	g_assert_true(strstr(text, "[core]") < strstr(text, "[c2s]"));
	g_assert_true(strstr(text, "[database]") < strstr(text, "[host example.org]"));
	g_assert_true(strstr(text, "[muc]") < strstr(text, "[offline]"));
	g_assert_true(strstr(text, "[offline]") < strstr(text, "[zeta]"));

	/* The output is itself a loadable key file. */
	g_key_file_load_from_data(reparsed, text, -1, G_KEY_FILE_NONE, &error);
	g_assert_no_error(error);
	{
		g_autofree char *value =
		        g_key_file_get_value(reparsed, "c2s", "max-stanza-size", NULL);

		g_assert_cmpstr(value, ==, "256k");
	}

	/* Printing twice gives the same text. */
	{
		g_autofree char *again = magpie_config_file_print(cfg, schemas);

		g_assert_cmpstr(again, ==, text);
	}
	magpie_config_file_free(cfg);
}

static void
test_hosts(Fixture *fx, gconstpointer data)
{
	g_autofree char *m = write_file(fx, "magpie.conf",
	                                "[core]\nhosts = A.example;b.example\n"
	                                "[host C.example]\n[host b.example]\n[host off.example]\n"
	                                "enabled = false\n",
	                                -1);
	MagpieConfigFile *cfg = load_ok(fx);
	const char *const *hosts = magpie_config_file_hosts(cfg);

	g_assert_cmpuint(g_strv_length((GStrv) hosts), ==, 3);
	g_assert_cmpstr(hosts[0], ==, "a.example");
	g_assert_cmpstr(hosts[1], ==, "b.example");
	g_assert_cmpstr(hosts[2], ==, "c.example");

	g_assert_null(magpie_config_get_active());
	g_assert_null(magpie_config_hosts()[0]);
	g_assert_false(magpie_config_is_local_host("a.example"));
	magpie_config_set_active(cfg);
	g_assert_true(magpie_config_get_active() == cfg);
	g_assert_true(magpie_config_is_local_host("a.example"));
	g_assert_true(magpie_config_is_local_host("C.EXAMPLE"));
	g_assert_false(magpie_config_is_local_host("off.example"));
	g_assert_false(magpie_config_is_local_host("d.example"));
	g_assert_cmpuint(g_strv_length((GStrv) magpie_config_hosts()), ==, 3);
	magpie_config_set_active(NULL);
	g_assert_false(magpie_config_is_local_host("a.example"));
}

static void
assert_clean_message(const char *message)
{
	g_assert_true(g_utf8_validate(message, -1, NULL));
	g_assert_cmpuint(strlen(message), <, 2048);
	for (const char *p = message; *p != '\0'; p++)
		g_assert_true((guchar) *p >= 0x20);
}

static void
test_hostile(Fixture *fx, gconstpointer data)
{
	gsize big = 1024 * 1024;
	g_autofree char *huge = g_malloc(big + 64);
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	MagpieConfigFile *cfg;
	g_autofree char *m = write_file(fx, "magpie.conf", "[core]\nhosts = example.org\n", -1);
	g_autofree char *huge_path = g_build_filename(fx->confd, "10-huge.conf", NULL);
	g_autofree char *odd_path = g_build_filename(fx->confd, "20-odd.conf", NULL);

	/* A 1 MB value: loads, then a clean problem. */
	memcpy(huge, "[c2s]\nmax-stanza-size = ", 24);
	memset(huge + 24, '9', big);
	memcpy(huge + 24 + big, "\n", 2);
	g_free(write_file(fx, "conf.d/10-huge.conf", huge, -1));
	cfg = load_ok(fx);
	magpie_config_file_check_core(cfg, problems, warnings);
	g_assert_cmpuint(problems->len, >=, 1);
	for (guint i = 0; i < problems->len; i++)
		assert_clean_message(problems->pdata[i]);
	magpie_config_file_free(cfg);

	/* A 1 MB line that is not a key-value pair: a clean syntax error. */
	memcpy(huge, "[c2s]\nxxxxxxxxxxxxxxxxxxxxxx", 24);
	memset(huge + 24, 'x', big);
	memcpy(huge + 24 + big, "\n", 2);
	g_free(write_file(fx, "conf.d/10-huge.conf", huge, -1));
	cfg = magpie_config_file_load(fx->dir, &error);
	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE);
	assert_clean_message(error->message);
	g_clear_error(&error);

	/* A 1 MB key name: a clean warning. */
	memcpy(huge, "[c2s]\nxxxxxxxxxxxxxxxxxxxxxx", 24);
	memset(huge + 24, 'k', big);
	memcpy(huge + 24 + big, "=1\n", 4);
	g_free(write_file(fx, "conf.d/10-huge.conf", huge, -1));
	cfg = load_ok(fx);
	g_ptr_array_set_size(problems, 0);
	g_ptr_array_set_size(warnings, 0);
	magpie_config_file_check_core(cfg, problems, warnings);
	g_assert_cmpuint(warnings->len, ==, 1);
	assert_clean_message(warnings->pdata[0]);
	magpie_config_file_free(cfg);
	remove_tree(huge_path);

	/* Odd group names: a bad host name, a path-like module name. */
	g_free(write_file(fx, "conf.d/20-odd.conf",
	                  "[host ex ample]\nenabled=true\n[../../evil]\nenabled=true\n"
	                  "[host ]\n[weird\xc3\xa9]\n[host]\n",
	                  -1));
	cfg = load_ok(fx);
	g_ptr_array_set_size(problems, 0);
	g_ptr_array_set_size(warnings, 0);
	magpie_config_file_check_core(cfg, problems, warnings);
	dump("problem", problems);
	{
		g_autofree char *p = g_build_filename(fx->confd, "20-odd.conf", NULL);
		g_autofree char *l1 =
		        g_strdup_printf("%s: [host ex ample] is not a valid host name", p);
		g_autofree char *l2 = g_strdup_printf(
		        "%s: [host ] needs a host name, as in [host example.org]", p);
		g_autofree char *l3 = g_strdup_printf(
		        "%s: [host] needs a host name, as in [host example.org]", p);

		assert_has(problems, l1);
		assert_has(problems, l2);
		assert_has(problems, l3);
	}
	{
		g_auto(GStrv) groups = magpie_config_file_module_groups(cfg);

		/* Not offered to the module loader. */
		g_assert_cmpuint(g_strv_length(groups), ==, 0);
	}
	g_assert_cmpuint(g_strv_length((GStrv) magpie_config_file_hosts(cfg)), ==, 1);
	magpie_config_file_free(cfg);
	remove_tree(odd_path);

	/* Binary junk (no NUL) in a key and a value. */
	g_free(write_file(fx, "conf.d/30-junk.conf",
	                  "[c2s]\nk\x01\x02\xff\xfe\x1b(B = 1\nmax-stanza-size = \xff\xfe\x80\n"
	                  "[core]\nlog-level = \x07\n",
	                  -1));
	cfg = load_ok(fx);
	g_ptr_array_set_size(problems, 0);
	g_ptr_array_set_size(warnings, 0);
	magpie_config_file_check_core(cfg, problems, warnings);
	dump("problem", problems);
	dump("warning", warnings);
	g_assert_cmpuint(warnings->len, ==, 1);
	g_assert_cmpuint(problems->len, ==, 3); /* + example.org has no certificate */
	for (guint i = 0; i < problems->len; i++)
		assert_clean_message(problems->pdata[i]);
	assert_clean_message(warnings->pdata[0]);
	{
		g_autofree char *p = g_build_filename(fx->confd, "30-junk.conf", NULL);
		g_autofree char *l1 =
		        g_strdup_printf("%s: [c2s] max-stanza-size: "
		                        "'\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd' is not valid UTF-8",
		                        p);
		g_autofree char *l2 = g_strdup_printf(
		        "%s: [core] log-level: '\\x07' is not a log level (use error, warning, "
		        "message, info or debug)",
		        p);

		assert_has(problems, l1);
		assert_has(problems, l2);
	}
	{
		g_autofree char *text = magpie_config_file_print(cfg, NULL);

		g_assert_true(g_utf8_validate(text, -1, NULL));
	}
	magpie_config_file_free(cfg);

	/* Terminal escapes in a key name GKeyFile refuses ('[' is for locales). */
	g_free(write_file(fx, "conf.d/30-junk.conf", "[c2s]\nk\x1b[31m\xff = 1\n", -1));
	cfg = magpie_config_file_load(fx->dir, &error);
	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE);
	assert_clean_message(error->message);
	g_clear_error(&error);

	/* A NUL byte and a bad group header. */
	g_free(write_file(fx, "conf.d/30-junk.conf", "[c2s]\nlisten = a\0b\n", 17));
	cfg = magpie_config_file_load(fx->dir, &error);
	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE);
	g_clear_error(&error);
	g_free(write_file(fx, "conf.d/30-junk.conf", "[c2s\x01]\nlisten = *:1\n", -1));
	cfg = magpie_config_file_load(fx->dir, &error);
	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE);
	assert_clean_message(error->message);
	g_clear_error(&error);
	g_free(write_file(fx, "conf.d/30-junk.conf", "[c2s]\n\xff\xfe garbage \x01\n", -1));
	cfg = magpie_config_file_load(fx->dir, &error);
	g_assert_null(cfg);
	g_assert_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_PARSE);
	assert_clean_message(error->message);
}

static void
test_parse_units(Fixture *fx, gconstpointer data)
{
	g_autofree char *m = write_file(fx, "magpie.conf",
	                                "[c2s]\nidle-timeout = 500ms\nauth-timeout = 90\n"
	                                "max-stanza-size = 512\nmax-output-queue = 2M\n"
	                                "[database]\nquery-timeout = 1d\n"
	                                "[auth]\nallow-plain = No\nfailure-window = 2h\n",
	                                -1);
	MagpieConfigFile *cfg = load_ok(fx);

	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "idle-timeout", NULL), ==, 500);
	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "auth-timeout", NULL), ==, 90000);
	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "max-stanza-size", NULL), ==, 512);
	g_assert_cmpint(magpie_config_file_int(cfg, "c2s", "max-output-queue", NULL), ==,
	                2 * 1024 * 1024);
	g_assert_cmpint(magpie_config_file_int(cfg, "database", "query-timeout", NULL), ==,
	                86400000);
	g_assert_cmpint(magpie_config_file_int(cfg, "auth", "failure-window", NULL), ==, 7200000);
	g_assert_false(magpie_config_file_bool(cfg, "auth", "allow-plain", NULL));
	magpie_config_file_free(cfg);
}

/* The shipped conf.d/00-core.conf parses and only lacks hosts. */
static void
test_shipped(void)
{
	const char *root = g_getenv("MAGPIE_SOURCE_ROOT");
	g_autofree char *path = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	MagpieConfigFile *cfg;

	if (root == NULL) {
		g_test_skip("MAGPIE_SOURCE_ROOT not set");
		return;
	}
	path = g_build_filename(root, "conf.d", "00-core.conf", NULL);
	cfg = magpie_config_file_load(path, &error);
	g_assert_no_error(error);
	magpie_config_file_check_core(cfg, problems, warnings);
	dump("problem", problems);
	g_assert_cmpuint(warnings->len, ==, 0);
	g_assert_cmpuint(problems->len, ==, 1);
	g_assert_nonnull(strstr(problems->pdata[0], "no virtual host configured"));
	magpie_config_file_free(cfg);
}

#define ADD(name, func) g_test_add(name, Fixture, NULL, fixture_setup, func, fixture_teardown)

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);

	ADD("/config/defaults", test_defaults);
	ADD("/config/merge/order", test_merge_order);
	ADD("/config/merge/file-path", test_load_file_path);
	ADD("/config/merge/list-edits", test_list_edits);
	ADD("/config/check/errors", test_check_errors);
	ADD("/config/check/hosts-certificates", test_check_hosts_certificates);
	ADD("/config/check/unknown-key", test_unknown_key);
	ADD("/config/load/syntax-error", test_syntax_error);
	ADD("/config/module/group", test_module_group);
	ADD("/config/print", test_print);
	ADD("/config/hosts", test_hosts);
	ADD("/config/parse/units", test_parse_units);
	ADD("/config/hostile", test_hostile);
	g_test_add_func("/config/shipped", test_shipped);
	return g_test_run();
}
