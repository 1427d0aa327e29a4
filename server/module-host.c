/* The module host: finding, checking, opening and closing module files,
 * the descriptor's registrations, module-owned resources, disco data and
 * control commands of modules.
 *
 * Rules from research/crux.md §5: modules are opened with
 * G_MODULE_BIND_LOCAL and without LAZY (an unresolved symbol fails the
 * open cleanly instead of killing the process at the first call); every
 * registration a module made is removed before g_module_close() (a
 * dangling handler is a SIGSEGV); a reload closes the old object before
 * opening the file again (the dynamic linker hands back the old code for a
 * path that is still open). A .so must never be overwritten in place while
 * loaded: install a new file and rename it.
 *
 * Asynchronous callbacks (PostgreSQL, account operations) may still be on
 * their way when a module unloads; magpie_module_guard_callback() lets the
 * core drop those of a module that is gone instead of jumping into code
 * that is no longer mapped.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "config-file.h"
#include "module-host.h"
#include "module-internal.h"
#include "pg-pool.h"
#include "session-private.h"

struct _MagpieModule {
	char *name;
	char *path;
	GModule *gmodule;
	const MagpieModuleInfo *info;
	MagpieConfigKey *schema;  /* info->config plus the implicit "enabled" */
	GHashTable *default_strv; /* key -> GStrv, defaults without an active config */
	gpointer data;
	GDestroyNotify data_destroy;
	GPtrArray *features;   /* char *, added in load() */
	GPtrArray *identities; /* char * triples */
	GPtrArray *timeouts;   /* GSource * (ref) */
	gconstpointer base;    /* load address of the object, for callback owners */
	guint serial;          /* unique per load: a reload is a new module */
};

G_DEFINE_QUARK(magpie - module - error - quark, magpie_module_error)

static char *module_dir;
static GPtrArray *loaded_modules;    /* MagpieModule *, load order */
static MagpieModule *module_in_load; /* inside its load() */
static GPtrArray *core_features;     /* char * */
static gint64 server_start_time;

static const char *const core_events[] = {
	MAGPIE_EVENT_STANZA_PRE,      MAGPIE_EVENT_IQ_PRE,
	MAGPIE_EVENT_MESSAGE_BARE,    MAGPIE_EVENT_PRESENCE_BARE,
	MAGPIE_EVENT_MESSAGE_FULL,    MAGPIE_EVENT_PRESENCE_FULL,
	MAGPIE_EVENT_MESSAGE_HOST,    MAGPIE_EVENT_PRESENCE_HOST,
	MAGPIE_EVENT_MESSAGE_OFFLINE, MAGPIE_EVENT_PRESENCE_OUT,
	MAGPIE_EVENT_PRESENCE_IN,     MAGPIE_EVENT_PRESENCE_BROADCAST,
	MAGPIE_EVENT_IQ_HOST,         MAGPIE_EVENT_IQ_BARE,
	MAGPIE_EVENT_IQ_FULL,         MAGPIE_EVENT_STREAM_FEATURES,
	MAGPIE_EVENT_SESSION_BOUND,   MAGPIE_EVENT_SESSION_AVAILABLE,
	MAGPIE_EVENT_SESSION_END,     MAGPIE_EVENT_USER_CREATED,
	MAGPIE_EVENT_USER_DELETED,    NULL,
};

static void
modules_ensure(void)
{
	if (loaded_modules == NULL)
		loaded_modules = g_ptr_array_new();
	if (core_features == NULL)
		core_features = g_ptr_array_new_with_free_func(g_free);
	if (server_start_time == 0)
		server_start_time = g_get_real_time();
}

void
magpie_modules_init(const char *dir)
{
	modules_ensure();
	g_free(module_dir);
	module_dir = g_strdup(dir ? dir : MAGPIE_MODULE_DIR);
	magpie_async_callback_guard = magpie_module_guard_callback;
}

static const char *
modules_dir(void)
{
	if (module_dir == NULL)
		module_dir = g_strdup(MAGPIE_MODULE_DIR);
	return module_dir;
}

gint64
magpie_server_start_time(void)
{
	modules_ensure();
	return server_start_time;
}

/* Finding and opening */

static gboolean
module_name_is_valid(const char *name)
{
	if (name == NULL || *name == '\0' || strlen(name) > 64)
		return FALSE;
	for (const char *p = name; *p; p++) {
		if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-')
			return FALSE;
	}
	return TRUE;
}

