/* vcard-temp (XEP-0054) and vCard-based avatars (XEP-0153).
 *
 * Storage: one serialized <vCard xmlns='vcard-temp'/> per account in the
 * table vcard (sql/vcard/0001_vcard.sql).
 *
 * IQ rules (README.md has the table):
 * - get with no 'to' or to one's own bare JID: the stored vCard, or an empty
 *   <vCard/> when there is none (XEP-0054 §3.1 allows either);
 * - get to another user's bare JID: their vCard; when they have none, or
 *   the account does not exist, cancel/service-unavailable in both cases
 *   (XEP-0054 §3.3: the same error for both, against directory harvesting,
 *   and the answer the core gives for IQs to unknown accounts);
 * - get to the host: an empty <vCard/> (the server has no vCard);
 * - set: only one's own (else auth/forbidden); a vCard over max-size bytes,
 *   serialized, gets modify/not-acceptable with a text.
 *
 * Avatars: the SHA-1 (hex) of the decoded PHOTO/BINVAL is cached per online
 * account (bare JID -> hash), loaded at session.bound (the session waits,
 * PENDING, until it is known, so presence.broadcast never waits), and put
 * into each available presence the account broadcasts:
 * <x xmlns='vcard-temp:x:update'><photo>HASH</photo></x>, or an empty
 * <photo/> when the vCard has no photo (XEP-0153 §3.1). The server's value
 * replaces whatever the client put there: the server knows the stored
 * vCard.
 *
 * When the hash changes (vCard set, or SQL: NOTIFY magpie_vcard 'user@host'
 * from the table's trigger), each available resource's current presence is
 * updated in place and sent again to the account's available resources and
 * to the contacts subscribed to its presence (subscription 'from' or 'both'
 * in magpie_roster_view, owner = the account).
 */
#include <string.h>

#include <gmodule.h>
#include <magpie/magpie.h>

#define NS_VCARD        "vcard-temp"
#define NS_VCARD_UPDATE "vcard-temp:x:update"
#define NOTIFY_CHANNEL  "magpie_vcard"

typedef enum {
	VCARD_LOADING, /* first load in flight: sessions wait */
	VCARD_KNOWN,
	VCARD_UNKNOWN, /* the load failed: presence is left as the client sent it */
} VcardState;

typedef struct {
	gint refs;
	char *bare;
	VcardState state;
	char *hash;         /* "" = no photo; valid when KNOWN */
	GPtrArray *waiting; /* MagpieStanzaEvent (session.bound), a ref each */
	guint generation;   /* bumped by each load or set: older loads are stale */
} VcardUser;

typedef struct {
	MagpieModule *mod;
	GHashTable *users; /* bare JID string -> VcardUser (a ref) */
	guint listen_id;
} VcardData;

static VcardUser *
vcard_user_ref(VcardUser *user)
{
	g_atomic_int_inc(&user->refs);
	return user;
}

static void
vcard_user_unref(VcardUser *user)
{
	if (!g_atomic_int_dec_and_test(&user->refs))
		return;
	g_ptr_array_unref(user->waiting);
	g_free(user->hash);
	g_free(user->bare);
	g_free(user);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcardUser, vcard_user_unref)

static VcardUser *
vcard_user_new(const char *bare)
{
	VcardUser *user = g_new0(VcardUser, 1);

	user->refs = 1;
	user->bare = g_strdup(bare);
	user->state = VCARD_LOADING;
	user->waiting = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_event_unref);
	return user;
}

static void
vcard_user_resume_waiting(VcardUser *user)
{
	g_autoptr(GPtrArray) waiting = g_steal_pointer(&user->waiting);

	user->waiting = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_event_unref);
	for (guint i = 0; i < waiting->len; i++)
		magpie_hook_resume(waiting->pdata[i], MAGPIE_HOOK_CONTINUE);
}

/* XEP-0153 §3.1: the hash of the image data, "" without a photo. Only
 * BINVAL counts (an EXTVAL photo has no data to hash). */
