/* Software Version (XEP-0092): the server's name and version, and its
 * operating system only when the administrator allows it (show-os). */
#include <sys/utsname.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_VERSION "jabber:iq:version"

static void
version_add_text(MagpieElement *parent, const char *name, const char *text)
{
	MagpieElement *child = magpie_element_add_child(parent, name, NULL);

	magpie_element_add_text(child, text, -1);
}

static void
version_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
	MagpieElement *query =
	        magpie_element_add_child(magpie_stanza_root(result), "query", NS_VERSION);

	version_add_text(query, "name", "Magpie");
	version_add_text(query, "version", MAGPIE_VERSION);
	/* Off by default: the OS and kernel release help attackers more than
	 * users (XEP-0092 §5). */
	if (magpie_module_config_bool(mod, "show-os")) {
		struct utsname uts;

		if (uname(&uts) == 0) {
			g_autofree char *os = g_strdup_printf("%s %s", uts.sysname, uts.release);

			version_add_text(query, "os", os);
		}
	}
	magpie_iq_send_result(req, result);
}

static const MagpieIqSpec version_iqs[] = {
	/* The server's version only; a user's bare JID is not the server. */
	{ NS_VERSION, "query", MAGPIE_IQ_GET, version_handle, TRUE },
	{ NULL },
};

static const MagpieConfigKey version_config[] = {
	{ "show-os", MAGPIE_CONFIG_BOOL, "false", 0, 0,
	  "Include the operating system and kernel release in answers" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_version = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "version",
	.description = "Software Version (XEP-0092)",
	.iqs = version_iqs,
	.config = version_config,
	.disco_features = (const char *const[]){ NS_VERSION, NULL },
};