static char *
module_find_file(const char *name, GError **error)
{
	g_autofree char *file = NULL;
	g_autofree char *flat = NULL;
	g_autofree char *nested = NULL;

	if (!module_name_is_valid(name)) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_NOT_FOUND,
		            "\"%s\" is not a valid module name", name ? name : "");
		return NULL;
	}
	file = g_strconcat(name, ".so", NULL);
	/* <dir>/<name>.so when installed, <dir>/<name>/<name>.so in a build
	 * tree (build/modules/disco/disco.so). */
	flat = g_build_filename(modules_dir(), file, NULL);
	if (g_file_test(flat, G_FILE_TEST_EXISTS))
		return g_steal_pointer(&flat);
	nested = g_build_filename(modules_dir(), name, file, NULL);
	if (g_file_test(nested, G_FILE_TEST_EXISTS))
		return g_steal_pointer(&nested);
	g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_NOT_FOUND,
	            "no module named %s in %s", name, modules_dir());
	return NULL;
}

/* Only regular files owned by root or by us, writable by nobody else. */
static gboolean
module_check_file(const char *path, GError **error)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		int errsv = errno;

		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID, "%s: %s", path,
		            g_strerror(errsv));
		return FALSE;
	}
	if (!S_ISREG(st.st_mode)) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID,
		            "%s is not a regular file", path);
		return FALSE;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID,
		            "%s is owned by uid %u, neither root nor the server's user", path,
		            (unsigned) st.st_uid);
		return FALSE;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID,
		            "%s is group- or world-writable (mode %04o)", path,
		            (unsigned) (st.st_mode & 07777));
		return FALSE;
	}
	return TRUE;
}

static GModule *
module_open(const char *name, const MagpieModuleInfo **info_out, char **path_out, GError **error)
{
	g_autofree char *path = NULL;
	g_autofree char *symbol = NULL;
	const MagpieModuleInfo *info = NULL;
	GModule *gmodule;

	path = module_find_file(name, error);
	if (path == NULL)
		return NULL;
	if (!module_check_file(path, error))
		return NULL;

	/* No LAZY: an unresolved symbol fails here, not at its first call. */
	gmodule = g_module_open(path, G_MODULE_BIND_LOCAL);
	if (gmodule == NULL) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID,
		            "cannot open %s: %s", path, g_module_error());
		return NULL;
	}
	symbol = g_strconcat("magpie_module_", name, NULL);
	g_strdelimit(symbol, "-", '_');
	if (!g_module_symbol(gmodule, symbol, (gpointer *) &info) || info == NULL) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID,
		            "%s does not export %s", path, symbol);
		g_module_close(gmodule);
		return NULL;
	}
	if (info->abi_version != MAGPIE_MODULE_ABI_VERSION) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID,
		            "%s was built for module ABI %u; this server has ABI %u", path,
		            info->abi_version, (guint) MAGPIE_MODULE_ABI_VERSION);
		g_module_close(gmodule);
		return NULL;
	}
	if (g_strcmp0(info->name, name) != 0) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_INVALID,
		            "%s describes itself as \"%s\", not \"%s\"", path,
		            info->name ? info->name : "(null)", name);
		g_module_close(gmodule);
		return NULL;
	}
	*info_out = info;
	if (path_out)
		*path_out = g_steal_pointer(&path);
	return gmodule;
}

const MagpieModuleInfo *
magpie_modules_peek(const char *name, GModule **gmodule_out, GError **error)
{
	const MagpieModuleInfo *info = NULL;
	GModule *gmodule;

	g_return_val_if_fail(name != NULL, NULL);
	g_return_val_if_fail(gmodule_out != NULL, NULL);

	gmodule = module_open(name, &info, NULL, error);
	if (gmodule == NULL)
		return NULL;
	*gmodule_out = gmodule;
	return info;
}

/* Registry */

MagpieModule *
magpie_modules_find(const char *name)
{
	g_return_val_if_fail(name != NULL, NULL);

	if (loaded_modules == NULL)
		return NULL;
	for (guint i = 0; i < loaded_modules->len; i++) {
		MagpieModule *mod = loaded_modules->pdata[i];

		if (strcmp(mod->name, name) == 0)
			return mod;
	}
	return NULL;
}

GPtrArray *
magpie_modules_loaded(void)
{
	GPtrArray *names = g_ptr_array_new();

	if (loaded_modules != NULL) {
		for (guint i = 0; i < loaded_modules->len; i++)
			g_ptr_array_add(names, ((MagpieModule *) loaded_modules->pdata[i])->name);
	}
	return names;
}

const MagpieModuleInfo *
magpie_module_info(MagpieModule *mod)
{
	g_return_val_if_fail(mod != NULL, NULL);
	return mod->info;
}