static char *
vcard_photo_hash(const MagpieElement *vcard)
{
	MagpieElement *photo = magpie_element_find_child(vcard, "PHOTO", NS_VCARD);
	g_autofree char *b64 = NULL;
	g_autofree guchar *data = NULL;
	gsize len = 0;

	if (photo == NULL)
		return g_strdup("");
	b64 = magpie_element_get_child_text(photo, "BINVAL", NS_VCARD);
	if (b64 == NULL)
		return g_strdup("");
	/* g_base64_decode() skips characters outside the alphabet (the line
	 * breaks clients put in BINVAL included). */
	data = g_base64_decode(b64, &len);
	if (data == NULL || len == 0)
		return g_strdup("");
	return g_compute_checksum_for_data(G_CHECKSUM_SHA1, data, len);
}

static char *
vcard_photo_hash_of_xml(const char *xml, const char *who)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieStanza) vcard = magpie_stanza_parse(xml, -1, NS_VCARD, &error);

	if (vcard == NULL) {
		g_message("vcard: the stored vCard of %s does not parse: %s", who, error->message);
		return g_strdup("");
	}
	return vcard_photo_hash(magpie_stanza_root(vcard));
}

/* Replace any vcard-temp:x:update child of the presence with ours. */
static void
vcard_decorate(MagpieStanza *presence, const char *hash)
{
	MagpieElement *root = magpie_stanza_root(presence);
	MagpieElement *old, *x, *photo;

	while ((old = magpie_element_find_child(root, "x", NS_VCARD_UPDATE)) != NULL)
		magpie_element_remove_child(root, old);
	x = magpie_element_add_child(root, "x", NS_VCARD_UPDATE);
	photo = magpie_element_add_child(x, "photo", NULL);
	if (*hash != '\0')
		magpie_element_add_text(photo, hash, -1);
}

/* ------------------------------------------------------------------ */
/* Re-broadcast after a change */

typedef struct {
	char *bare;
} VcardBroadcast;

static void
vcard_broadcast_free(VcardBroadcast *b)
{
	g_free(b->bare);
	g_free(b);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcardBroadcast, vcard_broadcast_free)

static void
vcard_broadcast_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(VcardBroadcast) b = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) contacts = magpie_pg_query_finish(res, &error);
	g_autoptr(MagpieJid) bare = magpie_jid_parse(b->bare, NULL);
	g_autoptr(GPtrArray) sessions = NULL;

	if (bare == NULL)
		return;
	if (contacts == NULL) {
		/* No roster module (no magpie_roster_view) or no database: the
		 * account's own resources still learn the new hash. */
		g_debug("vcard: no contacts for the re-broadcast of %s: %s", b->bare,
		        error->message);
	}
	sessions = magpie_sessions_for(bare);
	for (guint i = 0; i < sessions->len; i++) {
		MagpieSession *s = sessions->pdata[i];
		MagpieStanza *presence = magpie_session_presence(s);

		if (!magpie_session_is_available(s) || presence == NULL)
			continue;
		/* RFC 6121 §4.4.2: the account's available resources. */
		for (guint j = 0; j < sessions->len; j++) {
			if (magpie_session_is_available(sessions->pdata[j]))
				magpie_session_send(sessions->pdata[j], presence);
		}
		for (int row = 0; contacts && row < magpie_pg_result_rows(contacts); row++) {
			const char *contact = magpie_pg_result_get(contacts, row, 0);
			g_autoptr(MagpieStanza) copy = NULL;

			if (contact == NULL || g_str_equal(contact, b->bare))
				continue;
			copy = magpie_stanza_copy(presence);
			magpie_stanza_set_attr(copy, "to", contact);
			magpie_route(copy, magpie_session_jid(s));
		}
	}
}

