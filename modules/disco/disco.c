/* Service Discovery (XEP-0030): disco#info and disco#items for the server
 * and, on their behalf, for local accounts.
 *
 * The server's identities and features are whatever the core and the
 * loaded modules registered (magpie_disco_identities(),
 * magpie_disco_features()), so this module never needs to know who
 * implements what.
 */
#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

static void
disco_add_identity(MagpieElement *query, const char *category, const char *type, const char *name)
{
	MagpieElement *identity = magpie_element_add_child(query, "identity", NULL);

	magpie_element_set_attr(identity, "category", category);
	magpie_element_set_attr(identity, "type", type);
	if (name != NULL && *name != '\0')
		magpie_element_set_attr(identity, "name", name);
}

static void
disco_add_feature(MagpieElement *query, const char *var)
{
	MagpieElement *feature = magpie_element_add_child(query, "feature", NULL);

	magpie_element_set_attr(feature, "var", var);
}

static void
disco_reply_account(MagpieIqRequest *req)
{
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
	MagpieElement *query =
	        magpie_element_add_child(magpie_stanza_root(result), "query", NS_DISCO_INFO);

	disco_add_identity(query, "account", "registered", NULL);
	disco_add_feature(query, NS_DISCO_INFO);
	disco_add_feature(query, NS_DISCO_ITEMS);
	magpie_iq_send_result(req, result);
}

static void
disco_subscription_checked(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(MagpieIqRequest) req = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);

	/* No subscription, no such account, or no roster module (the view
	 * is missing): one answer for all, so nothing can be probed. */
	if (rows != NULL && magpie_pg_result_rows(rows) > 0)
		disco_reply_account(req);
	else
		magpie_iq_reply_error(req, "cancel", "service-unavailable", NULL);
}

static void
disco_handle_info(MagpieModule *mod, MagpieIqRequest *req)
{
	MagpieElement *payload = magpie_iq_request_payload(req);
	MagpieJid *to = magpie_iq_request_to(req);
	MagpieJid *from = magpie_iq_request_from(req);
	g_autoptr(MagpieStanza) result = NULL;
	MagpieElement *query;

	/* No node of ours exists yet (XEP-0030 §3.1 "item-not-found"). */
	if (magpie_element_get_attr(payload, "node") != NULL) {
		magpie_iq_reply_error(req, "cancel", "item-not-found", NULL);
		return;
	}
	if (to != NULL && magpie_jid_node(to) != NULL) {
		/* XEP-0030 §4.3: the server answers for the account, to the
		 * account itself and to contacts allowed to see its presence;
		 * to anyone else it is indistinguishable from no account
		 * (RFC 6121 §8.5.1). */
		if (from != NULL && magpie_jid_bare_equal(from, to)) {
			disco_reply_account(req);
			return;
		}
		const char *params[] = { magpie_jid_bare_string(to),
			                 from ? magpie_jid_bare_string(from) : "" };
		magpie_pg_query_async("SELECT 1 FROM magpie_roster_view WHERE owner = $1 "
		                      "AND contact = $2 AND subscription IN ('from', 'both')",
		                      2, params, NULL, disco_subscription_checked,
		                      magpie_iq_request_ref(req));
		return;
	}

	result = magpie_iq_result_new(req);
	query = magpie_element_add_child(magpie_stanza_root(result), "query", NS_DISCO_INFO);
	g_autoptr(GPtrArray) identities = magpie_disco_identities();
	g_autoptr(GPtrArray) features = magpie_disco_features();

	for (guint i = 0; i + 2 < identities->len; i += 3)
		disco_add_identity(query, identities->pdata[i], identities->pdata[i + 1],
		                   identities->pdata[i + 2]);
	for (guint i = 0; i < features->len; i++)
		disco_add_feature(query, features->pdata[i]);
	magpie_iq_send_result(req, result);
}

static void
disco_handle_items(MagpieModule *mod, MagpieIqRequest *req)
{
	MagpieElement *payload = magpie_iq_request_payload(req);
	g_autoptr(MagpieStanza) result = NULL;

	if (magpie_element_get_attr(payload, "node") != NULL) {
		magpie_iq_reply_error(req, "cancel", "item-not-found", NULL);
		return;
	}
	/* TODO: list components and gateway subdomains once they exist. */
	result = magpie_iq_result_new(req);
	magpie_element_add_child(magpie_stanza_root(result), "query", NS_DISCO_ITEMS);
	magpie_iq_send_result(req, result);
}

static const MagpieIqSpec disco_iqs[] = {
	{ NS_DISCO_INFO, "query", MAGPIE_IQ_GET, disco_handle_info, FALSE },
	{ NS_DISCO_ITEMS, "query", MAGPIE_IQ_GET, disco_handle_items, FALSE },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_disco = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "disco",
	.description = "Service Discovery (XEP-0030)",
	.iqs = disco_iqs,
	.disco_features = (const char *const[]){ NS_DISCO_INFO, NS_DISCO_ITEMS, NULL },
};