const char *
magpie_module_name(MagpieModule *mod)
{
	g_return_val_if_fail(mod != NULL, NULL);
	return mod->name;
}

static gboolean
strv_contains(const char *const *strv, const char *str)
{
	return strv != NULL && g_strv_contains(strv, str);
}

gboolean
magpie_modules_event_is_known(const char *event, MagpieModule *loading)
{
	if (g_strv_contains(core_events, event))
		return TRUE;
	if (loading != NULL && strv_contains(loading->info->events, event))
		return TRUE;
	if (loaded_modules == NULL)
		return FALSE;
	for (guint i = 0; i < loaded_modules->len; i++) {
		MagpieModule *mod = loaded_modules->pdata[i];

		if (strv_contains(mod->info->events, event))
			return TRUE;
	}
	return FALSE;
}

static MagpieConfigKey *
module_build_schema(const MagpieModuleInfo *info)
{
	MagpieConfigKey *schema;
	gboolean has_enabled = FALSE;
	guint n = 0;

	for (const MagpieConfigKey *k = info->config; k && k->key; k++) {
		if (strcmp(k->key, "enabled") == 0)
			has_enabled = TRUE;
		n++;
	}
	schema = g_new0(MagpieConfigKey, n + 2);
	if (n > 0)
		memcpy(schema, info->config, n * sizeof(MagpieConfigKey));
	if (!has_enabled) {
		schema[n] = (MagpieConfigKey){ "enabled", MAGPIE_CONFIG_BOOL,         "false", 0,
			                       0,         "Load this module at start" };
	}
	return schema;
}

static MagpieModule *
module_new(const char *name, char *path, GModule *gmodule, const MagpieModuleInfo *info)
{
	MagpieModule *mod = g_new0(MagpieModule, 1);

	mod->name = g_strdup(name);
	mod->path = path;
	mod->gmodule = gmodule;
	mod->info = info;
	mod->schema = module_build_schema(info);
	mod->default_strv =
	        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) g_strfreev);
	mod->features = g_ptr_array_new_with_free_func(g_free);
	mod->identities = g_ptr_array_new_with_free_func(g_free);
	mod->timeouts = g_ptr_array_new();

	static guint serials;
	Dl_info where;
	mod->serial = ++serials;
	if (dladdr(info, &where) && where.dli_fbase)
		mod->base = where.dli_fbase;
	return mod;
}

/* The serial of the loaded module whose code @address is in, or 0 (core
 * code, or no module we know). */
static guint
module_serial_of(gconstpointer address)
{
	Dl_info where;

	if (!dladdr(address, &where) || !where.dli_fbase)
		return 0;
	/* From inside load(): not in loaded_modules yet. */
	if (module_in_load != NULL && module_in_load->base == where.dli_fbase)
		return module_in_load->serial;
	for (guint i = 0; loaded_modules && i < loaded_modules->len; i++) {
		MagpieModule *mod = loaded_modules->pdata[i];
		if (mod->base == where.dli_fbase)
			return mod->serial;
	}
	return 0;
}

static gboolean
module_serial_loaded(guint serial)
{
	if (module_in_load != NULL && module_in_load->serial == serial)
		return TRUE;
	for (guint i = 0; loaded_modules && i < loaded_modules->len; i++) {
		if (((MagpieModule *) loaded_modules->pdata[i])->serial == serial)
			return TRUE;
	}
	return FALSE;
}

typedef struct {
	GAsyncReadyCallback callback;
	gpointer user_data;
	guint serial;
} CallbackGuard;

static void
guard_trampoline(GObject *source, GAsyncResult *result, gpointer data)
{
	CallbackGuard *guard = data;

	if (module_serial_loaded(guard->serial))
		guard->callback(source, result, guard->user_data);
	else
		/* Its user_data is the module's to free, and the module is
		 * gone: a small leak beats a jump into unmapped code. */
		g_debug("dropped the completion of an operation of an unloaded module");
	g_free(guard);
}

void
magpie_module_guard_callback(GAsyncReadyCallback *callback_inout, gpointer *user_data_inout)
{
	guint serial;

	if (*callback_inout == NULL || (serial = module_serial_of(*callback_inout)) == 0)
		return;
	CallbackGuard *guard = g_new(CallbackGuard, 1);
	guard->callback = *callback_inout;
	guard->user_data = *user_data_inout;
	guard->serial = serial;
	*callback_inout = guard_trampoline;
	*user_data_inout = guard;
}

static void
module_destroy_timeouts(MagpieModule *mod)
{
	for (guint i = 0; i < mod->timeouts->len; i++) {
		GSource *source = mod->timeouts->pdata[i];

		g_source_destroy(source);
		g_source_unref(source);
	}
	g_ptr_array_set_size(mod->timeouts, 0);
}