static void
vcard_rebroadcast(VcardUser *user)
{
	g_autoptr(MagpieJid) bare = magpie_jid_parse(user->bare, NULL);
	g_autoptr(GPtrArray) sessions = NULL;
	gboolean any = FALSE;
	VcardBroadcast *b;
	const char *params[1];

	if (bare == NULL)
		return;
	/* The stored presence of each resource gets the new hash now, so
	 * whatever sends it from here on (probes) is current. */
	sessions = magpie_sessions_for(bare);
	for (guint i = 0; i < sessions->len; i++) {
		MagpieStanza *presence = magpie_session_presence(sessions->pdata[i]);

		if (!magpie_session_is_available(sessions->pdata[i]) || presence == NULL)
			continue;
		vcard_decorate(presence, user->hash);
		any = TRUE;
	}
	if (!any)
		return;
	b = g_new0(VcardBroadcast, 1);
	b->bare = g_strdup(user->bare);
	params[0] = user->bare;
	magpie_pg_query_async("SELECT contact FROM magpie_roster_view"
	                      " WHERE owner = $1 AND subscription IN ('from', 'both')",
	                      1, params, NULL, vcard_broadcast_done, b);
}

/* The hash is now @hash (set, or a load finished): sessions waiting for it
 * go on; a change is broadcast. */
static void
vcard_user_set_hash(VcardUser *user, const char *hash)
{
	gboolean changed = user->state != VCARD_KNOWN || g_strcmp0(user->hash, hash) != 0;

	g_free(user->hash);
	user->hash = g_strdup(hash);
	user->state = VCARD_KNOWN;
	vcard_user_resume_waiting(user);
	if (changed)
		vcard_rebroadcast(user);
}

/* ------------------------------------------------------------------ */
/* Loading the hash of an online account */

typedef struct {
	VcardUser *user;
	guint generation;
} VcardLoad;

static void
vcard_load_free(VcardLoad *load)
{
	vcard_user_unref(load->user);
	g_free(load);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcardLoad, vcard_load_free)

static void
vcard_ignore_result(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);

	if (rows == NULL)
		g_debug("vcard: could not store the photo hash: %s", error->message);
}

static void
vcard_load_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(VcardLoad) load = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);
	VcardUser *user = load->user;
	g_autofree char *hash = NULL;
	const char *xml, *stored_hash;

	if (load->generation != user->generation)
		return; /* a later load or a set answers, and resumes the waiting */
	if (rows == NULL) {
		g_info("vcard: could not load the vCard of %s: %s", user->bare, error->message);
		if (user->state == VCARD_LOADING)
			user->state = VCARD_UNKNOWN;
		vcard_user_resume_waiting(user);
		return;
	}
	if (magpie_pg_result_rows(rows) == 0) {
		hash = g_strdup("");
	} else {
		xml = magpie_pg_result_get(rows, 0, 0);
		stored_hash = magpie_pg_result_get(rows, 0, 1);
		hash = vcard_photo_hash_of_xml(xml, user->bare);
		if (g_strcmp0(stored_hash, hash) != 0) {
			/* Written by SQL: keep photo_hash true for operators. The
			 * trigger ignores changes that leave xml alone. */
			g_autoptr(MagpieJid) jid = magpie_jid_parse(user->bare, NULL);

			if (jid != NULL) {
				const char *params[] = { magpie_jid_domain(jid),
					                 magpie_jid_node(jid), hash, xml };

				magpie_pg_query_async("UPDATE vcard SET photo_hash = $3"
				                      " WHERE host = $1 AND username = $2"
				                      " AND xml = $4",
				                      4, params, NULL, vcard_ignore_result, NULL);
			}
		}
	}
	vcard_user_set_hash(user, hash);
}

static void
vcard_load(VcardUser *user)
{
	g_autoptr(MagpieJid) jid = magpie_jid_parse(user->bare, NULL);
	VcardLoad *load;

	if (jid == NULL || magpie_jid_node(jid) == NULL) {
		user->state = VCARD_UNKNOWN;
		vcard_user_resume_waiting(user);
		return;
	}
	const char *params[] = { magpie_jid_domain(jid), magpie_jid_node(jid) };

	load = g_new0(VcardLoad, 1);
	load->user = vcard_user_ref(user);
	load->generation = ++user->generation;
	magpie_pg_query_async("SELECT xml, photo_hash FROM vcard WHERE host = $1 AND username = $2",
	                      2, params, NULL, vcard_load_done, load);
}

