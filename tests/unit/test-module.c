/* The module host: loading real .so files built from tests/unit/modules/
 * and modules/ (disco, ping, version), refusing bad ones, unloading,
 * reloading, dependencies, IQ dispatch and replies, magpie_iq_send(). */
#include <errno.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

#include "build-config.h"
#include "config-file.h"
#include "module-host.h"
#include "pg-pool.h"
#include "module-internal.h"

#define NS_ALPHA       "urn:test:alpha"
#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

static char *test_module_dir;
static GPtrArray *sent; /* stanzas routed by the server (captured on stanza.pre) */

static MagpieHookResult
capture_stanza(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	g_ptr_array_add(sent, magpie_stanza_ref(magpie_event_stanza(ev)));
	return MAGPIE_HOOK_STOP;
}

static void
iterate(void)
{
	while (g_main_context_iteration(NULL, FALSE))
		;
}

static void
use_test_modules(void)
{
	magpie_modules_init(test_module_dir);
}

static void
cleanup(void)
{
	magpie_modules_unload_all();
	magpie_config_set_active(NULL);
	iterate();
	g_ptr_array_set_size(sent, 0);
	use_test_modules();
}

/* Write @text as magpie.conf in a new directory and make it the active
 * configuration. */
static void
set_config(const char *text)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("magpie-test-module-XXXXXX", &error);
	g_autofree char *file = NULL;
	MagpieConfigFile *cfg;

	g_assert_no_error(error);
	file = g_build_filename(dir, "magpie.conf", NULL);
	g_file_set_contents(file, text, -1, &error);
	g_assert_no_error(error);
	cfg = magpie_config_file_load(dir, &error);
	g_assert_no_error(error);
	magpie_config_set_active(cfg);
	g_unlink(file);
	g_rmdir(dir);
}

static gboolean
features_contain(const char *feature)
{
	g_autoptr(GPtrArray) features = magpie_disco_features();

	for (guint i = 0; i < features->len; i++) {
		if (g_str_equal(features->pdata[i], feature))
			return TRUE;
	}
	return FALSE;
}

static char *
loaded_names(void)
{
	g_autoptr(GPtrArray) names = magpie_modules_loaded();

	g_ptr_array_add(names, NULL);
	return g_strjoinv(" ", (char **) names->pdata);
}

/* Dispatch an IQ as the router would and return the one reply. */
static MagpieStanza *
ask(const char *xml, gboolean to_host)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieStanza) iq = magpie_stanza_parse(xml, -1, MAGPIE_NS_CLIENT, &error);
	g_autoptr(MagpieJid) from = NULL;
	g_autoptr(MagpieJid) to = NULL;
	const char *to_attr;

	g_assert_no_error(error);
	from = magpie_jid_parse(magpie_stanza_get_attr(iq, "from"), &error);
	g_assert_no_error(error);
	to_attr = magpie_stanza_get_attr(iq, "to");
	if (to_attr != NULL)
		to = magpie_jid_parse(to_attr, NULL);
	magpie_iq_dispatch(iq, NULL, from, to, to_host);
	iterate();
	g_assert_cmpuint(sent->len, ==, 1);
	return g_ptr_array_steal_index(sent, 0);
}

static const char *
error_condition(MagpieStanza *stanza)
{
	MagpieElement *error = magpie_stanza_find_child(stanza, "error", NULL);
	MagpieElement *condition;

	g_assert_cmpstr(magpie_stanza_get_attr(stanza, "type"), ==, "error");
	g_assert_nonnull(error);
	condition = magpie_element_find_child(error, NULL, MAGPIE_NS_STANZAS);
	g_assert_nonnull(condition);
	return magpie_element_name(condition);
}

static void
assert_load_fails(const char *name, int code, const char *pattern)
{
	g_autoptr(GError) error = NULL;

	g_assert_false(magpie_modules_load(name, &error));
	g_assert_error(error, MAGPIE_MODULE_ERROR, code);
	if (!g_pattern_match_simple(pattern, error->message))
		g_error("\"%s\" does not match \"%s\"", error->message, pattern);
	if (code != MAGPIE_MODULE_ERROR_STATE)
		g_assert_null(magpie_modules_find(name));
}

