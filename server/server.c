/* Daemon-wide state: core configuration access, TLS set-up from the
 * configuration, reload and quit. */
#include "accounts.h"
#include "config-file.h"
#include "module-host.h"
#include "server.h"
#include "session-private.h"
#include "tls.h"

static GMainLoop *main_loop;

void
magpie_server_set_loop(GMainLoop *loop)
{
	main_loop = loop;
}

void
magpie_server_quit(void)
{
	if (main_loop)
		g_main_loop_quit(main_loop);
}

static const MagpieConfigKey *
schema_for(const char *group)
{
	return magpie_config_core_schema(g_str_has_prefix(group, "host ") ? "host" : group);
}

gint64
magpie_core_int(const char *group, const char *key)
{
	return magpie_config_file_int(magpie_config_get_active(), group, key, schema_for(group));
}

const char *
magpie_core_string(const char *group, const char *key)
{
	return magpie_config_file_string(magpie_config_get_active(), group, key, schema_for(group));
}

gboolean
magpie_core_bool(const char *group, const char *key)
{
	return magpie_config_file_bool(magpie_config_get_active(), group, key, schema_for(group));
}

const char *const *
magpie_core_strv(const char *group, const char *key)
{
	return magpie_config_file_strv(magpie_config_get_active(), group, key, schema_for(group));
}

const char *
magpie_default_host(void)
{
	const char *const *hosts = magpie_config_hosts();

	return hosts && hosts[0] ? hosts[0] : "localhost";
}

/* One TLS context for all hosts: each host's own certificate, or [tls]'s. */
MagpieTls *
magpie_server_build_tls(MagpieConfigFile *cfg, GError **error)
{
	g_autoptr(MagpieTls) tls = magpie_tls_new();
	const char *const *hosts = magpie_config_file_hosts(cfg);
	const MagpieConfigKey *tls_schema = magpie_config_core_schema("tls");
	const MagpieConfigKey *host_schema = magpie_config_core_schema("host");

	if (!magpie_tls_set_priority(
	            tls, magpie_config_file_string(cfg, "tls", "priority", tls_schema), error))
		return NULL;

	for (guint i = 0; hosts && hosts[i]; i++) {
		g_autofree char *group = g_strdup_printf("host %s", hosts[i]);
		const char *cert =
		        magpie_config_file_string(cfg, group, "certificate", host_schema);
		const char *key = magpie_config_file_string(cfg, group, "key", host_schema);
		if (!cert || !*cert) {
			cert = magpie_config_file_string(cfg, "tls", "certificate", tls_schema);
			key = magpie_config_file_string(cfg, "tls", "key", tls_schema);
		}
		if (!cert || !*cert || !key || !*key) {
			g_set_error(error, MAGPIE_TLS_ERROR, MAGPIE_TLS_ERROR_CERTIFICATE,
			            "no certificate for host %s: set certificate and key in "
			            "[host %s] or [tls]",
			            hosts[i], hosts[i]);
			return NULL;
		}
		if (!magpie_tls_add_host(tls, hosts[i], cert, key, error))
			return NULL;
	}
	return g_steal_pointer(&tls);
}

/* Did any key of module @name's group change between @old and @new? */
static gboolean
module_config_changed(MagpieConfigFile *old, MagpieConfigFile *new, MagpieModule *mod)
{
	const MagpieModuleInfo *info = magpie_module_info(mod);
	const char *name = info->name;

	for (const MagpieConfigKey *k = info->config; k && k->key; k++) {
		if (g_strcmp0(magpie_config_file_string(old, name, k->key, info->config),
		              magpie_config_file_string(new, name, k->key, info->config)) != 0)
			return TRUE;
	}
	return FALSE;
}

/* Every enabled module group must name a module whose schema accepts it. */
gboolean
magpie_server_check_modules(MagpieConfigFile *cfg, GPtrArray *problems, GPtrArray *warnings)
{
	g_auto(GStrv) groups = magpie_config_file_module_groups(cfg);

	for (guint i = 0; groups && groups[i]; i++) {
		g_autoptr(GError) error = NULL;
		GModule *gmodule = NULL;
		if (!magpie_config_file_module_enabled(cfg, groups[i]))
			continue;
		const MagpieModuleInfo *info = magpie_modules_peek(groups[i], &gmodule, &error);
		if (!info) {
			const char *origin = magpie_config_file_origin(cfg, groups[i], "enabled");
			g_ptr_array_add(problems, g_strdup_printf("%s: [%s] enabled: %s",
			                                          origin ? origin : "configuration",
			                                          groups[i], error->message));
			continue;
		}
		magpie_config_file_check_group(cfg, groups[i], info->config, problems, warnings);
		g_module_close(gmodule);
	}
	return problems->len == 0;
}

