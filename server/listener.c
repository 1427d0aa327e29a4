/* Listening sockets. Accepted sockets go straight to the c2s stream; the
 * only policy here is the per-address connection limit. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <glib-unix.h>
#include <gio/gio.h>

#include "c2s.h"
#include "listener.h"
#include "server.h"

typedef struct {
	int fd;
	gboolean direct_tls;
	GSource *source;
	char *spec;
} Listener;

static GPtrArray *listeners;
static GHashTable *per_address; /* peer address -> count */

gboolean
magpie_listen_address_parse(const char *spec, char **host_out, guint16 *port_out, GError **error)
{
	const char *colon;
	g_autofree char *host = NULL;

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || close[1] != ':')
			goto bad;
		host = g_strndup(spec + 1, close - spec - 1);
		colon = close + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			goto bad;
		host = g_strndup(spec, colon - spec);
	}
	char *end;
	guint64 port = g_ascii_strtoull(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port == 0 || port > 65535)
		goto bad;
	if (!g_str_equal(host, "*")) {
		g_autoptr(GInetAddress) addr = g_inet_address_new_from_string(host);
		if (!addr)
			goto bad;
	}
	*host_out = g_steal_pointer(&host);
	*port_out = port;
	return TRUE;
bad:
	g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
	            "'%s' is not a listen address (use 1.2.3.4:5222, [::1]:5222 or *:5222)", spec);
	return FALSE;
}

void
magpie_listener_release(const char *peer)
{
	if (!per_address || !peer)
		return;
	guint n = GPOINTER_TO_UINT(g_hash_table_lookup(per_address, peer));
	if (n <= 1)
		g_hash_table_remove(per_address, peer);
	else
		g_hash_table_insert(per_address, g_strdup(peer), GUINT_TO_POINTER(n - 1));
}

static gboolean
on_accept(gint fd, GIOCondition condition, gpointer user_data)
{
	Listener *l = user_data;

	/* A bounded batch per wake-up keeps one busy listener from starving
	 * the streams already connected. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		int client =
		        accept4(fd, (struct sockaddr *) &ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (client < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				g_message("listener %s: accept failed: %s", l->spec,
				          g_strerror(errno));
			break;
		}
		char addr[INET6_ADDRSTRLEN] = "?";
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, addr,
			          sizeof addr);
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, addr,
			          sizeof addr);
		guint n = GPOINTER_TO_UINT(g_hash_table_lookup(per_address, addr));
		if (n >= (guint) magpie_core_int("c2s", "max-connections-per-address")) {
			g_message("listener %s: %s has %u connections already: refused", l->spec,
			          addr, n);
			close(client);
			continue;
		}
		g_hash_table_insert(per_address, g_strdup(addr), GUINT_TO_POINTER(n + 1));
		magpie_c2s_accept(client, addr, l->direct_tls);
	}
	return G_SOURCE_CONTINUE;
}

static gboolean
open_one(const char *host, int family, guint16 port, const char *spec, gboolean direct_tls,
         GError **error)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int one = 1;

	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (host && inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			goto bad_addr;
		len = sizeof *sin6;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (host && inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			goto bad_addr;
		len = sizeof *sin;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "%s: socket: %s", spec,
		            g_strerror(errno));
		return FALSE;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *) &ss, len) < 0 || listen(fd, 1024) < 0) {
		int e = errno;
		close(fd);
		g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "cannot listen on %s: %s",
		            spec, g_strerror(e));
		return FALSE;
	}
	Listener *l = g_new0(Listener, 1);
	l->fd = fd;
	l->direct_tls = direct_tls;
	l->spec = g_strdup(spec);
	l->source = g_unix_fd_source_new(fd, G_IO_IN);
	g_source_set_callback(l->source, G_SOURCE_FUNC(on_accept), l, NULL);
	g_source_attach(l->source, NULL);
	g_ptr_array_add(listeners, l);
	g_info("listening on %s (%s)", spec, direct_tls ? "c2s direct TLS" : "c2s STARTTLS");
	return TRUE;
bad_addr:
	g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad address in %s", spec);
	return FALSE;
}

static void
listener_free(Listener *l)
{
	g_source_destroy(l->source);
	g_source_unref(l->source);
	close(l->fd);
	g_free(l->spec);
	g_free(l);
}

static gboolean
open_list(const char *const *specs, gboolean direct_tls, GError **error)
{
	for (guint i = 0; specs && specs[i]; i++) {
		g_autofree char *host = NULL;
		guint16 port;
		if (!magpie_listen_address_parse(specs[i], &host, &port, error))
			return FALSE;
		if (g_str_equal(host, "*")) {
			if (!open_one(NULL, AF_INET, port, specs[i], direct_tls, error))
				return FALSE;
			/* IPv6 may be missing on the machine: then IPv4 alone. */
			g_autoptr(GError) v6_error = NULL;
			if (!open_one(NULL, AF_INET6, port, specs[i], direct_tls, &v6_error))
				g_message("%s", v6_error->message);
		} else {
			int family = strchr(host, ':') ? AF_INET6 : AF_INET;
			if (!open_one(host, family, port, specs[i], direct_tls, error))
				return FALSE;
		}
	}
	return TRUE;
}

gboolean
magpie_listeners_start(GError **error)
{
	if (!listeners)
		listeners = g_ptr_array_new_with_free_func((GDestroyNotify) listener_free);
	if (!per_address)
		per_address = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	return open_list(magpie_core_strv("c2s", "listen"), FALSE, error) &&
	       open_list(magpie_core_strv("c2s", "listen-tls"), TRUE, error);
}

void
magpie_listeners_stop(void)
{
	g_clear_pointer(&listeners, g_ptr_array_unref);
}
