/* Hook chains: priority order, STOP, PENDING and resume, session holds,
 * handlers removed while an event is under way. Core handlers only; the
 * session is a stand-in through magpie_hook_set_session_ops(). */
#include "module-host.h"
#include "module-internal.h"

#define EV "test.event"

static GString *trace;
static MagpieStanzaEvent *parked;
static int done_calls;
static MagpieHookResult done_result;

/* A fake session: only counted, never dereferenced. */
static int fake_session_storage;
#define FAKE_SESSION ((MagpieSession *) &fake_session_storage)
static int session_refs, session_holds, hold_calls;

static MagpieSession *
fake_ref(MagpieSession *session)
{
	g_assert_true(session == FAKE_SESSION);
	session_refs++;
	return session;
}

static void
fake_unref(MagpieSession *session)
{
	g_assert_true(session == FAKE_SESSION);
	session_refs--;
}

static void
fake_hold(MagpieSession *session)
{
	g_assert_true(session == FAKE_SESSION);
	session_holds++;
	hold_calls++;
}

static void
fake_release(MagpieSession *session)
{
	g_assert_true(session == FAKE_SESSION);
	g_assert_cmpint(session_holds, >, 0);
	session_holds--;
}

static const MagpieHookSessionOps fake_ops = { fake_ref, fake_unref, fake_hold, fake_release };

static void
record(const char *what)
{
	if (trace->len > 0)
		g_string_append_c(trace, ' ');
	g_string_append(trace, what);
}

#define HANDLER(fname, label, result)                                                              \
	static MagpieHookResult fname(MagpieModule *mod, MagpieStanzaEvent *ev)                    \
	{                                                                                          \
		g_assert_null(mod);                                                                \
		record(label);                                                                     \
		return result;                                                                     \
	}

HANDLER(h_first, "first", MAGPIE_HOOK_CONTINUE)
HANDLER(h_early, "early", MAGPIE_HOOK_CONTINUE)
HANDLER(h_default_a, "default-a", MAGPIE_HOOK_CONTINUE)
HANDLER(h_default_b, "default-b", MAGPIE_HOOK_CONTINUE)
HANDLER(h_late, "late", MAGPIE_HOOK_CONTINUE)
HANDLER(h_stop, "stop", MAGPIE_HOOK_STOP)
HANDLER(h_bogus, "bogus", (MagpieHookResult) 42)

static MagpieHookResult
h_pending(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	record("pending");
	g_assert_null(parked);
	parked = magpie_event_ref(ev);
	return MAGPIE_HOOK_PENDING;
}

static MagpieHookResult
h_pending_now(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	/* Resumes before returning PENDING: must still continue later. */
	record("pending-now");
	magpie_hook_resume(ev, MAGPIE_HOOK_CONTINUE);
	return MAGPIE_HOOK_PENDING;
}

static void
on_done(MagpieStanzaEvent *ev, MagpieHookResult result, gpointer user_data)
{
	g_assert_cmpstr(magpie_event_name(ev), ==, EV);
	done_calls++;
	done_result = result;
	record(result == MAGPIE_HOOK_STOP ? "done:stop" : "done:continue");
}

static void
run_event(MagpieSession *session)
{
	g_autoptr(MagpieStanzaEvent) ev = magpie_event_new(EV, NULL, session, NULL, NULL);

	magpie_hook_run(ev, on_done, NULL);
}

static void
iterate(void)
{
	while (g_main_context_iteration(NULL, FALSE))
		;
}

static void
setup(void)
{
	if (trace == NULL)
		trace = g_string_new(NULL);
	g_string_truncate(trace, 0);
	done_calls = 0;
	session_refs = session_holds = hold_calls = 0;
	magpie_hook_set_session_ops(&fake_ops);
}

static void
teardown(void)
{
	static const MagpieHookFunc all[] = { h_first, h_early, h_default_a, h_default_b,  h_late,
		                              h_stop,  h_bogus, h_pending,   h_pending_now };

	iterate();
	/* Each test registers each handler at most once. */
	for (guint i = 0; i < G_N_ELEMENTS(all); i++)
		magpie_hook_remove_core(EV, all[i]);
	g_assert_false(magpie_hook_has_handlers(EV));
	g_assert_null(parked);
	g_assert_cmpint(session_refs, ==, 0);
	g_assert_cmpint(session_holds, ==, 0);
}

