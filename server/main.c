/* magpied: the Magpie XMPP server. */
#include <locale.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <glib-unix.h>

#include "build-config.h"
#include "accounts.h"
#include "c2s.h"
#include "config-file.h"
#include "control.h"
#include "listener.h"
#include "module-host.h"
#include "pg-pool.h"
#include "sasl.h"
#include "server.h"
#include "session-private.h"
#include "tls.h"

static GLogLevelFlags log_threshold = G_LOG_LEVEL_INFO;

static GLogLevelFlags
parse_log_level(const char *name)
{
	if (g_strcmp0(name, "error") == 0)
		return G_LOG_LEVEL_CRITICAL;
	if (g_strcmp0(name, "warning") == 0)
		return G_LOG_LEVEL_WARNING;
	if (g_strcmp0(name, "message") == 0)
		return G_LOG_LEVEL_MESSAGE;
	if (g_strcmp0(name, "debug") == 0)
		return G_LOG_LEVEL_DEBUG;
	return G_LOG_LEVEL_INFO;
}

static const char *
level_name(GLogLevelFlags level)
{
	switch (level & G_LOG_LEVEL_MASK) {
	case G_LOG_LEVEL_ERROR:
		return "error";
	case G_LOG_LEVEL_CRITICAL:
		return "critical";
	case G_LOG_LEVEL_WARNING:
		return "warning";
	case G_LOG_LEVEL_MESSAGE:
		return "notice";
	case G_LOG_LEVEL_INFO:
		return "info";
	default:
		return "debug";
	}
}

/* One line per record on stderr: time, level, domain, message. */
static GLogWriterOutput
log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
	const char *message = NULL, *domain = NULL;

	if ((level & G_LOG_LEVEL_MASK) > log_threshold)
		return G_LOG_WRITER_HANDLED;
	for (gsize i = 0; i < n_fields; i++) {
		if (g_str_equal(fields[i].key, "MESSAGE"))
			message = fields[i].value;
		else if (g_str_equal(fields[i].key, "GLIB_DOMAIN"))
			domain = fields[i].value;
	}
	g_autoptr(GDateTime) now = g_date_time_new_now_utc();
	g_autofree char *stamp = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S");
	fprintf(stderr, "%s.%03dZ %s %s: %s\n", stamp, g_date_time_get_microsecond(now) / 1000,
	        level_name(level), domain ? domain : "magpie", message ? message : "");
	return G_LOG_WRITER_HANDLED;
}

static gboolean
on_sighup(gpointer data)
{
	g_autoptr(GError) error = NULL;

	g_message("SIGHUP: reloading configuration");
	if (!magpie_server_reload(&error))
		g_message("reload failed: %s", error->message);
	return G_SOURCE_CONTINUE;
}

static gboolean
on_sigterm(gpointer data)
{
	g_message("shutting down");
	magpie_server_quit();
	return G_SOURCE_CONTINUE;
}

static void
close_gmodule(gpointer gmodule)
{
	g_module_close(gmodule);
}

static gboolean
report(GPtrArray *problems, GPtrArray *warnings)
{
	for (guint i = 0; i < warnings->len; i++)
		fprintf(stderr, "warning: %s\n", (char *) warnings->pdata[i]);
	for (guint i = 0; i < problems->len; i++)
		fprintf(stderr, "error: %s\n", (char *) problems->pdata[i]);
	return problems->len == 0;
}

static char **
migration_owners(MagpieConfigFile *cfg)
{
	g_autoptr(GStrvBuilder) owners = g_strv_builder_new();
	g_auto(GStrv) groups = magpie_config_file_module_groups(cfg);

	for (guint i = 0; groups && groups[i]; i++) {
		if (magpie_config_file_module_enabled(cfg, groups[i]))
			g_strv_builder_add(owners, groups[i]);
	}
	return g_strv_builder_end(owners);
}

/* The database may still be starting (a fresh sandbox, a reboot): retry the
 * migrations for a while before giving up. */
static gboolean
migrate_with_retry(MagpieConfigFile *cfg, GError **error)
{
	const char *conninfo = magpie_core_string("database", "conninfo");
	const char *sql_dir = magpie_core_string("core", "sql-dir");
	g_auto(GStrv) owners = migration_owners(cfg);

	for (int attempt = 0;; attempt++) {
		g_clear_error(error);
		if (magpie_pg_migrate(conninfo, sql_dir, (const char *const *) owners, error))
			return TRUE;
		if (attempt >= 30 ||
		    !g_error_matches(*error, MAGPIE_PG_ERROR, MAGPIE_PG_ERROR_UNAVAILABLE))
			return FALSE;
		if (attempt == 0)
			g_message("database not reachable yet (%s); retrying", (*error)->message);
		g_usleep(G_USEC_PER_SEC);
	}
}