static void
test_load_unload(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieStanza) reply = NULL;
	g_autoptr(GPtrArray) identities = NULL;
	MagpieModule *mod = NULL;
	MagpieElement *query;

	g_assert_true(magpie_modules_load("alpha", &error));
	g_assert_no_error(error);
	mod = magpie_modules_find("alpha");
	g_assert_nonnull(mod);
	g_assert_cmpstr(magpie_module_name(mod), ==, "alpha");
	g_assert_cmpstr(magpie_module_info(mod)->description, ==, "Test module alpha");

	/* Twice is a state error. */
	assert_load_fails("alpha", MAGPIE_MODULE_ERROR_STATE, "*already loaded*");
	g_assert_nonnull(magpie_modules_find("alpha"));

	/* Every kind of registration is in place. */
	g_assert_true(magpie_hook_has_handlers(MAGPIE_EVENT_PRESENCE_HOST));
	g_assert_true(features_contain(NS_ALPHA));
	g_assert_true(features_contain(NS_ALPHA ":dynamic"));
	identities = magpie_disco_identities();
	g_assert_cmpuint(identities->len, ==, 6);
	g_assert_cmpstr(identities->pdata[0], ==, "server");
	g_assert_cmpstr(identities->pdata[1], ==, "im");
	g_assert_cmpstr(identities->pdata[2], ==, "Magpie");
	g_assert_cmpstr(identities->pdata[3], ==, "test");
	g_assert_cmpstr(identities->pdata[5], ==, "Alpha");
	g_clear_pointer(&identities, g_ptr_array_unref);
	g_assert_nonnull(magpie_modules_find_command("alpha", "echo", &mod));
	g_assert_null(magpie_modules_find_command("alpha", "nope", NULL));

	/* The defaults without any configuration. */
	g_assert_cmpint(magpie_module_config_int(mod, "level"), ==, 3);
	g_assert_cmpint(magpie_module_config_int(mod, "delay"), ==, 120 * 1000);
	g_assert_false(magpie_module_config_bool(mod, "refuse"));
	g_assert_false(magpie_module_config_bool(mod, "enabled"));
	g_assert_cmpstrv(magpie_module_config_strv(mod, "names"),
	                 ((const char *const[]){ "a", "b", NULL }));

	reply = ask("<iq type='get' id='q1' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "type"), ==, "result");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "id"), ==, "q1");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "to"), ==, "romeo@example.org/orchard");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "from"), ==, "example.org");
	query = magpie_stanza_find_child(reply, "query", NS_ALPHA);
	g_assert_nonnull(query);
	g_assert_cmpstr(magpie_element_get_attr(query, "level"), ==, "3");
	g_clear_pointer(&reply, magpie_stanza_unref);

	g_assert_true(magpie_modules_unload("alpha", FALSE, &error));
	g_assert_no_error(error);
	g_assert_null(magpie_modules_find("alpha"));
	g_assert_false(magpie_hook_has_handlers(MAGPIE_EVENT_PRESENCE_HOST));
	g_assert_false(features_contain(NS_ALPHA));
	g_assert_false(features_contain(NS_ALPHA ":dynamic"));
	identities = magpie_disco_identities();
	g_assert_cmpuint(identities->len, ==, 3);
	g_assert_null(magpie_modules_find_command("alpha", "echo", NULL));

	/* Nobody owns the namespace any more. */
	reply = ask("<iq type='get' id='q2' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_assert_cmpstr(error_condition(reply), ==, "service-unavailable");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "id"), ==, "q2");

	g_assert_false(magpie_modules_unload("alpha", FALSE, &error));
	g_assert_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_STATE);
	cleanup();
}