/* Everything the module registered, through its descriptor or in load(). */
static void
module_unregister_all(MagpieModule *mod)
{
	magpie_hook_remove_module(mod);
	magpie_iq_unregister_module(mod);
	magpie_iq_cancel_module(mod);
	module_destroy_timeouts(mod);
	g_ptr_array_set_size(mod->features, 0);
	g_ptr_array_set_size(mod->identities, 0);
}

static void
module_free_data(MagpieModule *mod)
{
	GDestroyNotify destroy = mod->data_destroy;
	gpointer data = mod->data;

	mod->data = NULL;
	mod->data_destroy = NULL;
	if (destroy && data)
		destroy(data);
}

/* Close and free; every registration must already be gone. */
static void
module_free(MagpieModule *mod)
{
	if (mod->gmodule && !g_module_close(mod->gmodule))
		g_message("closing %s: %s", mod->path, g_module_error());
	g_ptr_array_unref(mod->timeouts);
	g_ptr_array_unref(mod->features);
	g_ptr_array_unref(mod->identities);
	g_hash_table_unref(mod->default_strv);
	g_free(mod->schema);
	g_free(mod->path);
	g_free(mod->name);
	g_free(mod);
}

static gboolean
module_check_config(MagpieModule *mod, GError **error)
{
	MagpieConfigFile *cfg = magpie_config_get_active();
	g_autoptr(GPtrArray) problems = NULL;
	g_autoptr(GPtrArray) warnings = NULL;
	g_autoptr(GString) message = NULL;

	if (cfg == NULL)
		return TRUE;
	problems = g_ptr_array_new_with_free_func(g_free);
	warnings = g_ptr_array_new_with_free_func(g_free);
	magpie_config_file_check_group(cfg, mod->name, mod->schema, problems, warnings);
	for (guint i = 0; i < warnings->len; i++)
		g_message("%s", (const char *) warnings->pdata[i]);
	if (problems->len == 0)
		return TRUE;
	message = g_string_new(NULL);
	g_string_append_printf(message, "invalid configuration for module %s:", mod->name);
	for (guint i = 0; i < problems->len; i++)
		g_string_append_printf(message, "\n%s", (const char *) problems->pdata[i]);
	g_set_error_literal(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_CONFIG, message->str);
	return FALSE;
}

static gboolean
module_register_tables(MagpieModule *mod, GError **error)
{
	const MagpieModuleInfo *info = mod->info;

	for (const MagpieHookSpec *h = info->hooks; h && h->event; h++) {
		if (!magpie_module_add_hook(mod, h->event, h->func, h->priority, error))
			return FALSE;
	}
	for (const MagpieIqSpec *q = info->iqs; q && q->xmlns; q++) {
		if (!magpie_iq_register(mod, q, error))
			return FALSE;
	}
	for (const MagpieControlSpec *c = info->commands; c && c->name; c++) {
		for (const MagpieControlSpec *d = info->commands; d != c; d++) {
			if (strcmp(c->name, d->name) == 0) {
				g_set_error(error, MAGPIE_MODULE_ERROR,
				            MAGPIE_MODULE_ERROR_CONFLICT,
				            "module %s declares the command \"%s\" twice",
				            mod->name, c->name);
				return FALSE;
			}
		}
	}
	/* Disco features and commands are read from the descriptor on demand:
	 * the module being in the loaded list is their registration. */
	return TRUE;
}

/* Unregister, drop per-session data, unload(), free data, close. */
static void
module_unload_one(MagpieModule *mod)
{
	g_info("unloading module %s", mod->name);
	g_ptr_array_remove(loaded_modules, mod);
	module_unregister_all(mod);
	magpie_sessions_clear_module_data(mod);
	if (mod->info->unload)
		mod->info->unload(mod);
	/* unload() may have started something through the API; drop it. */
	module_unregister_all(mod);
	module_free_data(mod);
	module_free(mod);
}