int
main(int argc, char **argv)
{
	g_autofree char *config_path = NULL;
	gboolean check_only = FALSE, print_config = FALSE, version = FALSE;
	g_autoptr(GError) error = NULL;
	GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Configuration directory (magpie.conf and conf.d/) or file", "PATH" },
		{ "check-config", 0, 0, G_OPTION_ARG_NONE, &check_only,
		  "Check the configuration and exit", NULL },
		{ "print-config", 0, 0, G_OPTION_ARG_NONE, &print_config,
		  "Print the merged configuration with defaults and exit", NULL },
		{ "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version", NULL },
		{ NULL }
	};

	setlocale(LC_ALL, "");
	/* GnuTLS allocates a 16 KB buffer for every record it sends or
	 * receives, and glibc consolidates its fast bins before serving any
	 * such large request: on a heap that once held many sessions that
	 * walk cost up to a fifth of the CPU of a presence broadcast
	 * (docs/performance.md). Without fast bins, small chunks the thread
	 * cache does not keep go to the ordinary bins at once instead. */
	mallopt(M_MXFAST, 0);
	g_autoptr(GOptionContext) ctx = g_option_context_new("- the Magpie XMPP server");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
		fprintf(stderr, "magpied: %s\n", error->message);
		return 2;
	}
	if (version) {
		printf("magpied %s\n", MAGPIE_VERSION);
		return 0;
	}
	g_log_set_writer_func(log_writer, NULL, NULL);
	signal(SIGPIPE, SIG_IGN);

	MagpieConfigFile *cfg =
	        magpie_config_file_load(config_path ? config_path : MAGPIE_SYSCONF_DIR, &error);
	if (!cfg) {
		fprintf(stderr, "magpied: %s\n", error->message);
		return 1;
	}
	magpie_config_set_active(cfg);
	log_threshold = parse_log_level(magpie_core_string("core", "log-level"));
	magpie_modules_init(magpie_core_string("core", "module-dir"));

	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
	magpie_config_file_check_core(cfg, problems, warnings);
	magpie_server_check_modules(cfg, problems, warnings);
	gboolean config_ok = report(problems, warnings);
	if (check_only) {
		if (config_ok)
			printf("configuration OK\n");
		return config_ok ? 0 : 1;
	}
	if (!config_ok)
		return 1;
	if (print_config) {
		g_autoptr(GHashTable) schemas = g_hash_table_new(g_str_hash, g_str_equal);
		g_autoptr(GPtrArray) opened = g_ptr_array_new_with_free_func(close_gmodule);
		g_auto(GStrv) groups = magpie_config_file_module_groups(cfg);
		for (guint i = 0; groups && groups[i]; i++) {
			GModule *gm = NULL;
			const MagpieModuleInfo *info = magpie_modules_peek(groups[i], &gm, NULL);
			if (info) {
				g_hash_table_insert(schemas, groups[i], (gpointer) info->config);
				g_ptr_array_add(opened, gm);
			}
		}
		g_autofree char *text = magpie_config_file_print(cfg, schemas);
		fputs(text, stdout);
		return 0;
	}

	g_autoptr(MagpieTls) tls = magpie_server_build_tls(cfg, &error);
	if (!tls) {
		g_critical("TLS: %s", error->message);
		return 1;
	}
	magpie_tls_set_default(tls);

	MagpieSaslSettings sasl_settings = {
		.iterations = magpie_core_int("auth", "scram-iterations"),
		.fail_delay_ms = magpie_core_int("auth", "fail-delay"),
		.max_failures = magpie_core_int("auth", "max-failures"),
		.failure_window_s = magpie_core_int("auth", "failure-window") / 1000,
	};
	if (!magpie_sasl_global_init(&sasl_settings, &error)) {
		g_critical("SASL: %s", error->message);
		return 1;
	}
	magpie_accounts_set_iterations(sasl_settings.iterations);

	if (!migrate_with_retry(cfg, &error)) {
		g_critical("database: %s", error->message);
		return 1;
	}
	MagpiePgSettings pg_settings = {
		.conninfo = (char *) magpie_core_string("database", "conninfo"),
		.pool_size = magpie_core_int("database", "pool-size"),
		.query_timeout_ms = magpie_core_int("database", "query-timeout"),
		.reconnect_max_ms = 10000,
	};
	magpie_pg_start(&pg_settings);
	magpie_server_watch_accounts();

	if (!magpie_modules_load_enabled(&error)) {
		g_critical("modules: %s", error->message);
		return 1;
	}
	if (!magpie_listeners_start(&error)) {
		g_critical("%s", error->message);
		return 1;
	}
	if (!magpie_control_start(magpie_core_string("core", "control-socket"), &error)) {
		g_critical("control socket: %s", error->message);
		return 1;
	}

	g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
	magpie_server_set_loop(loop);
	g_unix_signal_add(SIGHUP, on_sighup, NULL);
	g_unix_signal_add(SIGTERM, on_sigterm, NULL);
	g_unix_signal_add(SIGINT, on_sigterm, NULL);
	g_autofree char *host_list = g_strjoinv(" ", (char **) magpie_config_hosts());
	g_message("magpied %s started for %s", MAGPIE_VERSION, host_list);
	g_main_loop_run(loop);

	/* Orderly stop: tell clients, give their connections a moment to
	 * flush, then tear down. */
	magpie_listeners_stop();
	magpie_control_stop();
	magpie_c2s_shutdown();
	g_autoptr(GMainContext) ctx_ref = g_main_context_ref(g_main_context_default());
	gint64 deadline = g_get_monotonic_time() + 500 * 1000;
	while (magpie_sessions_count() > 0 && g_get_monotonic_time() < deadline) {
		if (!g_main_context_iteration(ctx_ref, FALSE))
			g_usleep(1000);
	}
	magpie_modules_unload_all();
	magpie_pg_stop();
	magpie_sasl_global_done();
	magpie_config_set_active(NULL);
	return 0;
}
