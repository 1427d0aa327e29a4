/* Test module: calls a function nobody defines. Opening it without
 * G_MODULE_BIND_LAZY must fail cleanly. */
#include <gmodule.h>
#include <magpie/magpie.h>

void magpie_test_no_such_function(void);

static gboolean
undefsym_load(MagpieModule *mod, GError **error)
{
	magpie_test_no_such_function();
	return TRUE;
}

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_undefsym = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "undefsym",
	.load = undefsym_load,
};