static gboolean
module_load_one(const char *name, GPtrArray *stack, GPtrArray *newly, GError **error)
{
	g_autoptr(GError) local_error = NULL;
	const MagpieModuleInfo *info = NULL;
	GModule *gmodule;
	char *path = NULL;
	MagpieModule *mod;

	if (magpie_modules_find(name) != NULL)
		return TRUE;
	for (guint i = 0; i < stack->len; i++) {
		if (strcmp(stack->pdata[i], name) == 0) {
			g_autoptr(GString) cycle = g_string_new(NULL);

			for (guint j = i; j < stack->len; j++)
				g_string_append_printf(cycle, "%s -> ",
				                       (const char *) stack->pdata[j]);
			g_string_append(cycle, name);
			g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_DEPENDENCY,
			            "dependency cycle: %s", cycle->str);
			return FALSE;
		}
	}

	gmodule = module_open(name, &info, &path, error);
	if (gmodule == NULL)
		return FALSE;

	g_ptr_array_add(stack, (gpointer) name);
	for (const char *const *req = info->requires; req && *req; req++) {
		if (!module_load_one(*req, stack, newly, &local_error)) {
			if (local_error->code == MAGPIE_MODULE_ERROR_DEPENDENCY &&
			    g_str_has_prefix(local_error->message, "dependency cycle"))
				g_propagate_error(error, g_steal_pointer(&local_error));
			else
				g_set_error(error, MAGPIE_MODULE_ERROR,
				            MAGPIE_MODULE_ERROR_DEPENDENCY,
				            "module %s requires %s: %s", name, *req,
				            local_error->message);
			g_ptr_array_remove_index(stack, stack->len - 1);
			g_module_close(gmodule);
			g_free(path);
			return FALSE;
		}
	}
	g_ptr_array_remove_index(stack, stack->len - 1);

	mod = module_new(name, path, gmodule, info);
	if (!module_check_config(mod, error) || !module_register_tables(mod, error)) {
		module_unregister_all(mod);
		module_free(mod);
		return FALSE;
	}
	module_in_load = mod;
	gboolean loaded = !info->load || info->load(mod, &local_error);
	module_in_load = NULL;
	if (!loaded) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_LOAD,
		            "module %s refused to load: %s", name,
		            local_error ? local_error->message : "(no reason given)");
		module_unregister_all(mod);
		magpie_sessions_clear_module_data(mod);
		module_free_data(mod);
		module_free(mod);
		return FALSE;
	}
	g_ptr_array_add(loaded_modules, mod);
	g_ptr_array_add(newly, mod);
	g_info("loaded module %s from %s", name, mod->path);
	return TRUE;
}

/* Load @name with its requirements; on failure the requirements loaded on
 * the way are unloaded again. */
static gboolean
module_load_top(const char *name, GError **error)
{
	g_autoptr(GPtrArray) stack = g_ptr_array_new();
	g_autoptr(GPtrArray) newly = g_ptr_array_new();

	if (module_load_one(name, stack, newly, error))
		return TRUE;
	for (guint i = newly->len; i > 0; i--)
		module_unload_one(newly->pdata[i - 1]);
	return FALSE;
}

gboolean
magpie_modules_load(const char *name, GError **error)
{
	g_return_val_if_fail(name != NULL, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

	modules_ensure();
	if (magpie_modules_find(name) != NULL) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_STATE,
		            "module %s is already loaded", name);
		return FALSE;
	}
	return module_load_top(name, error);
}

static gboolean
module_requires(MagpieModule *mod, MagpieModule *other)
{
	return strv_contains(mod->info->requires, other->name);
}

/* Loaded modules that need @mod, directly or through others, in load
 * order (requirements always load first, so one pass suffices). */
static GPtrArray *
module_dependants(MagpieModule *mod)
{
	GPtrArray *deps = g_ptr_array_new();
	guint i;

	if (!g_ptr_array_find(loaded_modules, mod, &i))
		return deps;
	for (i = i + 1; i < loaded_modules->len; i++) {
		MagpieModule *other = loaded_modules->pdata[i];
		gboolean needs = module_requires(other, mod);

		for (guint j = 0; !needs && j < deps->len; j++)
			needs = module_requires(other, deps->pdata[j]);
		if (needs)
			g_ptr_array_add(deps, other);
	}
	return deps;
}

gboolean
magpie_modules_unload(const char *name, gboolean cascade, GError **error)
{
	g_autoptr(GPtrArray) deps = NULL;
	MagpieModule *mod;

	g_return_val_if_fail(name != NULL, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

	mod = magpie_modules_find(name);
	if (mod == NULL) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_STATE,
		            "module %s is not loaded", name);
		return FALSE;
	}
	deps = module_dependants(mod);
	if (deps->len > 0 && !cascade) {
		g_autoptr(GString) names = g_string_new(NULL);

		for (guint i = 0; i < deps->len; i++)
			g_string_append_printf(names, "%s%s", i ? ", " : "",
			                       ((MagpieModule *) deps->pdata[i])->name);
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_DEPENDENCY,
		            "module %s is required by %s", name, names->str);
		return FALSE;
	}
	for (guint i = deps->len; i > 0; i--)
		module_unload_one(deps->pdata[i - 1]);
	module_unload_one(mod);
	return TRUE;
}

