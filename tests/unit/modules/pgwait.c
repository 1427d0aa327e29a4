/* Test module: starts a PostgreSQL query in load() whose answer comes
 * later, to show that an answer arriving after the module unloaded is
 * dropped instead of jumping into unmapped code. */
#include <gmodule.h>
#include <magpie/magpie.h>

static void
pgwait_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) res = magpie_pg_query_finish(result, &error);

	/* Observable by the test through a core hook. */
	magpie_hook_fire("test.pgwait.done", NULL, NULL, NULL, NULL);
}

static gboolean
pgwait_load(MagpieModule *mod, GError **error)
{
	magpie_pg_query_async("SELECT 1", 0, NULL, NULL, pgwait_done, NULL);
	return TRUE;
}

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_pgwait = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "pgwait",
	.description = "Test module: a query outliving the module",
	.events = (const char *const[]){ "test.pgwait.done", NULL },
	.load = pgwait_load,
};