static void
test_requires_and_reload(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *names = NULL;
	MagpieModule *old_alpha;

	g_assert_true(magpie_modules_load("beta", &error));
	g_assert_no_error(error);
	names = loaded_names();
	g_assert_cmpstr(names, ==, "alpha beta");
	g_clear_pointer(&names, g_free);

	g_assert_false(magpie_modules_unload("alpha", FALSE, &error));
	g_assert_error(error, MAGPIE_MODULE_ERROR, MAGPIE_MODULE_ERROR_DEPENDENCY);
	g_assert_nonnull(strstr(error->message, "beta"));
	g_clear_error(&error);

	old_alpha = magpie_modules_find("alpha");
	g_assert_true(magpie_modules_reload("alpha", &error));
	g_assert_no_error(error);
	names = loaded_names();
	g_assert_cmpstr(names, ==, "alpha beta");
	g_clear_pointer(&names, g_free);
	(void) old_alpha; /* freed: a new handle (the address may be reused) */
	g_assert_true(features_contain(NS_ALPHA ":dynamic"));
	g_assert_true(features_contain("urn:test:beta"));

	g_assert_true(magpie_modules_unload("alpha", TRUE, &error));
	g_assert_no_error(error);
	names = loaded_names();
	g_assert_cmpstr(names, ==, "");
	g_assert_false(features_contain("urn:test:beta"));
	cleanup();
}

static void
test_refused_files(void)
{
	assert_load_fails("badabi", MAGPIE_MODULE_ERROR_INVALID, "*ABI*");
	/* Without LAZY the missing symbol is found at open, not at first call. */
	assert_load_fails("undefsym", MAGPIE_MODULE_ERROR_INVALID,
	                  "*magpie_test_no_such_function*");
	assert_load_fails("nodesc", MAGPIE_MODULE_ERROR_INVALID, "*magpie_module_nodesc*");
	assert_load_fails("nosuchmodule", MAGPIE_MODULE_ERROR_NOT_FOUND, "*no module named*");
	assert_load_fails("../alpha", MAGPIE_MODULE_ERROR_NOT_FOUND, "*not a valid module name*");
	assert_load_fails("", MAGPIE_MODULE_ERROR_NOT_FOUND, "*not a valid module name*");
	cleanup();
}

static void
test_writable_file(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("magpie-test-modules-XXXXXX", &error);
	g_autofree char *src = g_build_filename(test_module_dir, "alpha.so", NULL);
	g_autofree char *dst = g_build_filename(dir, "alpha.so", NULL);
	g_autoptr(GFile) src_file = g_file_new_for_path(src);
	g_autoptr(GFile) dst_file = g_file_new_for_path(dst);

	g_assert_no_error(error);
	g_file_copy(src_file, dst_file, G_FILE_COPY_NONE, NULL, NULL, NULL, &error);
	g_assert_no_error(error);
	magpie_modules_init(dir);

	g_assert_cmpint(g_chmod(dst, 0666), ==, 0);
	assert_load_fails("alpha", MAGPIE_MODULE_ERROR_INVALID, "*writable*");
	g_assert_cmpint(g_chmod(dst, 0620), ==, 0);
	assert_load_fails("alpha", MAGPIE_MODULE_ERROR_INVALID, "*writable*");

	/* The same file, safe: loads from <dir>/<name>.so. */
	g_assert_cmpint(g_chmod(dst, 0644), ==, 0);
	g_assert_true(magpie_modules_load("alpha", &error));
	g_assert_no_error(error);
	magpie_modules_unload_all();

	/* Not a regular file. */
	g_unlink(dst);
	g_assert_cmpint(g_mkdir(dst, 0755), ==, 0);
	assert_load_fails("alpha", MAGPIE_MODULE_ERROR_INVALID, "*not a regular file*");
	g_rmdir(dst);
	g_rmdir(dir);
	cleanup();
}

static void
test_cycle(void)
{
	g_autofree char *names = NULL;

	assert_load_fails("cyclea", MAGPIE_MODULE_ERROR_DEPENDENCY,
	                  "*cycle*cyclea -> cycleb -> cyclea*");
	names = loaded_names();
	g_assert_cmpstr(names, ==, "");
	cleanup();
}

static void
test_iq_conflict(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieStanza) reply = NULL;

	g_assert_true(magpie_modules_load("alpha", &error));
	assert_load_fails("iqdup", MAGPIE_MODULE_ERROR_CONFLICT, "*{urn:test:alpha}query*alpha*");
	/* Everything iqdup registered before the conflict is gone... */
	g_assert_false(magpie_hook_has_handlers(MAGPIE_EVENT_USER_DELETED));
	g_assert_false(magpie_iq_is_owned("urn:test:iqdup", "query"));
	/* ...and alpha's own IQ is untouched. */
	reply = ask("<iq type='get' id='c1' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "type"), ==, "result");
	cleanup();

	/* Alone, iqdup loads. */
	g_assert_true(magpie_modules_load("iqdup", &error));
	g_assert_no_error(error);
	cleanup();
}

