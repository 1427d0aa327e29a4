/*
 * LD_PRELOAD shim for jabberd2's c2s (bench/peers/jabberd2): accepted
 * sockets get descriptor numbers from a rotating range instead of the
 * lowest free one, so that a number is not handed out again right after
 * it was closed.
 *
 * Why: c2s names each client session by its socket's descriptor number
 * (the sc:c2s id it exchanges with sm). When a client leaves, c2s closes
 * the socket and tells sm to end the session; sm's "ended" answer comes
 * back a few milliseconds later, addressed to that number. If the kernel
 * has meanwhile given the same number to a new client, c2s takes the
 * answer for the new, not yet bound session, asks sm to end a session
 * with no address (route to=''), the router bounces that with error 400,
 * and c2s kills the new connection (stream error internal-server-error,
 * or a bare close in the middle of STARTTLS). The login scenario closes
 * and opens connections all the time, so that happened to a quarter of
 * its logins. Nothing in jabberd2's configuration changes how sessions are
 * named; this shim changes only which free number accept() returns.
 *
 * Cost: one fcntl(F_DUPFD) and one close() per accepted connection.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define FIRST_FD 1024

static int next_fd = FIRST_FD;

/* Moves FD to the first free number at or after next_fd (wrapping once
 * to FIRST_FD); keeps FD as it is when no number is free up there. */
static int
relocate(int fd)
{
	int saved = errno, moved, pass;

	if (fd < 0 || fd >= FIRST_FD)
		return fd;
	for (pass = 0; pass < 2; pass++) {
		moved = fcntl(fd, F_DUPFD, next_fd);
		if (moved >= 0) {
			close(fd);
			next_fd = moved + 1;
			errno = saved;
			return moved;
		}
		next_fd = FIRST_FD;
	}
	errno = saved;
	return fd;
}

int
accept(int s, struct sockaddr *addr, socklen_t *len)
{
	static int (*real)(int, struct sockaddr *, socklen_t *);

	if (real == NULL)
		real = (int (*)(int, struct sockaddr *, socklen_t *)) dlsym(RTLD_NEXT, "accept");
	return relocate(real(s, addr, len));
}

int
accept4(int s, struct sockaddr *addr, socklen_t *len, int flags)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	int fd;

	if (real == NULL)
		real = (int (*)(int, struct sockaddr *, socklen_t *, int)) dlsym(RTLD_NEXT,
		                                                                 "accept4");
	fd = real(s, addr, len, flags & ~SOCK_CLOEXEC);
	fd = relocate(fd);
	if (fd >= 0 && (flags & SOCK_CLOEXEC))
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}