static void
test_priority_order(void)
{
	setup();
	magpie_hook_add_core(EV, h_late, MAGPIE_PRIORITY_LATE);
	magpie_hook_add_core(EV, h_default_a, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_first, MAGPIE_PRIORITY_FIRST);
	magpie_hook_add_core(EV, h_default_b, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_early, MAGPIE_PRIORITY_EARLY);
	g_assert_true(magpie_hook_has_handlers(EV));
	g_assert_false(magpie_hook_has_handlers("test.other"));

	run_event(NULL);
	/* Synchronous when nobody is pending. */
	g_assert_cmpstr(trace->str, ==, "first early default-a default-b late done:continue");
	g_assert_cmpint(done_calls, ==, 1);
	g_assert_cmpint(done_result, ==, MAGPIE_HOOK_CONTINUE);
	teardown();
}

static void
test_stop(void)
{
	setup();
	magpie_hook_add_core(EV, h_late, MAGPIE_PRIORITY_LATE);
	magpie_hook_add_core(EV, h_stop, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_first, MAGPIE_PRIORITY_FIRST);

	run_event(FAKE_SESSION);
	g_assert_cmpstr(trace->str, ==, "first stop done:stop");
	g_assert_cmpint(done_result, ==, MAGPIE_HOOK_STOP);
	g_assert_cmpint(hold_calls, ==, 0);
	teardown();
}

static void
test_pending(gconstpointer data)
{
	MagpieHookResult resume_with = GPOINTER_TO_INT(data);

	setup();
	magpie_hook_add_core(EV, h_first, MAGPIE_PRIORITY_FIRST);
	magpie_hook_add_core(EV, h_pending, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_late, MAGPIE_PRIORITY_LATE);

	run_event(FAKE_SESSION);
	g_assert_cmpstr(trace->str, ==, "first pending");
	g_assert_cmpint(done_calls, ==, 0);
	g_assert_cmpint(session_holds, ==, 1);
	g_assert_nonnull(parked);
	iterate();
	g_assert_cmpint(done_calls, ==, 0);

	magpie_hook_resume(parked, resume_with);
	/* Never inside the resume call itself. */
	g_assert_cmpstr(trace->str, ==, "first pending");
	g_assert_cmpint(session_holds, ==, 1);
	g_clear_pointer(&parked, magpie_event_unref);
	iterate();
	if (resume_with == MAGPIE_HOOK_STOP)
		g_assert_cmpstr(trace->str, ==, "first pending done:stop");
	else
		g_assert_cmpstr(trace->str, ==, "first pending late done:continue");
	g_assert_cmpint(done_calls, ==, 1);
	g_assert_cmpint(done_result, ==, resume_with);
	g_assert_cmpint(hold_calls, ==, 1);
	teardown();
}

static void
test_pending_twice_holds_once(void)
{
	setup();
	magpie_hook_add_core(EV, h_pending, MAGPIE_PRIORITY_EARLY);
	magpie_hook_add_core(EV, h_pending_now, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_late, MAGPIE_PRIORITY_LATE);

	run_event(FAKE_SESSION);
	g_assert_cmpint(session_holds, ==, 1);
	magpie_hook_resume(parked, MAGPIE_HOOK_CONTINUE);
	g_clear_pointer(&parked, magpie_event_unref);
	iterate();
	g_assert_cmpstr(trace->str, ==, "pending pending-now late done:continue");
	g_assert_cmpint(hold_calls, ==, 1);
	g_assert_cmpint(session_holds, ==, 0);
	teardown();
}

static void
test_resume_not_pending(void)
{
	setup();
	magpie_hook_add_core(EV, h_pending, MAGPIE_PRIORITY_DEFAULT);
	run_event(NULL);
	magpie_hook_resume(parked, MAGPIE_HOOK_STOP);
	/* A second resume before the chain went on is ignored. */
	magpie_hook_resume(parked, MAGPIE_HOOK_CONTINUE);
	g_clear_pointer(&parked, magpie_event_unref);
	iterate();
	g_assert_cmpstr(trace->str, ==, "pending done:stop");
	teardown();
}

