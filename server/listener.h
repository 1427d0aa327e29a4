/* TCP listeners for c2s (STARTTLS and direct TLS). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Parse "1.2.3.4:5222", "[::1]:5222" or "*:5222" (both families). */
gboolean magpie_listen_address_parse(const char *spec, char **host_out, guint16 *port_out,
                                     GError **error);
/* Open every address of [c2s] listen and listen-tls. */
gboolean magpie_listeners_start(GError **error);
void magpie_listeners_stop(void);
/* A connection from @peer closed: per-address accounting. */
void magpie_listener_release(const char *peer);

G_END_DECLS
