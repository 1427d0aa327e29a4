/* Test module: a bit of everything the descriptor can hold. */
#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_ALPHA "urn:test:alpha"

typedef struct {
	gint64 level;
} AlphaData;

static MagpieHookResult
alpha_presence_host(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	MagpieStanza *stanza = magpie_event_stanza(ev);

	if (stanza != NULL)
		magpie_stanza_set_attr(stanza, "alpha", "seen");
	return MAGPIE_HOOK_CONTINUE;
}

static void
alpha_handle_iq(MagpieModule *mod, MagpieIqRequest *req)
{
	AlphaData *ad = magpie_module_get_data(mod);
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
	MagpieElement *query =
	        magpie_element_add_child(magpie_stanza_root(result), "query", NS_ALPHA);
	g_autofree char *level = g_strdup_printf("%" G_GINT64_FORMAT, ad->level);

	magpie_element_set_attr(query, "level", level);
	magpie_iq_send_result(req, result);
}

/* A buggy handler: drops the request unanswered. */
static void
alpha_handle_silent(MagpieModule *mod, MagpieIqRequest *req)
{
}

static gboolean
alpha_tick(gpointer data)
{
	return G_SOURCE_CONTINUE;
}

static gboolean
alpha_load(MagpieModule *mod, GError **error)
{
	AlphaData *ad;

	if (magpie_module_config_bool(mod, "refuse")) {
		g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_FAILED, "told to refuse");
		/* Registered before refusing: the host must roll these back. */
		magpie_module_add_disco_feature(mod, NS_ALPHA ":refused");
		return FALSE;
	}
	ad = g_new0(AlphaData, 1);
	ad->level = magpie_module_config_int(mod, "level");
	magpie_module_set_data(mod, ad, g_free);
	magpie_module_add_disco_feature(mod, NS_ALPHA ":dynamic");
	magpie_module_add_disco_identity(mod, "test", "alpha", "Alpha");
	magpie_module_add_timeout(mod, 3600 * 1000, alpha_tick, NULL, NULL);
	return TRUE;
}

static gboolean
alpha_command(MagpieModule *mod, const char *const *argv, MagpieControlReply *reply, GError **error)
{
	return TRUE;
}

static const MagpieHookSpec alpha_hooks[] = {
	{ MAGPIE_EVENT_PRESENCE_HOST, alpha_presence_host, MAGPIE_PRIORITY_DEFAULT },
	{ NULL },
};

static const MagpieIqSpec alpha_iqs[] = {
	{ NS_ALPHA, "query", MAGPIE_IQ_GET, alpha_handle_iq, FALSE },
	{ NS_ALPHA, "silent", MAGPIE_IQ_GET | MAGPIE_IQ_SET, alpha_handle_silent, TRUE },
	{ NULL },
};

static const MagpieConfigKey alpha_config[] = {
	{ "level", MAGPIE_CONFIG_INT, "3", 0, 10, "A number" },
	{ "refuse", MAGPIE_CONFIG_BOOL, "false", 0, 0, "Refuse to load" },
	{ "delay", MAGPIE_CONFIG_DURATION, "2m", 0, 0, "A duration" },
	{ "names", MAGPIE_CONFIG_STRING_LIST, "a;b", 0, 0, "A list" },
	{ NULL },
};

static const MagpieControlSpec alpha_commands[] = {
	{ "echo", "[WORDS]", "Say nothing", alpha_command },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_alpha = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "alpha",
	.description = "Test module alpha",
	.hooks = alpha_hooks,
	.iqs = alpha_iqs,
	.config = alpha_config,
	.disco_features = (const char *const[]){ NS_ALPHA, NULL },
	.events = (const char *const[]){ "alpha.custom", NULL },
	.commands = alpha_commands,
	.load = alpha_load,
};