static void
test_events(void)
{
	g_autoptr(GError) error = NULL;

	assert_load_fails("badevent", MAGPIE_MODULE_ERROR_CONFLICT, "*unknown event*mesage.bare*");
	/* An event declared by a module is known while that module is loaded. */
	assert_load_fails("usesevent", MAGPIE_MODULE_ERROR_CONFLICT, "*alpha.custom*");
	g_assert_true(magpie_modules_load("alpha", &error));
	g_assert_true(magpie_modules_load("usesevent", &error));
	g_assert_no_error(error);
	g_assert_true(magpie_hook_has_handlers("alpha.custom"));
	cleanup();
	g_assert_false(magpie_hook_has_handlers("alpha.custom"));
}

static void
test_config(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieStanza) reply = NULL;
	MagpieModule *mod;

	set_config("[alpha]\nlevel = lots\n");
	assert_load_fails("alpha", MAGPIE_MODULE_ERROR_CONFIG, "*alpha*level*");
	set_config("[alpha]\nlevel = 11\n");
	assert_load_fails("alpha", MAGPIE_MODULE_ERROR_CONFIG, "*level*");

	set_config("[alpha]\nlevel = 7\ndelay = 90s\nnames = x;y\n");
	g_assert_true(magpie_modules_load("alpha", &error));
	g_assert_no_error(error);
	mod = magpie_modules_find("alpha");
	g_assert_cmpint(magpie_module_config_int(mod, "level"), ==, 7);
	g_assert_cmpint(magpie_module_config_int(mod, "delay"), ==, 90 * 1000);
	g_assert_cmpstrv(magpie_module_config_strv(mod, "names"),
	                 ((const char *const[]){ "x", "y", NULL }));
	reply = ask("<iq type='get' id='c1' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_assert_cmpstr(magpie_element_get_attr(magpie_stanza_find_child(reply, "query", NS_ALPHA),
	                                        "level"),
	                ==, "7");
	cleanup();

	/* load() refusing: nothing it registered survives. */
	set_config("[alpha]\nrefuse = true\n");
	assert_load_fails("alpha", MAGPIE_MODULE_ERROR_LOAD, "*refused*told to refuse*");
	g_assert_false(features_contain(NS_ALPHA ":refused"));
	g_assert_false(features_contain(NS_ALPHA));
	g_assert_false(magpie_hook_has_handlers(MAGPIE_EVENT_PRESENCE_HOST));
	g_assert_false(magpie_iq_is_owned(NS_ALPHA, "query"));

	/* A refused requirement fails its dependant, which names it. */
	assert_load_fails("beta", MAGPIE_MODULE_ERROR_DEPENDENCY, "*beta requires alpha*");
	cleanup();
}

static void
test_load_enabled(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *names = NULL;

	set_config("[beta]\nenabled = true\n[alpha]\nenabled = false\n[iqdup]\n");
	g_assert_true(magpie_modules_load_enabled(&error));
	g_assert_no_error(error);
	names = loaded_names();
	g_assert_cmpstr(names, ==, "alpha beta");
	cleanup();

	/* All groups are tried; each failure is named. */
	set_config("[nosuch]\nenabled = false\n[badabi]\nenabled = true\n"
	           "[alpha]\nenabled = true\n");
	g_assert_false(magpie_modules_load_enabled(&error));
	g_assert_nonnull(error);
	g_assert_nonnull(strstr(error->message, "[nosuch]"));
	g_assert_nonnull(strstr(error->message, "[badabi]"));
	g_assert_nonnull(magpie_modules_find("alpha"));
	cleanup();
}