static void
vcard_on_notify(const char *channel, const char *payload, gpointer user_data)
{
	VcardData *vd = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieJid) jid = payload ? magpie_jid_parse(payload, &error) : NULL;
	VcardUser *user;

	if (jid == NULL) {
		g_message("vcard: ignoring NOTIFY %s '%s': not a JID", channel,
		          payload ? payload : "");
		return;
	}
	/* Only online accounts have a hash to update. */
	user = g_hash_table_lookup(vd->users, magpie_jid_bare_string(jid));
	if (user != NULL)
		vcard_load(user);
}

/* ------------------------------------------------------------------ */
/* Hooks */

static MagpieHookResult
vcard_on_bound(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	VcardData *vd = magpie_module_get_data(mod);
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *jid = session ? magpie_session_jid(session) : NULL;
	VcardUser *user;

	if (jid == NULL)
		return MAGPIE_HOOK_CONTINUE;
	user = g_hash_table_lookup(vd->users, magpie_jid_bare_string(jid));
	if (user != NULL && user->state == VCARD_KNOWN)
		return MAGPIE_HOOK_CONTINUE;
	if (user == NULL) {
		user = vcard_user_new(magpie_jid_bare_string(jid));
		g_hash_table_insert(vd->users, user->bare, user);
	}
	g_ptr_array_add(user->waiting, magpie_event_ref(ev));
	if (user->state == VCARD_UNKNOWN) {
		user->state = VCARD_LOADING;
		vcard_load(user);
	} else if (user->generation == 0) {
		vcard_load(user);
	}
	return MAGPIE_HOOK_PENDING;
}

static MagpieHookResult
vcard_on_session_end(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	VcardData *vd = magpie_module_get_data(mod);
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *jid = session ? magpie_session_jid(session) : NULL;
	g_autoptr(MagpieJid) bare = NULL;
	g_autoptr(GPtrArray) sessions = NULL;

	if (jid == NULL)
		return MAGPIE_HOOK_CONTINUE;
	bare = magpie_jid_bare(jid);
	sessions = magpie_sessions_for(bare);
	for (guint i = 0; i < sessions->len; i++) {
		if (sessions->pdata[i] != session)
			return MAGPIE_HOOK_CONTINUE;
	}
	/* The account's last session: forget its hash. */
	g_hash_table_remove(vd->users, magpie_jid_bare_string(bare));
	return MAGPIE_HOOK_CONTINUE;
}

static MagpieHookResult
vcard_on_broadcast(MagpieModule *mod, MagpieStanzaEvent *ev)
{
	VcardData *vd = magpie_module_get_data(mod);
	MagpieStanza *presence = magpie_event_stanza(ev);
	MagpieSession *session = magpie_event_session(ev);
	MagpieJid *jid = session ? magpie_session_jid(session) : NULL;
	VcardUser *user;

	if (presence == NULL || jid == NULL || magpie_stanza_get_attr(presence, "type") != NULL)
		return MAGPIE_HOOK_CONTINUE;
	user = g_hash_table_lookup(vd->users, magpie_jid_bare_string(jid));
	if (user != NULL && user->state == VCARD_KNOWN)
		vcard_decorate(presence, user->hash);
	return MAGPIE_HOOK_CONTINUE;
}

/* ------------------------------------------------------------------ */
/* IQ */

typedef struct {
	VcardData *vd;
	MagpieIqRequest *req;
	char *hash; /* set: the new photo hash */
} VcardOp;

static void
vcard_op_free(VcardOp *op)
{
	magpie_iq_request_unref(op->req);
	g_free(op->hash);
	g_free(op);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcardOp, vcard_op_free)

