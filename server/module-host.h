/* The module host: loading modules (GModule), the hook and IQ registries,
 * disco features, control commands from modules. */
#pragma once

#include <gmodule.h>
#include <magpie/magpie.h>

G_BEGIN_DECLS

#define MAGPIE_MODULE_ERROR (magpie_module_error_quark())
GQuark magpie_module_error_quark(void);
typedef enum {
	MAGPIE_MODULE_ERROR_NOT_FOUND,
	MAGPIE_MODULE_ERROR_INVALID,    /* bad file, owner, mode, symbol or ABI */
	MAGPIE_MODULE_ERROR_DEPENDENCY, /* a required module failed, or dependants exist */
	MAGPIE_MODULE_ERROR_CONFLICT,   /* IQ (ns, element) already owned, unknown event */
	MAGPIE_MODULE_ERROR_CONFIG,
	MAGPIE_MODULE_ERROR_LOAD,  /* load() refused */
	MAGPIE_MODULE_ERROR_STATE, /* already loaded / not loaded */
} MagpieModuleError;

void magpie_modules_init(const char *module_dir);
/* Load @name (and its .requires first). Config group [@name] is validated
 * against the descriptor's schema using the active configuration. */
gboolean magpie_modules_load(const char *name, GError **error);
/* Unload @name; fails if a loaded module requires it (unless @cascade, which
 * unloads those first). */
gboolean magpie_modules_unload(const char *name, gboolean cascade, GError **error);
/* Unload then load the same module (dependants are reloaded too). */
gboolean magpie_modules_reload(const char *name, GError **error);
/* Load every module enabled in the active configuration that is not loaded
 * yet; errors for each failing one are collected (all are tried). */
gboolean magpie_modules_load_enabled(GError **error);
void magpie_modules_unload_all(void);
/* Names of loaded modules in load order. (transfer container) */
GPtrArray *magpie_modules_loaded(void);
MagpieModule *magpie_modules_find(const char *name);
const MagpieModuleInfo *magpie_module_info(MagpieModule *mod);
/* Open @name's .so just to read its descriptor (for --check-config and
 * --print-config). The returned GModule must be closed by the caller. */
const MagpieModuleInfo *magpie_modules_peek(const char *name, GModule **gmodule_out,
                                            GError **error);

/* Events and hooks. */
typedef void (*MagpieHookDoneFunc)(MagpieStanzaEvent *ev, MagpieHookResult result,
                                   gpointer user_data);
/* A new event (transfer full); refs @stanza, @session, @from, @to (any may be NULL). */
MagpieStanzaEvent *magpie_event_new(const char *name, MagpieStanza *stanza, MagpieSession *session,
                                    MagpieJid *from, MagpieJid *to);
/* Run the handlers of @ev's event in order. @done (may be NULL) gets STOP if
 * a handler stopped it, CONTINUE if all passed; it may run before this
 * returns. While a handler is pending, @ev's session (if any) is held
 * (magpie_session_hold()), so its stream is not read. */
void magpie_hook_run(MagpieStanzaEvent *ev, MagpieHookDoneFunc done, gpointer user_data);
/* Does any handler listen to @event? (fast path for the router) */
gboolean magpie_hook_has_handlers(const char *event);
/* A core handler (no module), for the core's own use and unit tests. */
void magpie_hook_add_core(const char *event, MagpieHookFunc func, int priority);
void magpie_hook_remove_core(const char *event, MagpieHookFunc func);

/* IQ dispatch (called by the router for get/set to a host or a user's bare
 * JID). Sends service-unavailable when nobody owns (ns, element),
 * bad-request when the IQ does not have exactly one child; runs "iq.pre"
 * first. */
void magpie_iq_dispatch(MagpieStanza *iq, MagpieSession *session, MagpieJid *from, MagpieJid *to,
                        gboolean to_host);
/* A result/error IQ addressed to the server or to a user's bare JID: TRUE if
 * it answered a magpie_iq_send() request (then it is consumed). */
gboolean magpie_iq_handle_response(MagpieStanza *iq, MagpieJid *to);

/* A disco#info feature implemented by the core itself; listed by
 * magpie_disco_features() whatever modules are loaded. */
void magpie_disco_add_core_feature(const char *feature);

/* For the core's asynchronous APIs that take a GAsyncReadyCallback from
 * modules: if @callback_inout is in a loaded module's code, replace the
 * pair with a trampoline that calls it only while that module (that very
 * load of it) is still loaded. Core callbacks are left as they are. */
void magpie_module_guard_callback(GAsyncReadyCallback *callback_inout, gpointer *user_data_inout);

/* Control commands of loaded modules: "<module> <cmd>". */
const MagpieControlSpec *magpie_modules_find_command(const char *module, const char *command,
                                                     MagpieModule **mod_out);

G_END_DECLS
