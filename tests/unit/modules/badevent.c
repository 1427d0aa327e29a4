/* Test module: hooks an event that does not exist (a typo). */
#include <gmodule.h>
#include <magpie/magpie.h>

static MagpieHookResult
badevent_hook(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	return MAGPIE_HOOK_CONTINUE;
}

static const MagpieHookSpec badevent_hooks[] = {
	{ "mesage.bare", badevent_hook, MAGPIE_PRIORITY_DEFAULT },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_badevent = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "badevent",
	.hooks = badevent_hooks,
};
