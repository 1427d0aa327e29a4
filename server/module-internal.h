/* Private glue between module-host.c, hook.c and iq.c: registrations owned
 * by a module are recorded here so that unloading can remove them all
 * before g_module_close() (research/crux.md §5). Not for the rest of the
 * daemon: use module-host.h. */
#pragma once

#include <magpie/magpie.h>

G_BEGIN_DECLS

/* hook.c */
/* Add a handler owned by @mod (NULL = core). Ties keep registration order. */
void magpie_hook_add_internal(MagpieModule *mod, const char *event, MagpieHookFunc func,
                              int priority);
/* Remove every handler of @mod. Events pending on one of them are resumed
 * with CONTINUE (in a later main-loop iteration); events that have not yet
 * reached them skip them. */
void magpie_hook_remove_module(MagpieModule *mod);

/* The session operations the hook runner uses. Unit tests replace them so
 * hook chains can be tested without a c2s stream; NULL restores the real
 * functions. */
typedef struct {
	MagpieSession *(*ref)(MagpieSession *session);
	void (*unref)(MagpieSession *session);
	void (*hold)(MagpieSession *session);
	void (*release)(MagpieSession *session);
} MagpieHookSessionOps;
void magpie_hook_set_session_ops(const MagpieHookSessionOps *ops);

/* iq.c */
/* Register @spec for @mod; FALSE with MAGPIE_MODULE_ERROR_CONFLICT when
 * (xmlns, element) already has an owner. The spec is copied. */
gboolean magpie_iq_register(MagpieModule *mod, const MagpieIqSpec *spec, GError **error);
/* Would @spec conflict? (checked for a whole table before registering) */
gboolean magpie_iq_is_owned(const char *xmlns, const char *element);
void magpie_iq_unregister_module(MagpieModule *mod);
/* Drop the module's pending magpie_iq_send() requests: their destroy
 * notifies run, their callbacks do not. */
void magpie_iq_cancel_module(MagpieModule *mod);

/* module-host.c */
/* Is @event a known event name: from <magpie/events.h>, or declared in the
 * .events of a loaded module (or of @loading, the module being loaded)? */
gboolean magpie_modules_event_is_known(const char *event, MagpieModule *loading);

G_END_DECLS