static void
test_iq_dispatch(void)
{
	g_autoptr(GError) error = NULL;
	MagpieStanza *reply;

	g_assert_true(magpie_modules_load("alpha", &error));

	/* RFC 6120 §8.2.3: exactly one child. */
	reply = ask("<iq type='get' id='d1' from='romeo@example.org/orchard' to='example.org'/>",
	            TRUE);
	g_assert_cmpstr(error_condition(reply), ==, "bad-request");
	magpie_stanza_unref(reply);
	reply = ask("<iq type='get' id='d2' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='urn:test:alpha'/><query xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_assert_cmpstr(error_condition(reply), ==, "bad-request");
	magpie_stanza_unref(reply);
	reply = ask("<iq type='bogus' id='d3' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_assert_cmpstr(error_condition(reply), ==, "bad-request");
	magpie_stanza_unref(reply);

	/* The owner takes only get. */
	reply = ask("<iq type='set' id='d4' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_assert_cmpstr(error_condition(reply), ==, "service-unavailable");
	magpie_stanza_unref(reply);

	/* No 'to': the account itself answers (from the bare JID). */
	reply = ask("<iq type='get' id='d5' from='romeo@example.org/orchard'>"
	            "<query xmlns='urn:test:alpha'/></iq>",
	            FALSE);
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "type"), ==, "result");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "from"), ==, "romeo@example.org");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "to"), ==, "romeo@example.org/orchard");
	magpie_stanza_unref(reply);

	/* host_only handler, asked at a bare JID. */
	reply = ask("<iq type='get' id='d6' from='romeo@example.org/orchard' "
	            "to='juliet@example.org'><silent xmlns='urn:test:alpha'/></iq>",
	            FALSE);
	g_assert_cmpstr(error_condition(reply), ==, "service-unavailable");
	magpie_stanza_unref(reply);

	/* A handler that drops the request: internal-server-error and a bug. */
	g_test_expect_message("magpie", G_LOG_LEVEL_MESSAGE, "BUG: alpha dropped an IQ request*");
	reply = ask("<iq type='set' id='d7' from='romeo@example.org/orchard' to='example.org'>"
	            "<silent xmlns='urn:test:alpha'/></iq>",
	            TRUE);
	g_test_assert_expected_messages();
	g_assert_cmpstr(error_condition(reply), ==, "internal-server-error");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "id"), ==, "d7");
	magpie_stanza_unref(reply);
	cleanup();
}

static MagpieHookResult
iq_pre_stop(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	return MAGPIE_HOOK_STOP;
}

static void
test_iq_pre(void)
{
	g_autoptr(MagpieStanza) iq = magpie_stanza_parse(
	        "<iq type='get' id='p1' from='romeo@example.org/orchard' to='example.org'>"
	        "<query xmlns='urn:test:nobody'/></iq>",
	        -1, MAGPIE_NS_CLIENT, NULL);
	g_autoptr(MagpieJid) from = magpie_jid_parse("romeo@example.org/orchard", NULL);

	/* An interceptor that answered (STOP): the core sends nothing. */
	magpie_hook_add_core(MAGPIE_EVENT_IQ_PRE, iq_pre_stop, MAGPIE_PRIORITY_DEFAULT);
	magpie_iq_dispatch(iq, NULL, from, NULL, FALSE);
	iterate();
	g_assert_cmpuint(sent->len, ==, 0);
	magpie_hook_remove_core(MAGPIE_EVENT_IQ_PRE, iq_pre_stop);
	cleanup();
}

typedef struct {
	int calls;
	int destroyed;
	MagpieStanza *response;
} SendState;

static void
on_response(MagpieStanza *response, gpointer user_data)
{
	SendState *state = user_data;

	state->calls++;
	if (response != NULL)
		state->response = magpie_stanza_ref(response);
}

static void
on_destroy(gpointer user_data)
{
	((SendState *) user_data)->destroyed++;
}