static void
test_remove_pending_handler(void)
{
	setup();
	magpie_hook_add_core(EV, h_pending, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_late, MAGPIE_PRIORITY_LATE);

	run_event(FAKE_SESSION);
	g_assert_cmpint(session_holds, ==, 1);
	/* Its module goes away: the event must not wait forever. */
	magpie_hook_remove_core(EV, h_pending);
	g_assert_cmpstr(trace->str, ==, "pending");
	iterate();
	g_assert_cmpstr(trace->str, ==, "pending late done:continue");
	g_assert_cmpint(session_holds, ==, 0);
	/* The late resume of the unloaded handler's owner is harmless. */
	magpie_hook_resume(parked, MAGPIE_HOOK_STOP);
	g_clear_pointer(&parked, magpie_event_unref);
	iterate();
	g_assert_cmpint(done_calls, ==, 1);
	teardown();
}

static void
test_remove_later_handler(void)
{
	setup();
	magpie_hook_add_core(EV, h_pending, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_late, MAGPIE_PRIORITY_LATE);

	run_event(NULL);
	magpie_hook_remove_core(EV, h_late);
	g_assert_false(magpie_hook_has_handlers("test.nothing"));
	magpie_hook_resume(parked, MAGPIE_HOOK_CONTINUE);
	g_clear_pointer(&parked, magpie_event_unref);
	iterate();
	g_assert_cmpstr(trace->str, ==, "pending done:continue");
	teardown();
}

static void
test_invalid_result(void)
{
	setup();
	magpie_hook_add_core(EV, h_bogus, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_add_core(EV, h_late, MAGPIE_PRIORITY_LATE);

	g_test_expect_message("magpie", G_LOG_LEVEL_MESSAGE, "BUG: a handler of event*");
	run_event(NULL);
	g_test_assert_expected_messages();
	g_assert_cmpstr(trace->str, ==, "bogus late done:continue");
	teardown();
}

static void
test_fire_and_stanza(void)
{
	g_autoptr(MagpieStanza) stanza = magpie_stanza_new("message", MAGPIE_NS_CLIENT);
	g_autoptr(MagpieJid) from = magpie_jid_parse("romeo@example.net/orchard", NULL);
	g_autoptr(MagpieStanzaEvent) ev = NULL;

	setup();
	/* No handler: nothing happens, no event is even built. */
	magpie_hook_fire(EV, stanza, NULL, from, NULL);
	magpie_hook_add_core(EV, h_first, MAGPIE_PRIORITY_DEFAULT);
	magpie_hook_fire(EV, stanza, FAKE_SESSION, from, NULL);
	g_assert_cmpstr(trace->str, ==, "first");
	g_assert_cmpint(session_refs, ==, 0);

	ev = magpie_event_new(EV, stanza, FAKE_SESSION, from, NULL);
	g_assert_true(magpie_event_stanza(ev) == stanza);
	g_assert_true(magpie_event_session(ev) == FAKE_SESSION);
	g_assert_true(magpie_event_from(ev) == from);
	g_assert_null(magpie_event_to(ev));
	g_clear_pointer(&ev, magpie_event_unref);
	teardown();
}

static void
test_no_handlers(void)
{
	setup();
	run_event(FAKE_SESSION);
	g_assert_cmpstr(trace->str, ==, "done:continue");
	teardown();
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);

	g_test_add_func("/hook/order/priority-and-ties", test_priority_order);
	g_test_add_func("/hook/stop", test_stop);
	g_test_add_data_func("/hook/pending/resume-continue", GINT_TO_POINTER(MAGPIE_HOOK_CONTINUE),
	                     test_pending);
	g_test_add_data_func("/hook/pending/resume-stop", GINT_TO_POINTER(MAGPIE_HOOK_STOP),
	                     test_pending);
	g_test_add_func("/hook/pending/hold-once", test_pending_twice_holds_once);
	g_test_add_func("/hook/pending/resume-twice", test_resume_not_pending);
	g_test_add_func("/hook/remove/pending-handler", test_remove_pending_handler);
	g_test_add_func("/hook/remove/later-handler", test_remove_later_handler);
	g_test_add_func("/hook/invalid-result", test_invalid_result);
	g_test_add_func("/hook/fire", test_fire_and_stanza);
	g_test_add_func("/hook/no-handlers", test_no_handlers);
	return g_test_run();
}
