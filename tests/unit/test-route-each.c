/* magpie_route_each(): every address must see exactly what magpie_route()
 * of its own copy would show it, although one working copy is reused while
 * no handler keeps or changes it. Observed from core stanza.pre handlers
 * (no configuration is loaded, so every address is remote and the stanza
 * goes no further). */
#include <string.h>

#include "module-host.h"
#include "module-internal.h"
#include "stanza-private.h"

typedef struct {
	char *to;    /* the event's 'to' */
	char *bytes; /* the serialization the handler saw */
} Seen;

static GPtrArray *seen;         /* Seen * */
static MagpieStanzaEvent *kept; /* a parked event */
static guint keep_at, change_at;

static char *
bytes_of(MagpieStanza *stanza)
{
	GBytes *b = magpie_stanza_to_bytes(stanza);

	return g_strndup(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
}

static MagpieHookResult
h_observe(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);
	Seen *s = g_new0(Seen, 1);
	guint n = seen->len;

	g_assert_cmpstr(magpie_stanza_get_attr(stanza, "to"), ==,
	                magpie_jid_string(magpie_event_to(ev)));
	s->to = g_strdup(magpie_jid_string(magpie_event_to(ev)));
	s->bytes = bytes_of(stanza);
	g_ptr_array_add(seen, s);
	if (n == change_at)
		magpie_element_add_child(magpie_stanza_root(stanza), "changed", "urn:test");
	if (n == keep_at) {
		kept = magpie_event_ref(ev);
		return MAGPIE_HOOK_PENDING;
	}
	return MAGPIE_HOOK_CONTINUE;
}

static void
seen_free(gpointer data)
{
	Seen *s = data;

	g_free(s->to);
	g_free(s->bytes);
	g_free(s);
}

static char *
expected(MagpieStanza *original, const char *from, const char *to)
{
	g_autoptr(MagpieStanza) copy = magpie_stanza_copy(original);

	magpie_stanza_set_attr(copy, "from", from);
	magpie_stanza_set_attr(copy, "to", to);
	return bytes_of(copy);
}

static void
run(guint keep, guint change)
{
	static const char *const addrs[] = { "a@x", "b@y", "c@z", "d@x/a&b<c'", "e@x", "f@x" };
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieJid) from = magpie_jid_parse("me@x/r", &error);
	g_autoptr(GPtrArray) to = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_jid_unref);
	g_autoptr(MagpieStanza) presence = magpie_stanza_parse(
	        "<presence to='old@x'><show>dnd</show><status>a &amp; b</status></presence>", -1,
	        MAGPIE_NS_CLIENT, &error);

	g_assert_no_error(error);
	for (guint i = 0; i < G_N_ELEMENTS(addrs); i++) {
		MagpieJid *j = magpie_jid_parse(addrs[i], &error);
		g_assert_no_error(error);
		g_ptr_array_add(to, j);
	}
	g_autofree char *before = bytes_of(presence);
	seen = g_ptr_array_new_with_free_func(seen_free);
	keep_at = keep;
	change_at = change;
	magpie_hook_add_core(MAGPIE_EVENT_STANZA_PRE, h_observe, MAGPIE_PRIORITY_DEFAULT);

	magpie_route_each(presence, from, (MagpieJid *const *) to->pdata, to->len);

	/* The original is untouched. */
	g_autofree char *after = bytes_of(presence);
	g_assert_cmpstr(before, ==, after);
	g_assert_cmpuint(seen->len, ==, G_N_ELEMENTS(addrs));
	for (guint i = 0; i < seen->len; i++) {
		Seen *s = seen->pdata[i];
		g_autofree char *want = expected(presence, "me@x/r", addrs[i]);

		g_assert_cmpstr(s->to, ==, addrs[i]);
		g_assert_cmpstr(s->bytes, ==, want);
	}
	/* The parked event still has its own address and, if it was the one
	 * changed, its change, and nobody else's. */
	if (kept) {
		MagpieStanza *k = magpie_event_stanza(kept);
		g_assert_cmpstr(magpie_stanza_get_attr(k, "to"), ==, addrs[keep]);
		g_assert_true((magpie_stanza_find_child(k, "changed", "urn:test") != NULL) ==
		              (keep == change));
		magpie_hook_resume(kept, MAGPIE_HOOK_CONTINUE);
		g_clear_pointer(&kept, magpie_event_unref);
		while (g_main_context_iteration(NULL, FALSE))
			;
	}
	magpie_hook_remove_core(MAGPIE_EVENT_STANZA_PRE, h_observe);
	g_clear_pointer(&seen, g_ptr_array_unref);
}

static void
test_plain(void)
{
	run(G_MAXUINT, G_MAXUINT);
}

static void
test_kept(void)
{
	run(0, G_MAXUINT);
	run(2, G_MAXUINT);
	run(5, G_MAXUINT);
}

static void
test_changed(void)
{
	run(G_MAXUINT, 0);
	run(G_MAXUINT, 3);
	run(1, 1);
}

static void
test_none(void)
{
	g_autoptr(MagpieJid) from = magpie_jid_parse("me@x", NULL);
	g_autoptr(MagpieStanza) presence = magpie_stanza_new("presence", MAGPIE_NS_CLIENT);

	magpie_route_each(presence, from, NULL, 0);
	g_assert_null(magpie_stanza_get_attr(presence, "from"));
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);

	g_test_add_func("/route-each/plain", test_plain);
	g_test_add_func("/route-each/kept", test_kept);
	g_test_add_func("/route-each/changed", test_changed);
	g_test_add_func("/route-each/none", test_none);
	return g_test_run();
}
