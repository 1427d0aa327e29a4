/* Entity Time (XEP-0202): the server's current time, in UTC.
 *
 * Only the host answers: a user's time is their client's business (an IQ
 * to a full JID reaches the client; one to a bare JID gets the core's
 * service-unavailable). The server reports UTC with a zero offset: its
 * local time zone says nothing useful to a remote user.
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_TIME "urn:xmpp:time"

static void
time_add_text(MagpieElement *parent, const char *name, const char *text)
{
	MagpieElement *child = magpie_element_add_child(parent, name, NULL);

	magpie_element_add_text(child, text, -1);
}

static void
time_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
	g_autoptr(GDateTime) now = g_date_time_new_now_utc();
	g_autofree char *utc = NULL;
	MagpieElement *time;

	/* XEP-0082 DateTime profile, with milliseconds: 2024-05-01T12:00:00.123Z */
	utc = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%fZ");
	if (utc == NULL) {
		magpie_iq_reply_error(req, "wait", "internal-server-error", NULL);
		return;
	}
	/* %f gives microseconds; keep three digits. */
	{
		char *dot = strrchr(utc, '.');

		if (dot != NULL && strlen(dot) == 8)
			memmove(dot + 4, dot + 7, 2);
	}
	time = magpie_element_add_child(magpie_stanza_root(result), "time", NS_TIME);
	time_add_text(time, "tzo", "+00:00");
	time_add_text(time, "utc", utc);
	magpie_iq_send_result(req, result);
}

static const MagpieIqSpec time_iqs[] = {
	{ NS_TIME, "time", MAGPIE_IQ_GET, time_handle, TRUE },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_time = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "time",
	.description = "Entity Time (XEP-0202) of the server",
	.iqs = time_iqs,
	.disco_features = (const char *const[]){ NS_TIME, NULL },
};
