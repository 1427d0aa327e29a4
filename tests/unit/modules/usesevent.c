/* Test module: hooks "alpha.custom", an event declared by module alpha. */
#include <gmodule.h>
#include <magpie/magpie.h>

static MagpieHookResult
usesevent_hook(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	return MAGPIE_HOOK_STOP;
}

static const MagpieHookSpec usesevent_hooks[] = {
	{ "alpha.custom", usesevent_hook, MAGPIE_PRIORITY_DEFAULT },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_usesevent = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "usesevent",
	.hooks = usesevent_hooks,
};
