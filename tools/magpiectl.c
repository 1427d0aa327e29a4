/* magpiectl: the client of magpied's control socket (docs/control.md).
 *
 * Sends one line, a JSON array of the command words, and prints the body
 * of the answer: to stdout after "ok" (exit 0), to stderr after "error"
 * (exit 1). Standalone on purpose: GLib and GIO only, no daemon code. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>

#define MAGPIECTL_DEFAULT_SOCKET "/run/magpie/control.sock"
/* Password hashing and module loads are slow, but not this slow. */
#define MAGPIECTL_TIMEOUT_S 300
/* The server's limit (MAGPIE_CONTROL_MAX_LINE), without the "\n". */
#define MAGPIECTL_MAX_LINE 65536

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,  /* the server said "error", or a local input problem */
	EXIT_USAGE = 2,   /* no command, bad option */
	EXIT_CONNECT = 3, /* cannot reach the server, or no answer */
};

static const char usage_text[] =
        "Usage: magpiectl [-s|--socket PATH] [--json] COMMAND [ARGS...]\n"
        "\n"
        "Commands:\n"
        "  account add JID [PASSWORD]      Create an account\n"
        "  account passwd JID [PASSWORD]   Change an account's password\n"
        "  account disable JID             Disable an account and close its sessions\n"
        "  account enable JID              Enable a disabled account\n"
        "  account delete JID              Delete an account and close its sessions\n"
        "  account list [HOST]             List accounts (of one host)\n"
        "  session list                    List client sessions\n"
        "  session kick JID                Close a session (full JID) or all of an account's\n"
        "  module list                     List loaded modules\n"
        "  module load NAME                Load a module\n"
        "  module unload NAME              Unload a module\n"
        "  module reload NAME              Unload and load a module again\n"
        "  reload                          Re-read the configuration and certificates\n"
        "  stats                           Show server statistics\n"
        "  help                            List commands, including those of loaded modules\n"
        "  MODULE COMMAND [ARGS...]        A command of a loaded module\n"
        "\n"
        "Options:\n"
        "  -s, --socket PATH   Control socket (default: $MAGPIE_CONTROL_SOCKET, else\n"
        "                      " MAGPIECTL_DEFAULT_SOCKET ")\n"
        "      --json          Answer with one JSON value\n"
        "  -h, --help          Show this help\n"
        "\n"
        "Without PASSWORD, account add and account passwd ask for it on the terminal\n"
        "(twice), or read one line from standard input when it is not a terminal.\n"
        "\n"
        "Exit status: 0 ok, 1 the command failed, 2 usage error, 3 cannot reach the server.\n";

static void
json_append_string(GString *out, const char *s)
{
	g_string_append_c(out, '"');
	for (const char *p = s; *p != '\0'; p++) {
		guchar ch = (guchar) *p;

		switch (ch) {
		case '"':
			g_string_append(out, "\\\"");
			break;
		case '\\':
			g_string_append(out, "\\\\");
			break;
		case '\n':
			g_string_append(out, "\\n");
			break;
		case '\r':
			g_string_append(out, "\\r");
			break;
		case '\t':
			g_string_append(out, "\\t");
			break;
		default:
			if (ch < 0x20 || ch == 0x7f)
				g_string_append_printf(out, "\\u%04x", ch);
			else
				g_string_append_c(out, (char) ch);
		}
	}
	g_string_append_c(out, '"');
}

static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

