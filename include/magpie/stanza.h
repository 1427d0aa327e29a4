/* Stanzas: a compact refcounted element tree.
 *
 * A MagpieStanza owns one tree of MagpieElement nodes, allocated from an
 * arena that lives as long as the stanza. Elements are never freed one by
 * one: they die with their stanza. A stanza is immutable once it has been
 * handed to the router by convention; copy it (magpie_stanza_copy()) to
 * change one that others may hold.
 */
#pragma once

#include <magpie/version.h>

G_BEGIN_DECLS

#define MAGPIE_NS_CLIENT  "jabber:client"
#define MAGPIE_NS_SERVER  "jabber:server"
#define MAGPIE_NS_STREAM  "http://etherx.jabber.org/streams"
#define MAGPIE_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define MAGPIE_NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"
#define MAGPIE_NS_XML     "http://www.w3.org/XML/1998/namespace"

typedef struct _MagpieStanza MagpieStanza;
typedef struct _MagpieElement MagpieElement;

/* Create a stanza whose root element is @name in namespace @xmlns
 * (MAGPIE_NS_CLIENT for message/presence/iq). (transfer full) */
MAGPIE_API MagpieStanza *magpie_stanza_new(const char *name, const char *xmlns);
MAGPIE_API MagpieStanza *magpie_stanza_ref(MagpieStanza *stanza);
MAGPIE_API void magpie_stanza_unref(MagpieStanza *stanza);
/* Deep copy. (transfer full) */
MAGPIE_API MagpieStanza *magpie_stanza_copy(MagpieStanza *stanza);
/* (transfer none) the root element. */
MAGPIE_API MagpieElement *magpie_stanza_root(MagpieStanza *stanza);

/* Shortcuts on the root element. */
MAGPIE_API const char *magpie_stanza_name(MagpieStanza *stanza);
MAGPIE_API const char *magpie_stanza_get_attr(MagpieStanza *stanza, const char *name);
MAGPIE_API void magpie_stanza_set_attr(MagpieStanza *stanza, const char *name, const char *value);
/* First child of the root with @name in @xmlns (either may be NULL = any). */
MAGPIE_API MagpieElement *magpie_stanza_find_child(MagpieStanza *stanza, const char *name,
                                                   const char *xmlns);

/* Elements. Strings are owned by the stanza's arena. */
MAGPIE_API const char *magpie_element_name(const MagpieElement *el);
MAGPIE_API const char *magpie_element_ns(const MagpieElement *el);
/* Attribute lookup by local name, no namespace; "xml:lang" is accepted as a
 * name for the xml:lang attribute. */
MAGPIE_API const char *magpie_element_get_attr(const MagpieElement *el, const char *name);
/* Set (or, with @value NULL, remove) an attribute. */
MAGPIE_API void magpie_element_set_attr(MagpieElement *el, const char *name, const char *value);
/* Iterate attributes: *name_out / *value_out; returns FALSE past the end. */
MAGPIE_API gboolean magpie_element_attr_iter(const MagpieElement *el, guint index,
                                             const char **name_out, const char **value_out);
/* Child element iteration (text nodes are skipped). */
MAGPIE_API MagpieElement *magpie_element_first_child(const MagpieElement *el);
MAGPIE_API MagpieElement *magpie_element_next_sibling(const MagpieElement *el);
MAGPIE_API guint magpie_element_count_children(const MagpieElement *el);
MAGPIE_API MagpieElement *magpie_element_find_child(const MagpieElement *el, const char *name,
                                                    const char *xmlns);
/* Concatenated character data directly inside @el (newly allocated). */
MAGPIE_API char *magpie_element_get_text(const MagpieElement *el);
/* Text of child @name/@xmlns, or NULL. (transfer full) */
MAGPIE_API char *magpie_element_get_child_text(const MagpieElement *el, const char *name,
                                               const char *xmlns);
/* Append a child element; @xmlns NULL inherits the parent's namespace. */
MAGPIE_API MagpieElement *magpie_element_add_child(MagpieElement *el, const char *name,
                                                   const char *xmlns);
MAGPIE_API void magpie_element_add_text(MagpieElement *el, const char *text, gssize len);
/* Deep-copy @src (from any stanza) as the last child of @el. */
MAGPIE_API MagpieElement *magpie_element_append_copy(MagpieElement *el, const MagpieElement *src);
/* Remove @child (and its subtree) from @el. */
MAGPIE_API void magpie_element_remove_child(MagpieElement *el, MagpieElement *child);
/* The stanza an element belongs to. (transfer none) */
MAGPIE_API MagpieStanza *magpie_element_stanza(const MagpieElement *el);

/* Serialize @stanza into @out. The root's namespace is left implicit when it
 * equals @stream_ns, or when it is jabber:client/jabber:server and
 * @stream_ns is one of the two (the stream's default namespace is used).
 * Attribute values and text are escaped. */
MAGPIE_API void magpie_stanza_serialize(MagpieStanza *stanza, const char *stream_ns, GString *out);
MAGPIE_API void magpie_element_serialize(const MagpieElement *el, const char *parent_ns,
                                         GString *out);
/* Serialized for a jabber:client stream, cached until the stanza changes.
 * (transfer none) */
MAGPIE_API GBytes *magpie_stanza_to_bytes(MagpieStanza *stanza);

/* Parse one complete element from a string, with the same restrictions as a
 * stream (no DTD, PI, comments, entities); for tests and SQL-stored XML.
 * Unqualified elements get @default_ns. (transfer full), NULL + error. */
MAGPIE_API MagpieStanza *magpie_stanza_parse(const char *xml, gssize len, const char *default_ns,
                                             GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpieStanza, magpie_stanza_unref)

G_END_DECLS
