/* Test module: built for another ABI. */
#include <gmodule.h>
#include <magpie/magpie.h>

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_badabi = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION + 1000,
	.name = "badabi",
};
