/* The session registry and the module-facing session API.
 *
 * Every c2s stream is in `streams` from accept to close. Bound sessions are
 * also indexed by full JID and, per account, by bare JID in binding order.
 * Lookups go through these functions only, so a later cluster can put a
 * shared table behind them (DESIGN.md §10).
 */
#include <string.h>

#include "c2s.h"
#include "session-private.h"
#include "stats.h"

static GHashTable *streams; /* MagpieSession * set */
static GHashTable *by_full; /* full JID string -> MagpieSession * */
static GHashTable *by_bare; /* bare JID string -> GPtrArray of MagpieSession * */

static void
registry_init(void)
{
	if (streams)
		return;
	streams = g_hash_table_new(NULL, NULL);
	by_full = g_hash_table_new(g_str_hash, g_str_equal);
	by_bare = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                (GDestroyNotify) g_ptr_array_unref);
}

void
magpie_session_register(MagpieSession *session)
{
	registry_init();
	g_hash_table_add(streams, session);
	magpie_stats.connections_open = g_hash_table_size(streams);
}

static void
unbind(MagpieSession *session)
{
	if (!session->jid)
		return;
	if (g_hash_table_lookup(by_full, magpie_jid_string(session->jid)) == session)
		g_hash_table_remove(by_full, magpie_jid_string(session->jid));
	GPtrArray *list = g_hash_table_lookup(by_bare, magpie_jid_string(session->bare));
	if (list) {
		g_ptr_array_remove(list, session);
		if (list->len == 0)
			g_hash_table_remove(by_bare, magpie_jid_string(session->bare));
	}
	magpie_stats.sessions_bound = g_hash_table_size(by_full);
}

void
magpie_session_unregister(MagpieSession *session)
{
	if (!streams)
		return;
	unbind(session);
	g_hash_table_remove(streams, session);
	magpie_stats.connections_open = g_hash_table_size(streams);
}

MagpieSession *
magpie_session_bind(MagpieSession *session, MagpieJid *full)
{
	MagpieSession *old = g_hash_table_lookup(by_full, magpie_jid_string(full));

	if (old) {
		magpie_session_ref(old);
		unbind(old);
	}
	session->jid = magpie_jid_ref(full);
	session->bare = magpie_jid_bare(full);
	g_hash_table_insert(by_full, (gpointer) magpie_jid_string(session->jid), session);
	GPtrArray *list = g_hash_table_lookup(by_bare, magpie_jid_string(session->bare));
	if (!list) {
		list = g_ptr_array_new();
		g_hash_table_insert(by_bare, g_strdup(magpie_jid_string(session->bare)), list);
	}
	g_ptr_array_add(list, session);
	magpie_stats.sessions_bound = g_hash_table_size(by_full);
	return old;
}

const GPtrArray *
magpie_sessions_peek(MagpieJid *bare)
{
	if (!by_bare)
		return NULL;
	return g_hash_table_lookup(by_bare, magpie_jid_bare_string(bare));
}

GPtrArray *
magpie_sessions_for(MagpieJid *bare)
{
	g_return_val_if_fail(bare != NULL, g_ptr_array_new());

	const GPtrArray *list = magpie_sessions_peek(bare);
	if (!list)
		return g_ptr_array_new();
	GPtrArray *out = g_ptr_array_sized_new(list->len);
	g_ptr_array_set_size(out, list->len);
	memcpy(out->pdata, list->pdata, list->len * sizeof(gpointer));
	return out;
}

MagpieSession *
magpie_session_lookup(MagpieJid *full)
{
	g_return_val_if_fail(full != NULL, NULL);
	if (!by_full)
		return NULL;
	return g_hash_table_lookup(by_full, magpie_jid_string(full));
}

GPtrArray *
magpie_sessions_all_bound(void)
{
	GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_session_unref);
	GHashTableIter iter;
	gpointer value;

	if (!by_full)
		return out;
	g_hash_table_iter_init(&iter, by_full);
	while (g_hash_table_iter_next(&iter, NULL, &value))
		g_ptr_array_add(out, magpie_session_ref(value));
	return out;
}

GPtrArray *
magpie_sessions_all_streams(void)
{
	GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_session_unref);
	GHashTableIter iter;
	gpointer key;

	if (!streams)
		return out;
	g_hash_table_iter_init(&iter, streams);
	while (g_hash_table_iter_next(&iter, &key, NULL))
		g_ptr_array_add(out, magpie_session_ref(key));
	return out;
}

void
magpie_sessions_foreach(MagpieSessionFunc func, gpointer user_data)
{
	g_autoptr(GPtrArray) all = magpie_sessions_all_bound();

	g_return_if_fail(func != NULL);
	for (guint i = 0; i < all->len; i++)
		func(all->pdata[i], user_data);
}

gint64
magpie_session_last_activity(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, 0);
	return session->conn ? magpie_conn_last_read(session->conn) : 0;
}

guint
magpie_sessions_count(void)
{
	return streams ? g_hash_table_size(streams) : 0;
}

/* Public accessors. */

MagpieJid *
magpie_session_jid(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, NULL);
	return session->jid;
}

gboolean
magpie_session_is_authenticated(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, FALSE);
	return session->username != NULL;
}