static void
test_iq_send(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieJid) host = magpie_jid_parse("example.org", NULL);
	g_autoptr(MagpieJid) juliet = magpie_jid_parse("juliet@example.org/balcony", NULL);
	g_autoptr(MagpieStanza) iq = magpie_stanza_new("iq", MAGPIE_NS_CLIENT);
	g_autoptr(MagpieStanza) response = NULL;
	SendState state = { 0 };
	MagpieModule *mod;
	const char *id;
	char *xml;

	g_assert_true(magpie_modules_load("alpha", &error));
	mod = magpie_modules_find("alpha");
	magpie_stanza_set_attr(iq, "type", "get");
	magpie_stanza_set_attr(iq, "to", "juliet@example.org/balcony");
	magpie_element_add_child(magpie_stanza_root(iq), "ping", "urn:xmpp:ping");

	magpie_iq_send(mod, iq, host, 0, on_response, &state, on_destroy);
	iterate();
	g_assert_cmpuint(sent->len, ==, 1);
	id = magpie_stanza_get_attr(sent->pdata[0], "id");
	g_assert_nonnull(id);
	g_assert_true(g_str_has_prefix(id, "magpie-"));
	g_assert_cmpstr(magpie_stanza_get_attr(sent->pdata[0], "from"), ==, "example.org");
	/* The caller's stanza is left alone. */
	g_assert_null(magpie_stanza_get_attr(iq, "id"));

	/* A response from someone else is not ours. */
	xml = g_strdup_printf("<iq type='result' id='%s' from='mallory@example.org/x' "
	                      "to='example.org'/>",
	                      id);
	response = magpie_stanza_parse(xml, -1, MAGPIE_NS_CLIENT, &error);
	g_free(xml);
	g_assert_false(magpie_iq_handle_response(response, host));
	g_clear_pointer(&response, magpie_stanza_unref);
	/* The real one (an error still proves the peer is there). */
	xml = g_strdup_printf("<iq type='error' id='%s' from='juliet@example.org/balcony' "
	                      "to='example.org'><error type='cancel'><service-unavailable "
	                      "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
	                      id);
	response = magpie_stanza_parse(xml, -1, MAGPIE_NS_CLIENT, &error);
	g_free(xml);
	g_assert_true(magpie_iq_handle_response(response, host));
	g_assert_cmpint(state.calls, ==, 1);
	g_assert_cmpint(state.destroyed, ==, 1);
	g_assert_true(state.response == response);
	g_clear_pointer(&state.response, magpie_stanza_unref);
	/* Answered once only. */
	g_assert_false(magpie_iq_handle_response(response, host));
	g_ptr_array_set_size(sent, 0);

	/* Timeout: the callback gets NULL. */
	state = (SendState){ 0 };
	magpie_iq_send(mod, iq, host, 20, on_response, &state, on_destroy);
	while (state.calls == 0)
		g_main_context_iteration(NULL, TRUE);
	g_assert_cmpint(state.calls, ==, 1);
	g_assert_null(state.response);
	g_assert_cmpint(state.destroyed, ==, 1);

	/* Unload: dropped without a callback. */
	state = (SendState){ 0 };
	magpie_iq_send(mod, iq, host, 60000, on_response, &state, on_destroy);
	g_assert_true(magpie_modules_unload("alpha", FALSE, &error));
	g_assert_cmpint(state.calls, ==, 0);
	g_assert_cmpint(state.destroyed, ==, 1);
	cleanup();
	(void) juliet;
}

