/* Test module: requires alpha. */
#include <gmodule.h>
#include <magpie/magpie.h>

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_beta = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "beta",
	.requires = (const char *const[]){ "alpha", NULL },
	.disco_features = (const char *const[]){ "urn:test:beta", NULL },
};