gboolean
magpie_server_reload(GError **error)
{
	MagpieConfigFile *old = magpie_config_get_active();
	const char *path = magpie_config_file_path(old);
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);

	MagpieConfigFile *cfg = magpie_config_file_load(path, error);
	if (!cfg)
		return FALSE;
	magpie_config_file_check_core(cfg, problems, warnings);
	magpie_server_check_modules(cfg, problems, warnings);
	for (guint i = 0; i < warnings->len; i++)
		g_message("config: %s", (char *) warnings->pdata[i]);
	if (problems->len > 0) {
		g_ptr_array_add(problems, NULL);
		g_autofree char *all = g_strjoinv("\n", (char **) problems->pdata);
		g_set_error(error, MAGPIE_CONFIG_ERROR, MAGPIE_CONFIG_ERROR_INVALID,
		            "configuration not reloaded:\n%s", all);
		magpie_config_file_free(cfg);
		return FALSE;
	}
	g_autoptr(MagpieTls) tls = magpie_server_build_tls(cfg, error);
	if (!tls) {
		magpie_config_file_free(cfg);
		return FALSE;
	}

	/* Decide module changes against the old configuration, then switch. */
	g_autoptr(GPtrArray) loaded = magpie_modules_loaded();
	g_autoptr(GPtrArray) to_unload = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) to_reload = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; i < loaded->len; i++) {
		const char *name = loaded->pdata[i];
		MagpieModule *mod = magpie_modules_find(name);
		if (!mod)
			continue;
		if (!magpie_config_file_module_enabled(cfg, name))
			g_ptr_array_add(to_unload, g_strdup(name));
		else if (module_config_changed(old, cfg, mod))
			g_ptr_array_add(to_reload, g_strdup(name));
	}
	magpie_config_set_active(cfg); /* frees the old one */
	magpie_tls_set_default(tls);
	magpie_accounts_set_iterations(magpie_core_int("auth", "scram-iterations"));

	gboolean ok = TRUE;
	for (guint i = 0; i < to_unload->len; i++) {
		g_autoptr(GError) e = NULL;
		if (magpie_modules_unload(to_unload->pdata[i], TRUE, &e))
			g_message("module %s unloaded (disabled in configuration)",
			          (char *) to_unload->pdata[i]);
		else if (!g_error_matches(e, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_STATE))
			g_message("module %s: %s", (char *) to_unload->pdata[i], e->message);
	}
	for (guint i = 0; i < to_reload->len; i++) {
		g_autoptr(GError) e = NULL;
		if (!magpie_modules_reload(to_reload->pdata[i], &e)) {
			g_message("module %s: %s", (char *) to_reload->pdata[i], e->message);
			ok = FALSE;
		}
	}
	g_autoptr(GError) load_error = NULL;
	if (!magpie_modules_load_enabled(&load_error)) {
		g_propagate_error(error, g_steal_pointer(&load_error));
		return FALSE;
	}
	if (!ok) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_LOAD,
		            "configuration reloaded, but some modules failed (see the log)");
		return FALSE;
	}
	g_message("configuration and certificates reloaded");
	return TRUE;
}

/* docs/admin.md, "Notifications": SQL changes to accounts take effect at
 * once, whatever made them. The payload is "<op> <user@host>". */
static void
on_account_notify(const char *channel, const char *payload, gpointer user_data)
{
	g_auto(GStrv) parts = g_strsplit(payload ? payload : "", " ", 2);
	guint n = 0;

	if (!parts[0] || !parts[1]) {
		g_message("account notification with an unexpected payload ignored");
		return;
	}
	g_autoptr(MagpieJid) jid = magpie_jid_parse(parts[1], NULL);
	if (!jid)
		return;
	if (g_str_equal(parts[0], "created")) {
		magpie_hook_fire(MAGPIE_EVENT_USER_CREATED, NULL, NULL, jid, NULL);
		return;
	}
	if (g_str_equal(parts[0], "disabled"))
		n = magpie_sessions_kick(parts[1], "not-authorized", "Account disabled");
	else if (g_str_equal(parts[0], "deleted"))
		n = magpie_sessions_kick(parts[1], "not-authorized", "Account deleted");
	else if (g_str_equal(parts[0], "password"))
		/* RFC 6120 §4.9.3.19: credentials changed; log in again. */
		n = magpie_sessions_kick(parts[1], "reset", "Password changed");
	else
		return;
	if (n > 0)
		g_info("account %s %s: %u session(s) closed", parts[1], parts[0], n);
	if (g_str_equal(parts[0], "deleted"))
		magpie_hook_fire(MAGPIE_EVENT_USER_DELETED, NULL, NULL, jid, NULL);
}

void
magpie_server_watch_accounts(void)
{
	magpie_pg_listen("magpie_account", on_account_notify, NULL, NULL);
}