/* The shipped modules, from the build tree (<dir>/<name>/<name>.so). */
static void
test_shipped_modules(void)
{
	g_autoptr(GError) error = NULL;
	MagpieStanza *reply;
	MagpieElement *query, *child;
	GPtrArray *vars = g_ptr_array_new();
	g_autofree char *name = NULL;
	guint identities = 0;

	magpie_modules_init(MAGPIE_BUILD_MODULE_DIR);
	magpie_modules_load("disco", &error);
	g_assert_no_error(error);
	magpie_modules_load("version", &error);
	g_assert_no_error(error);
	magpie_disco_add_core_feature("urn:test:core-feature");

	reply = ask("<iq type='get' id='s1' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
	            TRUE);
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "type"), ==, "result");
	query = magpie_stanza_find_child(reply, "query", NS_DISCO_INFO);
	g_assert_nonnull(query);
	for (child = magpie_element_first_child(query); child;
	     child = magpie_element_next_sibling(child)) {
		if (g_str_equal(magpie_element_name(child), "identity")) {
			if (identities++ == 0) {
				g_assert_cmpstr(magpie_element_get_attr(child, "category"), ==,
				                "server");
				g_assert_cmpstr(magpie_element_get_attr(child, "type"), ==, "im");
			}
		} else {
			g_assert_cmpstr(magpie_element_name(child), ==, "feature");
			g_ptr_array_add(vars, (gpointer) magpie_element_get_attr(child, "var"));
		}
	}
	g_assert_cmpuint(identities, ==, 1);
	g_ptr_array_add(vars, NULL);
	g_assert_cmpstrv((const char *const *) vars->pdata,
	                 ((const char *const[]){ NS_DISCO_INFO, NS_DISCO_ITEMS, "jabber:iq:version",
	                                         "urn:test:core-feature", NULL }));
	g_ptr_array_unref(vars);
	magpie_stanza_unref(reply);

	reply = ask("<iq type='get' id='s2' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>",
	            TRUE);
	g_assert_cmpstr(error_condition(reply), ==, "item-not-found");
	magpie_stanza_unref(reply);

	/* The account asking about itself (strangers and subscribers need
	 * the database: tests/integration/test-messages.py). */
	reply = ask("<iq type='get' id='s3' from='juliet@example.org/balcony' "
	            "to='juliet@example.org'>"
	            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
	            FALSE);
	query = magpie_stanza_find_child(reply, "query", NS_DISCO_INFO);
	child = magpie_element_find_child(query, "identity", NULL);
	g_assert_cmpstr(magpie_element_get_attr(child, "category"), ==, "account");
	g_assert_cmpstr(magpie_element_get_attr(child, "type"), ==, "registered");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "from"), ==, "juliet@example.org");
	magpie_stanza_unref(reply);

	reply = ask("<iq type='get' id='s4' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
	            TRUE);
	query = magpie_stanza_find_child(reply, "query", NS_DISCO_ITEMS);
	g_assert_nonnull(query);
	g_assert_cmpuint(magpie_element_count_children(query), ==, 0);
	magpie_stanza_unref(reply);

	reply = ask("<iq type='get' id='s5' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='jabber:iq:version'/></iq>",
	            TRUE);
	query = magpie_stanza_find_child(reply, "query", "jabber:iq:version");
	name = magpie_element_get_child_text(query, "name", NULL);
	g_assert_cmpstr(name, ==, "Magpie");
	g_assert_null(magpie_element_find_child(query, "os", NULL));
	magpie_stanza_unref(reply);

	magpie_modules_unload_all();

	/* show-os */
	set_config("[version]\nshow-os = true\n");
	g_assert_true(magpie_modules_load("version", &error));
	reply = ask("<iq type='get' id='s8' from='romeo@example.org/orchard' to='example.org'>"
	            "<query xmlns='jabber:iq:version'/></iq>",
	            TRUE);
	query = magpie_stanza_find_child(reply, "query", "jabber:iq:version");
	g_assert_nonnull(magpie_element_find_child(query, "os", NULL));
	magpie_stanza_unref(reply);
	cleanup();
}

static void
test_shipped_ping(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieStanza) reply = NULL;
	MagpieModule *mod;

	magpie_modules_init(MAGPIE_BUILD_MODULE_DIR);
	magpie_modules_load("ping", &error);
	g_assert_no_error(error);
	g_assert_true(features_contain("urn:xmpp:ping"));
	mod = magpie_modules_find("ping");
	g_assert_cmpint(magpie_module_config_int(mod, "interval"), ==, 5 * 60 * 1000);
	g_assert_cmpint(magpie_module_config_int(mod, "timeout"), ==, 60 * 1000);

	/* XEP-0199 §4.1 (server) and §4.3 (on behalf of an account). */
	reply = ask("<iq type='get' id='s6' from='romeo@example.org/orchard' to='example.org'>"
	            "<ping xmlns='urn:xmpp:ping'/></iq>",
	            TRUE);
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "type"), ==, "result");
	g_assert_cmpuint(magpie_element_count_children(magpie_stanza_root(reply)), ==, 0);
	g_clear_pointer(&reply, magpie_stanza_unref);
	reply = ask("<iq type='get' id='s7' from='romeo@example.org/orchard' "
	            "to='juliet@example.org'><ping xmlns='urn:xmpp:ping'/></iq>",
	            FALSE);
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "type"), ==, "result");
	g_assert_cmpstr(magpie_stanza_get_attr(reply, "from"), ==, "juliet@example.org");
	cleanup();
}

/* The shipped conf.d files are valid and enable the shipped modules. */
static void
test_shipped_conf(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *names = NULL;
	MagpieConfigFile *cfg = magpie_config_file_load(MAGPIE_SOURCE_DIR, &error);

	g_assert_no_error(error);
	magpie_config_set_active(cfg);
	magpie_modules_init(MAGPIE_BUILD_MODULE_DIR);
	magpie_modules_load_enabled(&error);
	g_assert_no_error(error);
	names = loaded_names();
	g_assert_nonnull(strstr(names, "disco"));
	g_assert_nonnull(strstr(names, "ping"));
	g_assert_nonnull(strstr(names, "version"));
	cleanup();
}

