/* Private XML Storage (XEP-0049): a user stores and fetches one XML
 * element per namespace on their own account (bookmarks, client settings).
 *
 * Rules (documented in README.md):
 * - only the account itself (no 'to', or 'to' = its own bare JID); anything
 *   else gets auth/forbidden, the host included;
 * - the <query/> holds exactly one child, else modify/bad-request;
 * - a child in jabber:client, jabber:server or jabber:iq:private (which
 *   includes an unqualified child) gets modify/not-acceptable (XEP-0049 §3);
 * - get of a namespace with nothing stored returns the requested element
 *   as sent (empty), per XEP-0049 §2.2;
 * - set of an element over max-size bytes (serialized) gets
 *   modify/not-acceptable; a new namespace beyond max-entries gets
 *   cancel/policy-violation.
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_PRIVATE "jabber:iq:private"

typedef struct {
	MagpieIqRequest *req;
	MagpieElement *child; /* in req's stanza, which req keeps alive */
} PrivateOp;

static void
private_op_free(PrivateOp *op)
{
	magpie_iq_request_unref(op->req);
	g_free(op);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PrivateOp, private_op_free)

static PrivateOp *
private_op_new(MagpieIqRequest *req, MagpieElement *child)
{
	PrivateOp *op = g_new0(PrivateOp, 1);

	op->req = magpie_iq_request_ref(req);
	op->child = child;
	return op;
}

static gboolean
private_reserved_ns(const char *ns)
{
	return strcmp(ns, MAGPIE_NS_CLIENT) == 0 || strcmp(ns, MAGPIE_NS_SERVER) == 0 ||
	       strcmp(ns, NS_PRIVATE) == 0;
}

static void
private_reply_with(MagpieIqRequest *req, const MagpieElement *content)
{
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);
	MagpieElement *query =
	        magpie_element_add_child(magpie_stanza_root(result), "query", NS_PRIVATE);

	magpie_element_append_copy(query, content);
	magpie_iq_send_result(req, result);
}

static void
private_get_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(PrivateOp) op = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);
	g_autoptr(MagpieStanza) stored = NULL;

	if (rows == NULL) {
		g_info("private: get failed: %s", error->message);
		magpie_iq_reply_error(op->req, "wait", "internal-server-error", NULL);
		return;
	}
	if (magpie_pg_result_rows(rows) == 0) {
		/* Nothing stored: the element as it was asked for. */
		private_reply_with(op->req, op->child);
		return;
	}
	stored = magpie_stanza_parse(magpie_pg_result_get(rows, 0, 0), -1,
	                             magpie_element_ns(op->child), &error);
	if (stored == NULL) {
		/* Only an operator's SQL can put unparsable XML there. */
		g_message("private: stored XML for %s in %s does not parse: %s",
		          magpie_jid_bare_string(magpie_iq_request_from(op->req)),
		          magpie_element_ns(op->child), error->message);
		magpie_iq_reply_error(op->req, "wait", "internal-server-error", NULL);
		return;
	}
	private_reply_with(op->req, magpie_stanza_root(stored));
}

static void
private_set_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(PrivateOp) op = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);

	if (rows == NULL) {
		g_info("private: set failed: %s", error->message);
		magpie_iq_reply_error(op->req, "wait", "internal-server-error", NULL);
		return;
	}
	if (magpie_pg_result_affected(rows) == 0) {
		magpie_iq_reply_error(op->req, "cancel", "policy-violation",
		                      "Too many private XML namespaces stored");
		return;
	}
	magpie_iq_reply(op->req, NULL);
}

static void
private_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	MagpieJid *from = magpie_iq_request_from(req);
	MagpieJid *to = magpie_iq_request_to(req);
	MagpieElement *query = magpie_iq_request_payload(req);
	MagpieElement *child;
	const char *ns;
	const char *params[5];

	/* XEP-0049 §3: only one's own storage. */
	if (from == NULL || magpie_jid_node(to) == NULL || !magpie_jid_bare_equal(from, to)) {
		magpie_iq_reply_error(req, "auth", "forbidden", NULL);
		return;
	}
	if (magpie_element_count_children(query) != 1) {
		magpie_iq_reply_error(req, "modify", "bad-request",
		                      "Exactly one child element is expected");
		return;
	}
	child = magpie_element_first_child(query);
	ns = magpie_element_ns(child);
	if (ns == NULL || private_reserved_ns(ns)) {
		magpie_iq_reply_error(req, "modify", "not-acceptable",
		                      "This namespace cannot be stored");
		return;
	}
	params[0] = magpie_jid_domain(from);
	params[1] = magpie_jid_node(from);
	params[2] = ns;

	if (magpie_iq_request_type(req) == MAGPIE_IQ_GET) {
		magpie_pg_query_async("SELECT xml FROM private_storage"
		                      " WHERE host = $1 AND username = $2 AND namespace = $3",
		                      3, params, NULL, private_get_done,
		                      private_op_new(req, child));
		return;
	}

	g_autoptr(GString) xml = g_string_new(NULL);
	g_autofree char *max_entries = NULL;

	magpie_element_serialize(child, NULL, xml);
	if ((gint64) xml->len > magpie_module_config_int(mod, "max-size")) {
		magpie_iq_reply_error(req, "modify", "not-acceptable",
		                      "The element is larger than this server stores");
		return;
	}
	max_entries =
	        g_strdup_printf("%" G_GINT64_FORMAT, magpie_module_config_int(mod, "max-entries"));
	params[3] = xml->str;
	params[4] = max_entries;
	/* A new namespace only while under max-entries; replacing an existing
	 * one always works. */
	magpie_pg_query_async(
	        "INSERT INTO private_storage (host, username, namespace, xml)"
	        " SELECT $1, $2, $3, $4"
	        " WHERE (SELECT count(*) FROM private_storage"
	        "        WHERE host = $1 AND username = $2 AND namespace <> $3) < $5::bigint"
	        " ON CONFLICT (host, username, namespace)"
	        " DO UPDATE SET xml = EXCLUDED.xml, updated_at = now()",
	        5, params, NULL, private_set_done, private_op_new(req, child));
}

static const MagpieIqSpec private_iqs[] = {
	{ NS_PRIVATE, "query", MAGPIE_IQ_GET | MAGPIE_IQ_SET, private_handle, FALSE },
	{ NULL },
};

static const MagpieConfigKey private_config[] = {
	{ "max-size", MAGPIE_CONFIG_SIZE, "64k", 256, 16 * 1024 * 1024,
	  "Largest element stored, serialized, in bytes" },
	{ "max-entries", MAGPIE_CONFIG_INT, "100", 1, 100000, "Namespaces stored per account" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_private = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "private",
	.description = "Private XML Storage (XEP-0049)",
	.iqs = private_iqs,
	.config = private_config,
	.disco_features = (const char *const[]){ NS_PRIVATE, NULL },
};
