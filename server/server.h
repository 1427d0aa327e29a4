/* Daemon-wide operations used by the control socket and signal handlers. */
#pragma once

#include <glib.h>
#include "config-file.h"
#include "tls.h"

G_BEGIN_DECLS

/* Re-read configuration and certificates, re-apply module configuration
 * (reload modules whose group changed, load newly enabled ones, unload
 * disabled ones); connections are kept. FALSE + error leaves the old
 * configuration in force. */
gboolean magpie_server_reload(GError **error);
/* Ask the main loop to stop (SIGTERM). */
void magpie_server_quit(void);

/* Core configuration values from the active configuration, with the core
 * schema's defaults (DURATION in milliseconds, SIZE in bytes). */
gint64 magpie_core_int(const char *group, const char *key);
const char *magpie_core_string(const char *group, const char *key);
gboolean magpie_core_bool(const char *group, const char *key);
const char *const *magpie_core_strv(const char *group, const char *key);
/* The first configured host (default for streams without 'to'). */
const char *magpie_default_host(void);

/* Start-up pieces used by main.c. */
void magpie_server_set_loop(GMainLoop *loop);
/* One TLS context with each host's certificate (or [tls]'s). */
MagpieTls *magpie_server_build_tls(MagpieConfigFile *cfg, GError **error);
/* Check every enabled module group against its module's schema. */
gboolean magpie_server_check_modules(MagpieConfigFile *cfg, GPtrArray *problems,
                                     GPtrArray *warnings);
/* LISTEN for account changes made in SQL and close affected sessions. */
void magpie_server_watch_accounts(void);

G_END_DECLS