gboolean
magpie_modules_reload(const char *name, GError **error)
{
	g_autoptr(GPtrArray) deps = NULL;
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GString) failures = NULL;
	MagpieModule *mod;

	g_return_val_if_fail(name != NULL, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

	mod = magpie_modules_find(name);
	if (mod == NULL) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_STATE,
		            "module %s is not loaded", name);
		return FALSE;
	}
	deps = module_dependants(mod);
	for (guint i = 0; i < deps->len; i++)
		g_ptr_array_add(names, g_strdup(((MagpieModule *) deps->pdata[i])->name));
	for (guint i = deps->len; i > 0; i--)
		module_unload_one(deps->pdata[i - 1]);
	/* Closed before it is opened again: the same path still open would
	 * give back the old code. */
	module_unload_one(mod);

	if (!module_load_top(name, error)) {
		if (names->len > 0)
			g_prefix_error(error, "(dependants left unloaded) ");
		return FALSE;
	}
	for (guint i = 0; i < names->len; i++) {
		g_autoptr(GError) local_error = NULL;

		if (magpie_modules_find(names->pdata[i]))
			continue;
		if (!module_load_top(names->pdata[i], &local_error)) {
			if (failures == NULL)
				failures = g_string_new(NULL);
			g_string_append_printf(failures, "%s%s", failures->len ? "\n" : "",
			                       local_error->message);
		}
	}
	if (failures != NULL) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_DEPENDENCY,
		            "module %s reloaded, but not all of its dependants: %s", name,
		            failures->str);
		return FALSE;
	}
	return TRUE;
}

static int
compare_strings(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

gboolean
magpie_modules_load_enabled(GError **error)
{
	MagpieConfigFile *cfg = magpie_config_get_active();
	g_auto(GStrv) groups = NULL;
	g_autoptr(GString) failures = NULL;
	int first_code = 0;

	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

	modules_ensure();
	if (cfg == NULL)
		return TRUE;
	groups = magpie_config_file_module_groups(cfg);
	if (groups == NULL)
		return TRUE;
	/* A stable order whatever the files' order; requires come first
	 * anyway. */
	qsort(groups, g_strv_length(groups), sizeof(char *), compare_strings);

	for (char **group = groups; *group; group++) {
		g_autoptr(GError) local_error = NULL;
		g_autofree char *path = module_find_file(*group, &local_error);

		if (path != NULL && magpie_config_file_module_enabled(cfg, *group) &&
		    magpie_modules_find(*group) == NULL)
			module_load_top(*group, &local_error);
		if (local_error == NULL)
			continue;
		if (failures == NULL) {
			failures = g_string_new(NULL);
			first_code = local_error->code;
		} else {
			g_string_append_c(failures, '\n');
		}
		g_string_append_printf(failures, "[%s]: %s", *group, local_error->message);
	}
	if (failures != NULL) {
		g_set_error_literal(error, MAGPIE_MODULE_ERROR, first_code, failures->str);
		return FALSE;
	}
	return TRUE;
}

void
magpie_modules_unload_all(void)
{
	if (loaded_modules == NULL)
		return;
	/* Reverse load order: dependants go before what they require. */
	while (loaded_modules->len > 0)
		module_unload_one(loaded_modules->pdata[loaded_modules->len - 1]);
}

/* Module data and dynamic registrations */

void
magpie_module_set_data(MagpieModule *mod, gpointer data, GDestroyNotify destroy)
{
	g_return_if_fail(mod != NULL);

	if (mod->data != data)
		module_free_data(mod);
	mod->data = data;
	mod->data_destroy = destroy;
}

gpointer
magpie_module_get_data(MagpieModule *mod)
{
	g_return_val_if_fail(mod != NULL, NULL);
	return mod->data;
}

gboolean
magpie_module_add_hook(MagpieModule *mod, const char *event, MagpieHookFunc func, int priority,
                       GError **error)
{
	g_return_val_if_fail(mod != NULL, FALSE);
	g_return_val_if_fail(event != NULL, FALSE);
	g_return_val_if_fail(func != NULL, FALSE);

	if (!magpie_modules_event_is_known(event, mod)) {
		g_set_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_CONFLICT,
		            "module %s hooks the unknown event \"%s\"", mod->name, event);
		return FALSE;
	}
	magpie_hook_add_internal(mod, event, func, priority);
	return TRUE;
}

gboolean
magpie_module_add_iq(MagpieModule *mod, const MagpieIqSpec *spec, GError **error)
{
	g_return_val_if_fail(mod != NULL, FALSE);
	g_return_val_if_fail(spec != NULL && spec->xmlns != NULL && spec->element != NULL, FALSE);

	return magpie_iq_register(mod, spec, error);
}