const char *
magpie_session_peer(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, NULL);
	return session->peer;
}

const char *
magpie_session_host(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, NULL);
	return session->host;
}

gboolean
magpie_session_is_available(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, FALSE);
	return session->available;
}

int
magpie_session_priority(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, 0);
	return session->priority;
}

MagpieStanza *
magpie_session_presence(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, NULL);
	return session->presence;
}

gboolean
magpie_session_is_interested(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, FALSE);
	return session->interested;
}

void
magpie_session_set_interested(MagpieSession *session, gboolean interested)
{
	g_return_if_fail(session != NULL);
	session->interested = interested;
}

gboolean
magpie_session_is_alive(MagpieSession *session)
{
	g_return_val_if_fail(session != NULL, FALSE);
	return session->state != C2S_STATE_CLOSED;
}

/* Data slots: a handful per session at most, so a small array. */

void
magpie_session_set_data(MagpieSession *session, MagpieModule *mod, gpointer data,
                        GDestroyNotify destroy)
{
	g_return_if_fail(session != NULL && mod != NULL);

	if (!session->slots)
		session->slots = g_array_new(FALSE, FALSE, sizeof(SessionSlot));
	for (guint i = 0; i < session->slots->len; i++) {
		SessionSlot *slot = &g_array_index(session->slots, SessionSlot, i);
		if (slot->mod != mod)
			continue;
		SessionSlot old = *slot;
		if (data) {
			slot->data = data;
			slot->destroy = destroy;
		} else {
			g_array_remove_index_fast(session->slots, i);
		}
		if (old.destroy && old.data != data)
			old.destroy(old.data);
		return;
	}
	if (data) {
		SessionSlot slot = { mod, data, destroy };
		g_array_append_val(session->slots, slot);
	}
}

gpointer
magpie_session_get_data(MagpieSession *session, MagpieModule *mod)
{
	g_return_val_if_fail(session != NULL, NULL);
	if (!session->slots)
		return NULL;
	for (guint i = 0; i < session->slots->len; i++) {
		SessionSlot *slot = &g_array_index(session->slots, SessionSlot, i);
		if (slot->mod == mod)
			return slot->data;
	}
	return NULL;
}

void
magpie_session_free_slots(MagpieSession *session)
{
	if (!session->slots)
		return;
	/* A destroy function may look at the session: detach the array first. */
	GArray *slots = g_steal_pointer(&session->slots);
	for (guint i = 0; i < slots->len; i++) {
		SessionSlot *slot = &g_array_index(slots, SessionSlot, i);
		if (slot->destroy)
			slot->destroy(slot->data);
	}
	g_array_unref(slots);
}

void
magpie_sessions_clear_module_data(MagpieModule *mod)
{
	GHashTableIter iter;
	gpointer key;

	if (!streams)
		return;
	g_hash_table_iter_init(&iter, streams);
	while (g_hash_table_iter_next(&iter, &key, NULL))
		magpie_session_set_data(key, mod, NULL, NULL);
}

void
magpie_session_info_free(MagpieSessionInfo *info)
{
	if (!info)
		return;
	g_free(info->jid);
	g_free(info->peer);
	g_free(info->tls);
	g_free(info->mechanism);
	g_free(info);
}

static int
compare_info(gconstpointer a, gconstpointer b)
{
	const MagpieSessionInfo *x = *(MagpieSessionInfo *const *) a;
	const MagpieSessionInfo *y = *(MagpieSessionInfo *const *) b;
	int c = g_strcmp0(x->jid, y->jid);
	return c ? c : g_strcmp0(x->peer, y->peer);
}

GPtrArray *
magpie_sessions_list(void)
{
	GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify) magpie_session_info_free);
	GHashTableIter iter;
	gpointer key;

	if (!streams)
		return out;
	g_hash_table_iter_init(&iter, streams);
	while (g_hash_table_iter_next(&iter, &key, NULL)) {
		MagpieSession *s = key;
		MagpieSessionInfo *info = g_new0(MagpieSessionInfo, 1);
		info->jid = g_strdup(s->jid ? magpie_jid_string(s->jid) : "(unbound)");
		info->peer = g_strdup(s->peer);
		info->tls = g_strdup(s->conn ? magpie_conn_tls_version(s->conn) : NULL);
		info->mechanism = g_strdup(s->mechanism);
		info->connected = s->connected_at;
		info->available = s->available;
		info->priority = s->priority;
		g_ptr_array_add(out, info);
	}
	g_ptr_array_sort(out, compare_info);
	return out;
}

guint
magpie_sessions_kick(const char *jid, const char *condition, const char *text)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(MagpieJid) target = magpie_jid_parse(jid, &error);
	g_autoptr(GPtrArray) victims = NULL;
	guint n = 0;

	if (!target)
		return 0;
	if (magpie_jid_is_bare(target)) {
		victims = magpie_sessions_for(target);
	} else {
		victims = g_ptr_array_new();
		MagpieSession *s = magpie_session_lookup(target);
		if (s)
			g_ptr_array_add(victims, s);
	}
	for (guint i = 0; i < victims->len; i++) {
		magpie_session_close(victims->pdata[i], condition, text);
		n++;
	}
	return n;
}
