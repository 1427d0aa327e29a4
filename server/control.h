/* The control socket: a UNIX socket (mode 0660) with a line protocol.
 *
 * Request: one line, a JSON array of strings: the words of the command,
 * optionally preceded by "--json". Response: a first line "ok" or
 * "error", then the body (human text, or one JSON value with --json), then
 * the server closes the connection. Passwords travel in the request and
 * are never logged. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean magpie_control_start(const char *path, GError **error);
void magpie_control_stop(void);

G_END_DECLS