static gboolean
ptr_array_has_string(GPtrArray *array, const char *str)
{
	for (guint i = 0; i < array->len; i++) {
		if (strcmp(array->pdata[i], str) == 0)
			return TRUE;
	}
	return FALSE;
}

void
magpie_module_add_disco_feature(MagpieModule *mod, const char *feature)
{
	g_return_if_fail(mod != NULL);
	g_return_if_fail(feature != NULL);

	if (!ptr_array_has_string(mod->features, feature))
		g_ptr_array_add(mod->features, g_strdup(feature));
}

void
magpie_module_add_disco_identity(MagpieModule *mod, const char *category, const char *type,
                                 const char *name)
{
	g_return_if_fail(mod != NULL);
	g_return_if_fail(category != NULL && type != NULL);

	g_ptr_array_add(mod->identities, g_strdup(category));
	g_ptr_array_add(mod->identities, g_strdup(type));
	g_ptr_array_add(mod->identities, g_strdup(name ? name : ""));
}

GSource *
magpie_module_add_timeout(MagpieModule *mod, guint interval_ms, GSourceFunc func, gpointer data,
                          GDestroyNotify destroy)
{
	GSource *source;

	g_return_val_if_fail(mod != NULL, NULL);
	g_return_val_if_fail(func != NULL, NULL);

	/* Forget the ones that are over, so a module arming one-shot timers
	 * all day does not grow the list. */
	for (guint i = 0; i < mod->timeouts->len;) {
		GSource *old = mod->timeouts->pdata[i];

		if (g_source_is_destroyed(old)) {
			g_source_unref(old);
			g_ptr_array_remove_index_fast(mod->timeouts, i);
		} else {
			i++;
		}
	}
	source = g_timeout_source_new(interval_ms);
	g_source_set_callback(source, func, data, destroy);
	g_source_set_static_name(source, "magpie module timeout");
	g_source_attach(source, NULL);
	g_ptr_array_add(mod->timeouts, source);
	return source;
}

/* Disco */

void
magpie_disco_add_core_feature(const char *feature)
{
	g_return_if_fail(feature != NULL);

	modules_ensure();
	if (!ptr_array_has_string(core_features, feature))
		g_ptr_array_add(core_features, g_strdup(feature));
}

static void
add_feature(GHashTable *set, GPtrArray *out, const char *feature)
{
	if (g_hash_table_add(set, (gpointer) feature))
		g_ptr_array_add(out, (gpointer) feature);
}

GPtrArray *
magpie_disco_features(void)
{
	g_autoptr(GHashTable) set = g_hash_table_new(g_str_hash, g_str_equal);
	GPtrArray *features = g_ptr_array_new();

	modules_ensure();
	for (guint i = 0; i < core_features->len; i++)
		add_feature(set, features, core_features->pdata[i]);
	for (guint i = 0; i < loaded_modules->len; i++) {
		MagpieModule *mod = loaded_modules->pdata[i];

		for (const char *const *f = mod->info->disco_features; f && *f; f++)
			add_feature(set, features, *f);
		for (guint j = 0; j < mod->features->len; j++)
			add_feature(set, features, mod->features->pdata[j]);
	}
	g_ptr_array_sort(features, compare_strings);
	return features;
}

GPtrArray *
magpie_disco_identities(void)
{
	GPtrArray *identities = g_ptr_array_new();

	modules_ensure();
	/* The server's own identity always comes first. */
	g_ptr_array_add(identities, (gpointer) "server");
	g_ptr_array_add(identities, (gpointer) "im");
	g_ptr_array_add(identities, (gpointer) "Magpie");
	for (guint i = 0; i < loaded_modules->len; i++) {
		MagpieModule *mod = loaded_modules->pdata[i];

		for (guint j = 0; j < mod->identities->len; j++)
			g_ptr_array_add(identities, mod->identities->pdata[j]);
	}
	return identities;
}

/* Control commands */

const MagpieControlSpec *
magpie_modules_find_command(const char *module, const char *command, MagpieModule **mod_out)
{
	MagpieModule *mod;

	g_return_val_if_fail(module != NULL && command != NULL, NULL);

	mod = magpie_modules_find(module);
	if (mod == NULL)
		return NULL;
	for (const MagpieControlSpec *c = mod->info->commands; c && c->name; c++) {
		if (strcmp(c->name, command) == 0) {
			if (mod_out)
				*mod_out = mod;
			return c;
		}
	}
	return NULL;
}

/* Configuration getters */

