/* Daemon-wide operations used by the control socket and signal handlers. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Re-read configuration and certificates, re-apply module configuration
 * (reload modules whose group changed, load newly enabled ones, unload
 * disabled ones); connections are kept. FALSE + error leaves the old
 * configuration in force. */
gboolean magpie_server_reload(GError **error);
/* Ask the main loop to stop (SIGTERM). */
void magpie_server_quit(void);

G_END_DECLS
