/* Test module: cyclea requires cycleb, which requires cyclea. */
#include <gmodule.h>
#include <magpie/magpie.h>

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_cyclea = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "cyclea",
	.requires = (const char *const[]){ "cycleb", NULL },
};
