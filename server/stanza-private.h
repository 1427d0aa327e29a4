/* Stanza internals shared by stanza.c and the stream parser (xmlstream.c):
 * length-based builders that write straight into a stanza's arena. Not
 * part of the module API. */
#pragma once

#include <sys/uio.h>

#include <magpie/stanza.h>

G_BEGIN_DECLS

/* A stanza whose root is @name (@name_len bytes) in namespace @ns (NULL =
 * no namespace). */
MagpieStanza *magpie_stanza_new_internal(const char *name, gsize name_len, const char *ns);
/* Append a child element; @ns NULL = no namespace (not inherited). */
MagpieElement *magpie_element_add_child_internal(MagpieElement *el, const char *name,
                                                 gsize name_len, const char *ns);
/* A copy of @stanza in an allocation of just the size it needs and without
 * its serialization: for stanzas kept long (a session's presence). */
MagpieStanza *magpie_stanza_copy_compact_internal(MagpieStanza *stanza);
/* The serialization of @stanza in three pieces, without making it: when
 * it would be spliced from the bytes made before the root's 'to' changed
 * (magpie_stanza_to_bytes() would build them), and the new value needs no
 * escaping. FALSE otherwise. The pieces stay valid until the next change. */
gboolean magpie_stanza_splice_parts_internal(MagpieStanza *stanza, struct iovec parts[3]);
/* Make room for @n more attributes. */
void magpie_element_reserve_attrs_internal(MagpieElement *el, guint n);
/* magpie_stanza_set_attr(stanza, "to", to) for a value that is valid UTF-8
 * already (a JID's string): routing one stanza to many addresses. */
void magpie_stanza_set_to_internal(MagpieStanza *stanza, const char *to);
/* Append an attribute without checking for duplicates (the parser already
 * did). @ns is the attribute's namespace URI or NULL; @value has @value_len
 * bytes, not NUL-terminated. With @decode_amp, "&#38;" is turned into "&"
 * (libxml2 hands '&' in attribute values over in that form). */
void magpie_element_add_attr_internal(MagpieElement *el, const char *name, const char *ns,
                                      const char *value, gsize value_len, gboolean decode_amp);
/* Append a text node (no UTF-8 check: the parser already did). */
void magpie_element_add_text_internal(MagpieElement *el, const char *text, gsize len);
MagpieElement *magpie_element_parent(const MagpieElement *el);
/* Bytes allocated for the stanza's arena (for stats and tests). */
gsize magpie_stanza_arena_size(MagpieStanza *stanza);
/* Changes whenever the stanza's tree changes (any attribute, child or
 * text), to tell whether code it was handed to modified it. */
guint magpie_stanza_generation(MagpieStanza *stanza);
/* Does anything but the caller hold a reference? */
gboolean magpie_stanza_is_shared(MagpieStanza *stanza);

G_END_DECLS