static VcardOp *
vcard_op_new(VcardData *vd, MagpieIqRequest *req)
{
	VcardOp *op = g_new0(VcardOp, 1);

	op->vd = vd;
	op->req = magpie_iq_request_ref(req);
	return op;
}

static void
vcard_reply_empty(MagpieIqRequest *req)
{
	g_autoptr(MagpieStanza) result = magpie_iq_result_new(req);

	magpie_element_add_child(magpie_stanza_root(result), "vCard", NS_VCARD);
	magpie_iq_send_result(req, result);
}

static void
vcard_get_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(VcardOp) op = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);
	g_autoptr(MagpieStanza) vcard = NULL;
	MagpieJid *from = magpie_iq_request_from(op->req);
	MagpieJid *to = magpie_iq_request_to(op->req);
	gboolean own = from != NULL && magpie_jid_bare_equal(from, to);

	if (rows == NULL) {
		g_info("vcard: get failed: %s", error->message);
		magpie_iq_reply_error(op->req, "wait", "internal-server-error", NULL);
		return;
	}
	if (magpie_pg_result_rows(rows) == 0) {
		if (own)
			vcard_reply_empty(op->req);
		else
			magpie_iq_reply_error(op->req, "cancel", "service-unavailable", NULL);
		return;
	}
	vcard = magpie_stanza_parse(magpie_pg_result_get(rows, 0, 0), -1, NS_VCARD, &error);
	if (vcard == NULL) {
		g_message("vcard: the stored vCard of %s does not parse: %s",
		          magpie_jid_bare_string(to), error->message);
		magpie_iq_reply_error(op->req, "wait", "internal-server-error", NULL);
		return;
	}
	magpie_iq_reply(op->req, magpie_stanza_root(vcard));
}

static void
vcard_set_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(VcardOp) op = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpiePgResult) rows = magpie_pg_query_finish(res, &error);
	MagpieJid *from = magpie_iq_request_from(op->req);
	VcardUser *user;

	if (rows == NULL) {
		g_info("vcard: set failed: %s", error->message);
		magpie_iq_reply_error(op->req, "wait", "internal-server-error", NULL);
		return;
	}
	magpie_iq_reply(op->req, NULL);
	user = g_hash_table_lookup(op->vd->users, magpie_jid_bare_string(from));
	if (user != NULL) {
		/* Loads in flight may have read the old row. */
		user->generation++;
		vcard_user_set_hash(user, op->hash);
	}
}

static void
vcard_handle(MagpieModule *mod, MagpieIqRequest *req)
{
	VcardData *vd = magpie_module_get_data(mod);
	MagpieJid *from = magpie_iq_request_from(req);
	MagpieJid *to = magpie_iq_request_to(req);
	MagpieElement *vcard = magpie_iq_request_payload(req);
	const char *params[4];

	if (magpie_iq_request_type(req) == MAGPIE_IQ_GET) {
		if (magpie_jid_node(to) == NULL) {
			vcard_reply_empty(req);
			return;
		}
		params[0] = magpie_jid_domain(to);
		params[1] = magpie_jid_node(to);
		magpie_pg_query_async("SELECT xml FROM vcard WHERE host = $1 AND username = $2", 2,
		                      params, NULL, vcard_get_done, vcard_op_new(vd, req));
		return;
	}

	/* XEP-0054 §3.2: a user publishes only their own vCard. */
	if (from == NULL || magpie_jid_node(to) == NULL || !magpie_jid_bare_equal(from, to)) {
		magpie_iq_reply_error(req, "auth", "forbidden", NULL);
		return;
	}
	g_autoptr(GString) xml = g_string_new(NULL);
	VcardOp *op;

	magpie_element_serialize(vcard, NULL, xml);
	if ((gint64) xml->len > magpie_module_config_int(mod, "max-size")) {
		g_autofree char *text = g_strdup_printf(
		        "The vCard is larger than this server stores (%" G_GINT64_FORMAT " bytes)",
		        magpie_module_config_int(mod, "max-size"));

		magpie_iq_reply_error(req, "modify", "not-acceptable", text);
		return;
	}
	op = vcard_op_new(vd, req);
	op->hash = vcard_photo_hash(vcard);
	params[0] = magpie_jid_domain(from);
	params[1] = magpie_jid_node(from);
	params[2] = xml->str;
	params[3] = op->hash;
	magpie_pg_query_async("INSERT INTO vcard (host, username, xml, photo_hash)"
	                      " VALUES ($1, $2, $3, $4)"
	                      " ON CONFLICT (host, username) DO UPDATE"
	                      " SET xml = EXCLUDED.xml, photo_hash = EXCLUDED.photo_hash,"
	                      " updated_at = now()",
	                      4, params, NULL, vcard_set_done, op);
}

