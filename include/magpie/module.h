/* The module descriptor and the calls a module makes on its own handle.
 *
 * A module is <moduledir>/<name>.so exporting one symbol,
 * `const MagpieModuleInfo magpie_module_<name>`. The loader checks the ABI
 * version, loads .requires first, validates the config group [<name>],
 * registers the tables below, then calls load(). Unloading removes every
 * registration and per-session data of the module, then calls unload().
 */
#pragma once

#include <magpie/config.h>
#include <magpie/hook.h>
#include <magpie/iq.h>

G_BEGIN_DECLS

/* A control-socket command "<module> <name> ARGS...". The handler writes
 * its human-readable answer into @out, or for --json a JSON value; it
 * returns FALSE and sets @error for bad arguments or failures. It may be
 * asynchronous: return TRUE after magpie_control_reply_ref() and answer
 * later. */
typedef struct _MagpieControlReply MagpieControlReply;
typedef gboolean (*MagpieControlFunc)(MagpieModule *mod, const char *const *argv,
                                      MagpieControlReply *reply, GError **error);
typedef struct {
	const char *name;
	const char *usage; /* "ARG1 [ARG2]" */
	const char *doc;
	MagpieControlFunc func;
} MagpieControlSpec;

MAGPIE_API gboolean magpie_control_reply_is_json(MagpieControlReply *reply);
/* Append a line (human) or raw JSON text. */
MAGPIE_API void magpie_control_reply_printf(MagpieControlReply *reply, const char *fmt, ...)
        G_GNUC_PRINTF(2, 3);
MAGPIE_API MagpieControlReply *magpie_control_reply_ref(MagpieControlReply *reply);
/* Finish an asynchronous reply (consumes the ref from _ref()); @error NULL =
 * success. */
MAGPIE_API void magpie_control_reply_finish(MagpieControlReply *reply, const GError *error);

typedef struct {
	guint abi_version; /* MAGPIE_MODULE_ABI_VERSION */
	const char *name;
	const char *description;
	const char *const *requires;       /* module names, NULL-terminated */
	const MagpieHookSpec *hooks;       /* { NULL } terminated */
	const MagpieIqSpec *iqs;           /* { NULL } terminated */
	const MagpieConfigKey *config;     /* { NULL } terminated */
	const char *const *disco_features; /* NULL-terminated, on every host */
	const char *const *events;         /* events this module fires */
	const MagpieControlSpec *commands; /* { NULL } terminated */
	gboolean (*load)(MagpieModule *mod, GError **error);
	void (*unload)(MagpieModule *mod);
	gpointer reserved[8];
} MagpieModuleInfo;

MAGPIE_API const char *magpie_module_name(MagpieModule *mod);
MAGPIE_API void magpie_module_set_data(MagpieModule *mod, gpointer data, GDestroyNotify destroy);
MAGPIE_API gpointer magpie_module_get_data(MagpieModule *mod);

/* Dynamic registrations, owned by the module and removed at unload. */
MAGPIE_API gboolean magpie_module_add_hook(MagpieModule *mod, const char *event,
                                           MagpieHookFunc func, int priority, GError **error);
MAGPIE_API gboolean magpie_module_add_iq(MagpieModule *mod, const MagpieIqSpec *spec,
                                         GError **error);
MAGPIE_API void magpie_module_add_disco_feature(MagpieModule *mod, const char *feature);
/* A timeout owned by the module: removed at unload. Returns the source
 * (transfer none); destroy it with g_source_destroy() to cancel early. */
MAGPIE_API GSource *magpie_module_add_timeout(MagpieModule *mod, guint interval_ms,
                                              GSourceFunc func, gpointer data,
                                              GDestroyNotify destroy);

/* Disco#info features across all loaded modules. (transfer container) */
MAGPIE_API GPtrArray *magpie_disco_features(void);
/* Identities: category/type/name triples registered by modules. */
MAGPIE_API void magpie_module_add_disco_identity(MagpieModule *mod, const char *category,
                                                 const char *type, const char *name);
/* (transfer container) of const char * triples: category, type, name, ... */
MAGPIE_API GPtrArray *magpie_disco_identities(void);

/* Server facts for modules (version, uptime). */
MAGPIE_API gint64 magpie_server_start_time(void); /* g_get_real_time() at start */

G_END_DECLS