static guint pgwait_calls;

static MagpieHookResult
count_pgwait(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	pgwait_calls++;
	return MAGPIE_HOOK_CONTINUE;
}

static void
run_for(guint ms)
{
	gint64 end = g_get_monotonic_time() + ms * 1000;

	while (g_get_monotonic_time() < end) {
		if (!g_main_context_iteration(NULL, FALSE))
			g_usleep(1000);
	}
}

/* A query a module started is answered after the module unloaded: the
 * answer must be dropped (its callback's code is unmapped). No database
 * here, so every query fails after the query timeout: a late answer. */
static void
test_async_after_unload(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *sockdir = g_dir_make_tmp("magpie-test-nopg-XXXXXX", NULL);
	g_autofree char *conninfo = g_strdup_printf("host=%s dbname=none", sockdir);
	MagpiePgSettings settings = {
		.conninfo = conninfo,
		.pool_size = 1,
		.query_timeout_ms = 100,
		.reconnect_max_ms = 1000,
	};

	magpie_pg_start(&settings);
	magpie_hook_add_core("test.pgwait.done", count_pgwait, MAGPIE_PRIORITY_DEFAULT);

	/* Control: loaded, the module's callback runs once the query fails. */
	g_assert_true(magpie_modules_load("pgwait", &error));
	g_assert_no_error(error);
	run_for(400);
	g_assert_cmpuint(pgwait_calls, ==, 1);
	g_assert_true(magpie_modules_unload("pgwait", FALSE, &error));

	/* Unloaded before the answer: dropped, and no crash. */
	g_assert_true(magpie_modules_load("pgwait", &error));
	g_assert_true(magpie_modules_unload("pgwait", FALSE, &error));
	g_assert_no_error(error);
	run_for(400);
	g_assert_cmpuint(pgwait_calls, ==, 1);

	/* A reload is a new module: the old load's answer is dropped, the new
	 * load's delivered. */
	g_assert_true(magpie_modules_load("pgwait", &error));
	g_assert_true(magpie_modules_reload("pgwait", &error));
	g_assert_no_error(error);
	run_for(400);
	g_assert_cmpuint(pgwait_calls, ==, 2);

	magpie_hook_remove_core("test.pgwait.done", count_pgwait);
	magpie_pg_stop();
	g_rmdir(sockdir);
	cleanup();
}

int
main(int argc, char **argv)
{
	int ret;

	g_test_init(&argc, &argv, NULL);

	test_module_dir = g_test_build_filename(G_TEST_BUILT, "modules", NULL);
	sent = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_stanza_unref);
	magpie_hook_add_core(MAGPIE_EVENT_STANZA_PRE, capture_stanza, MAGPIE_PRIORITY_FIRST);
	use_test_modules();

	g_test_add_func("/module/load-unload", test_load_unload);
	g_test_add_func("/module/requires-and-reload", test_requires_and_reload);
	g_test_add_func("/module/refused/files", test_refused_files);
	g_test_add_func("/module/refused/writable", test_writable_file);
	g_test_add_func("/module/refused/cycle", test_cycle);
	g_test_add_func("/module/refused/iq-conflict", test_iq_conflict);
	g_test_add_func("/module/refused/unknown-event", test_events);
	g_test_add_func("/module/config", test_config);
	g_test_add_func("/module/load-enabled", test_load_enabled);
	g_test_add_func("/module/iq/dispatch", test_iq_dispatch);
	g_test_add_func("/module/iq/pre", test_iq_pre);
	g_test_add_func("/module/iq/send", test_iq_send);
	g_test_add_func("/module/shipped/disco-version", test_shipped_modules);
	g_test_add_func("/module/shipped/ping", test_shipped_ping);
	g_test_add_func("/module/shipped/conf", test_shipped_conf);
	g_test_add_func("/module/async-after-unload", test_async_after_unload);
	ret = g_test_run();

	g_ptr_array_unref(sent);
	g_free(test_module_dir);
	return ret;
}