static const MagpieConfigKey *
module_config_key(MagpieModule *mod, const char *key)
{
	for (const MagpieConfigKey *k = mod->schema; k->key; k++) {
		if (strcmp(k->key, key) == 0)
			return k;
	}
	return NULL;
}

/* Defaults when no configuration is active (unit tests, early start):
 * the same syntax as the files; durations in milliseconds. */
static gint64
config_parse_default_int(const MagpieConfigKey *k)
{
	const char *value = k->default_value ? k->default_value : "0";
	char *end = NULL;
	gint64 n = g_ascii_strtoll(value, &end, 10);

	while (end && (*end == ' ' || *end == '\t'))
		end++;
	if (k->type == MAGPIE_CONFIG_DURATION) {
		if (end == NULL || *end == '\0' || g_ascii_strcasecmp(end, "s") == 0)
			return n * 1000;
		if (g_ascii_strcasecmp(end, "ms") == 0)
			return n;
		if (strcmp(end, "m") == 0)
			return n * 60 * 1000;
		if (g_ascii_strcasecmp(end, "h") == 0)
			return n * 3600 * 1000;
		if (g_ascii_strcasecmp(end, "d") == 0)
			return n * 86400 * 1000;
		return n * 1000;
	}
	if (k->type == MAGPIE_CONFIG_SIZE && end != NULL) {
		switch (g_ascii_tolower(*end)) {
		case 'k':
			return n * 1024;
		case 'm':
			return n * 1024 * 1024;
		case 'g':
			return n * 1024 * 1024 * 1024;
		default:
			break;
		}
	}
	return n;
}

gboolean
magpie_module_config_bool(MagpieModule *mod, const char *key)
{
	MagpieConfigFile *cfg = magpie_config_get_active();
	const MagpieConfigKey *k;

	g_return_val_if_fail(mod != NULL && key != NULL, FALSE);
	k = module_config_key(mod, key);
	g_return_val_if_fail(k != NULL && k->type == MAGPIE_CONFIG_BOOL, FALSE);

	if (cfg != NULL)
		return magpie_config_file_bool(cfg, mod->name, key, mod->schema);
	return g_strcmp0(k->default_value, "true") == 0;
}

gint64
magpie_module_config_int(MagpieModule *mod, const char *key)
{
	MagpieConfigFile *cfg = magpie_config_get_active();
	const MagpieConfigKey *k;

	g_return_val_if_fail(mod != NULL && key != NULL, 0);
	k = module_config_key(mod, key);
	g_return_val_if_fail(k != NULL, 0);
	g_return_val_if_fail(k->type == MAGPIE_CONFIG_INT || k->type == MAGPIE_CONFIG_DURATION ||
	                             k->type == MAGPIE_CONFIG_SIZE,
	                     0);

	if (cfg != NULL)
		return magpie_config_file_int(cfg, mod->name, key, mod->schema);
	return config_parse_default_int(k);
}

const char *
magpie_module_config_string(MagpieModule *mod, const char *key)
{
	MagpieConfigFile *cfg = magpie_config_get_active();
	const MagpieConfigKey *k;

	g_return_val_if_fail(mod != NULL && key != NULL, NULL);
	k = module_config_key(mod, key);
	g_return_val_if_fail(k != NULL && k->type == MAGPIE_CONFIG_STRING, NULL);

	if (cfg != NULL)
		return magpie_config_file_string(cfg, mod->name, key, mod->schema);
	return k->default_value;
}

const char *const *
magpie_module_config_strv(MagpieModule *mod, const char *key)
{
	MagpieConfigFile *cfg = magpie_config_get_active();
	const MagpieConfigKey *k;
	GStrv strv;

	g_return_val_if_fail(mod != NULL && key != NULL, NULL);
	k = module_config_key(mod, key);
	g_return_val_if_fail(k != NULL && k->type == MAGPIE_CONFIG_STRING_LIST, NULL);

	if (cfg != NULL)
		return magpie_config_file_strv(cfg, mod->name, key, mod->schema);
	strv = g_hash_table_lookup(mod->default_strv, k->key);
	if (strv == NULL) {
		g_autoptr(GStrvBuilder) builder = g_strv_builder_new();
		g_auto(GStrv) parts = g_strsplit(k->default_value ? k->default_value : "", ";", -1);

		for (char **p = parts; *p; p++) {
			g_strstrip(*p);
			if (**p)
				g_strv_builder_add(builder, *p);
		}
		strv = g_strv_builder_end(builder);
		g_hash_table_insert(mod->default_strv, (gpointer) k->key, strv);
	}
	return (const char *const *) strv;
}