static void
restore_echo(int sig)
{
	if (termios_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One line from stdin without its newline; NULL at EOF before any byte. */
static char *
read_line(FILE *in)
{
	GString *line = g_string_new(NULL);
	int ch;

	while ((ch = fgetc(in)) != EOF && ch != '\n')
		g_string_append_c(line, (char) ch);
	if (ch == EOF && line->len == 0) {
		g_string_free(line, TRUE);
		return NULL;
	}
	if (line->len > 0 && line->str[line->len - 1] == '\r')
		g_string_truncate(line, line->len - 1);
	return g_string_free(line, FALSE);
}

static char *
prompt_hidden(const char *prompt)
{
	struct termios quiet;
	char *line;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
		termios_saved = 1;
		signal(SIGINT, restore_echo);
		signal(SIGTERM, restore_echo);
		quiet = saved_termios;
		quiet.c_lflag &= ~(tcflag_t) ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
	}
	line = read_line(stdin);
	if (termios_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
		termios_saved = 0;
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
	}
	return line;
}

/* The password for account add/passwd when not on the command line. */
static char *
get_password(const char *jid)
{
	char *password;

	if (isatty(STDIN_FILENO)) {
		g_autofree char *prompt = g_strdup_printf("Password for %s: ", jid);
		g_autofree char *again = NULL;

		password = prompt_hidden(prompt);
		if (password == NULL) {
			fprintf(stderr, "magpiectl: no password given\n");
			return NULL;
		}
		again = prompt_hidden("Repeat the password: ");
		if (again == NULL || strcmp(password, again) != 0) {
			if (again != NULL)
				memset(again, 0, strlen(again));
			memset(password, 0, strlen(password));
			g_free(password);
			fprintf(stderr, "magpiectl: the passwords do not match\n");
			return NULL;
		}
		memset(again, 0, strlen(again));
	} else {
		password = read_line(stdin);
		if (password == NULL) {
			fprintf(stderr, "magpiectl: no password on standard input\n");
			return NULL;
		}
	}
	if (*password == '\0') {
		g_free(password);
		fprintf(stderr, "magpiectl: empty password\n");
		return NULL;
	}
	return password;
}

static int G_GNUC_PRINTF(1, 2) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("magpiectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry \"magpiectl --help\".\n", stderr);
	return EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	const char *socket_path = g_getenv("MAGPIE_CONTROL_SOCKET");
	gboolean json = FALSE;
	int first = 1;
	g_autoptr(GPtrArray) words = g_ptr_array_new();
	g_autofree char *password = NULL;
	g_autoptr(GString) request = g_string_new("[");
	g_autoptr(GSocketClient) client = NULL;
	g_autoptr(GSocketAddress) address = NULL;
	g_autoptr(GSocketConnection) connection = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GError) send_error = NULL;
	g_autoptr(GByteArray) answer = g_byte_array_new();
	GOutputStream *output;
	GInputStream *input;
	const char *body;
	gsize body_len;

	if (socket_path == NULL || *socket_path == '\0')
		socket_path = MAGPIECTL_DEFAULT_SOCKET;

	/* Options come before the command; everything after is the server's. */
	for (; first < argc; first++) {
		const char *arg = argv[first];

		if (strcmp(arg, "--") == 0) {
			first++;
			break;
		} else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			fputs(usage_text, stdout);
			return EXIT_USAGE;
		} else if (strcmp(arg, "--json") == 0) {
			json = TRUE;
		} else if (strcmp(arg, "-s") == 0 || strcmp(arg, "--socket") == 0) {
			if (first + 1 >= argc)
				return usage_error("%s needs a path", arg);
			socket_path = argv[++first];
		} else if (g_str_has_prefix(arg, "--socket=")) {
			socket_path = arg + strlen("--socket=");
		} else if (arg[0] == '-' && arg[1] != '\0') {
			return usage_error("unknown option %s", arg);
		} else {
			break;
		}
	}
	if (first >= argc) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}

	if (json)
		g_ptr_array_add(words, (gpointer) "--json");
	for (int i = first; i < argc; i++) {
		if (!g_utf8_validate(argv[i], -1, NULL))
			return usage_error("argument \"%s\" is not valid UTF-8", argv[i]);
		g_ptr_array_add(words, argv[i]);
	}
	/* account add|passwd JID without a password: ask for it. */
	if (argc - first == 3 && strcmp(argv[first], "account") == 0 &&
	    (strcmp(argv[first + 1], "add") == 0 || strcmp(argv[first + 1], "passwd") == 0)) {
		password = get_password(argv[first + 2]);
		if (password == NULL)
			return EXIT_FAILED;
		if (!g_utf8_validate(password, -1, NULL)) {
			fprintf(stderr, "magpiectl: the password is not valid UTF-8\n");
			return EXIT_FAILED;
		}
		g_ptr_array_add(words, password);
	}

	for (guint i = 0; i < words->len; i++) {
		if (i > 0)
			g_string_append_c(request, ',');
		json_append_string(request, g_ptr_array_index(words, i));
	}
	g_string_append(request, "]\n");
	if (request->len - 1 > MAGPIECTL_MAX_LINE) {
		fprintf(stderr, "magpiectl: request longer than %d bytes\n", MAGPIECTL_MAX_LINE);
		return EXIT_FAILED;
	}
	if (password != NULL)
		memset(password, 0, strlen(password));

	client = g_socket_client_new();
	g_socket_client_set_timeout(client, MAGPIECTL_TIMEOUT_S);
	address = g_unix_socket_address_new(socket_path);
	connection = g_socket_client_connect(client, G_SOCKET_CONNECTABLE(address), NULL, &error);
	if (connection == NULL) {
		fprintf(stderr, "magpiectl: cannot connect to the control socket %s: %s\n",
		        socket_path, error->message);
		return EXIT_CONNECT;
	}

	output = g_io_stream_get_output_stream(G_IO_STREAM(connection));
	if (!g_output_stream_write_all(output, request->str, request->len, NULL, NULL, &error)) {
		/* The server may have refused the request early (too long) and
		 * closed: its answer is still worth reading. */
		send_error = g_steal_pointer(&error);
	}
	memset(request->str, 0, request->len);

	input = g_io_stream_get_input_stream(G_IO_STREAM(connection));
	for (;;) {
		guint8 buf[8192];
		gssize n = g_input_stream_read(input, buf, sizeof(buf), NULL, &error);

		if (n < 0) {
			if (send_error != NULL)
				break;
			fprintf(stderr, "magpiectl: reading the answer from %s failed: %s\n",
			        socket_path, error->message);
			return EXIT_CONNECT;
		}
		if (n == 0)
			break;
		g_byte_array_append(answer, buf, (guint) n);
	}

	g_byte_array_append(answer, (const guint8 *) "", 1); /* NUL-terminate */
	body = memchr(answer->data, '\n', answer->len - 1);
	if (body == NULL && send_error != NULL) {
		fprintf(stderr, "magpiectl: cannot send the request to %s: %s\n", socket_path,
		        send_error->message);
		return EXIT_CONNECT;
	}
	if (body == NULL) {
		fprintf(stderr, "magpiectl: no answer from the server on %s\n", socket_path);
		return EXIT_CONNECT;
	}
	body++;
	body_len = answer->len - 1 - (gsize) (body - (const char *) answer->data);
	if (g_str_has_prefix((const char *) answer->data, "ok\n")) {
		fwrite(body, 1, body_len, stdout);
		return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
	}
	if (g_str_has_prefix((const char *) answer->data, "error\n")) {
		if (!json)
			fputs("magpiectl: ", stderr);
		fwrite(body, 1, body_len, stderr);
		return EXIT_FAILED;
	}
	fprintf(stderr, "magpiectl: unexpected answer from the server on %s\n", socket_path);
	return EXIT_CONNECT;
}
