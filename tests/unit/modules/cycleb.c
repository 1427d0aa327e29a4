/* Test module: cycleb requires cyclea, which requires cycleb. */
#include <gmodule.h>
#include <magpie/magpie.h>

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_cycleb = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "cycleb",
	.requires = (const char *const[]){ "cyclea", NULL },
};
