/* JIDs (RFC 7622, prepared with stringprep nodeprep/nameprep/resourceprep
 * as deployed servers do). A MagpieJid is immutable and refcounted. */
#pragma once

#include <magpie/version.h>

G_BEGIN_DECLS

typedef struct _MagpieJid MagpieJid;

#define MAGPIE_JID_ERROR (magpie_jid_error_quark())
MAGPIE_API GQuark magpie_jid_error_quark(void);
typedef enum {
	MAGPIE_JID_ERROR_MALFORMED, /* structure: empty parts, bad '@' or '/' */
	MAGPIE_JID_ERROR_NODEPREP,
	MAGPIE_JID_ERROR_NAMEPREP,
	MAGPIE_JID_ERROR_RESOURCEPREP,
	MAGPIE_JID_ERROR_TOO_LONG, /* a part over 1023 bytes after preparation */
} MagpieJidError;

/* Parse and prepare. (transfer full) or NULL with @error. */
MAGPIE_API MagpieJid *magpie_jid_parse(const char *str, GError **error);
/* Build from parts (@node, @resource may be NULL). */
MAGPIE_API MagpieJid *magpie_jid_new(const char *node, const char *domain, const char *resource,
                                     GError **error);
MAGPIE_API MagpieJid *magpie_jid_ref(MagpieJid *jid);
MAGPIE_API void magpie_jid_unref(MagpieJid *jid);

MAGPIE_API const char *magpie_jid_node(const MagpieJid *jid); /* NULL if none */
MAGPIE_API const char *magpie_jid_domain(const MagpieJid *jid);
MAGPIE_API const char *magpie_jid_resource(const MagpieJid *jid); /* NULL if none */
/* Prepared string forms, cached. (transfer none) */
MAGPIE_API const char *magpie_jid_string(const MagpieJid *jid);
MAGPIE_API const char *magpie_jid_bare_string(const MagpieJid *jid);
/* The bare JID (self, referenced, when already bare). (transfer full) */
MAGPIE_API MagpieJid *magpie_jid_bare(MagpieJid *jid);
MAGPIE_API MagpieJid *magpie_jid_with_resource(MagpieJid *jid, const char *resource,
                                               GError **error);
MAGPIE_API gboolean magpie_jid_is_bare(const MagpieJid *jid);
MAGPIE_API gboolean magpie_jid_equal(const MagpieJid *a, const MagpieJid *b);
MAGPIE_API gboolean magpie_jid_bare_equal(const MagpieJid *a, const MagpieJid *b);
MAGPIE_API guint magpie_jid_hash(const MagpieJid *jid);

/* Prepare a single part; (transfer full) or NULL with @error. */
MAGPIE_API char *magpie_jid_nodeprep(const char *node, GError **error);
MAGPIE_API char *magpie_jid_nameprep(const char *domain, GError **error);
MAGPIE_API char *magpie_jid_resourceprep(const char *resource, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpieJid, magpie_jid_unref)

G_END_DECLS
