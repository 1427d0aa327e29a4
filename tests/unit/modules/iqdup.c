/* Test module: wants alpha's IQ (a second owner must be refused) and hooks
 * an event before that, which the rollback must remove. */
#include <gmodule.h>
#include <magpie/magpie.h>

static MagpieHookResult
iqdup_hook(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	return MAGPIE_HOOK_CONTINUE;
}

static void
iqdup_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	magpie_iq_reply(req, NULL);
}

static const MagpieHookSpec iqdup_hooks[] = {
	{ MAGPIE_EVENT_USER_DELETED, iqdup_hook, MAGPIE_PRIORITY_LATE },
	{ NULL },
};

static const MagpieIqSpec iqdup_iqs[] = {
	{ "urn:test:iqdup", "query", MAGPIE_IQ_GET, iqdup_handle, FALSE },
	{ "urn:test:alpha", "query", MAGPIE_IQ_GET, iqdup_handle, FALSE },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_iqdup = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "iqdup",
	.hooks = iqdup_hooks,
	.iqs = iqdup_iqs,
};