/* ------------------------------------------------------------------ */
/* Module */

static void
vcard_data_free(gpointer data)
{
	VcardData *vd = data;

	if (vd->listen_id != 0)
		magpie_pg_unlisten(vd->listen_id);
	g_hash_table_unref(vd->users);
	g_free(vd);
}

/* Loaded (or reloaded) while accounts are online: learn their hashes, so
 * their next presence is decorated. */
static void
vcard_adopt_session(MagpieSession *session, gpointer user_data)
{
	VcardData *vd = user_data;
	MagpieJid *jid = magpie_session_jid(session);
	VcardUser *user;

	if (jid == NULL || g_hash_table_contains(vd->users, magpie_jid_bare_string(jid)))
		return;
	user = vcard_user_new(magpie_jid_bare_string(jid));
	g_hash_table_insert(vd->users, user->bare, user);
	vcard_load(user);
}

static gboolean
vcard_load_module(MagpieModule *mod, GError **error)
{
	VcardData *vd = g_new0(VcardData, 1);

	vd->mod = mod;
	vd->users = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
	                                  (GDestroyNotify) vcard_user_unref);
	magpie_module_set_data(mod, vd, vcard_data_free);
	vd->listen_id = magpie_pg_listen(NOTIFY_CHANNEL, vcard_on_notify, vd, NULL);
	magpie_sessions_foreach(vcard_adopt_session, vd);
	return TRUE;
}

static void
vcard_unload_module(MagpieModule *mod)
{
	VcardData *vd = magpie_module_get_data(mod);

	/* Stop NOTIFY callbacks now; the data is freed by the core. */
	if (vd != NULL && vd->listen_id != 0) {
		magpie_pg_unlisten(vd->listen_id);
		vd->listen_id = 0;
	}
}

static const MagpieHookSpec vcard_hooks[] = {
	{ MAGPIE_EVENT_SESSION_BOUND, vcard_on_bound, MAGPIE_PRIORITY_EARLY },
	{ MAGPIE_EVENT_SESSION_END, vcard_on_session_end, MAGPIE_PRIORITY_LATE },
	{ MAGPIE_EVENT_PRESENCE_BROADCAST, vcard_on_broadcast, MAGPIE_PRIORITY_EARLY },
	{ NULL },
};

static const MagpieIqSpec vcard_iqs[] = {
	{ NS_VCARD, "vCard", MAGPIE_IQ_GET | MAGPIE_IQ_SET, vcard_handle, FALSE },
	{ NULL },
};

static const MagpieConfigKey vcard_config[] = {
	{ "max-size", MAGPIE_CONFIG_SIZE, "64k", 1024, 16 * 1024 * 1024,
	  "Largest vCard stored, serialized, in bytes (photo included)" },
	{ NULL },
};

G_MODULE_EXPORT const MagpieModuleInfo magpie_module_vcard = {
	.abi_version = MAGPIE_MODULE_ABI_VERSION,
	.name = "vcard",
	.description = "vcard-temp (XEP-0054) and vCard-based avatars (XEP-0153)",
	.hooks = vcard_hooks,
	.iqs = vcard_iqs,
	.config = vcard_config,
	.disco_features = (const char *const[]){ NS_VCARD, NULL },
	.load = vcard_load_module,
	.unload = vcard_unload_module,
};
