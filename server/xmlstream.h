/* The XMPP stream parser: libxml2 SAX2 push parser -> MagpieStanza.
 *
 * Guards (RFC 6120 §11 and research/crux.md §2): DOCTYPE, entity
 * declarations and references, processing instructions and comments are
 * refused with restricted-xml; input is UTF-8 only (XML_PARSE_IGNORE_ENC);
 * stanza size, depth and bytes-without-an-event budgets give
 * policy-violation. Whitespace between stanzas (keepalives) is ignored.
 */
#pragma once

#include <magpie/stanza.h>

G_BEGIN_DECLS

typedef struct _MagpieXmlStream MagpieXmlStream;

typedef struct {
	/* The stream header as a childless stanza: root "stream" in
	 * MAGPIE_NS_STREAM with attributes to, from, version, id, xml:lang.
	 * @default_ns is the header's default namespace declaration (NULL if
	 * none). A root other than stream:stream is reported through error()
	 * ("invalid-namespace" for a wrong namespace, "not-well-formed"
	 * otherwise), never here. */
	void (*stream_start)(gpointer user_data, MagpieStanza *header, const char *default_ns);
	/* A complete depth-1 element. (transfer none): ref to keep. */
	void (*stanza)(gpointer user_data, MagpieStanza *stanza);
	/* </stream:stream> */
	void (*stream_end)(gpointer user_data);
	/* A fatal stream error: @condition is an RFC 6120 §4.9.3 name
	 * ("not-well-formed", "restricted-xml", "policy-violation",
	 * "unsupported-encoding", "invalid-namespace", "bad-format", ...), @text
	 * a log line for the operator. Nothing more is delivered until reset. */
	void (*error)(gpointer user_data, const char *condition, const char *text);
} MagpieXmlStreamCallbacks;

typedef struct {
	gsize max_stanza_size;         /* bytes of one depth-1 element; default 256 KiB */
	guint max_depth;               /* nesting below the stream root; default 32 */
	gsize max_bytes_without_event; /* default = max_stanza_size */
	guint dict_rotate_threshold; /* names interned before the context is replaced; default 5000
	                              */
} MagpieXmlStreamLimits;

/* @limits may be NULL for the defaults. */
MagpieXmlStream *magpie_xml_stream_new(const MagpieXmlStreamCallbacks *callbacks,
                                       gpointer user_data, const MagpieXmlStreamLimits *limits);
void magpie_xml_stream_free(MagpieXmlStream *xs);

/* Parse @len bytes. Returns how many were consumed: all of them, unless a
 * callback called magpie_xml_stream_pause(), in which case parsing stops
 * right after that stanza's end tag and the rest is the caller's (STARTTLS:
 * leftover plaintext is an injection; SASL success: reset, then feed the
 * rest; a pending hook: feed it later). Never call _feed, _reset or _free
 * from inside a callback. */
gsize magpie_xml_stream_feed(MagpieXmlStream *xs, const char *data, gsize len);
/* From inside the stanza() or stream_start() callback. */
void magpie_xml_stream_pause(MagpieXmlStream *xs);
/* Expect a fresh stream header (after STARTTLS or SASL success). */
void magpie_xml_stream_reset(MagpieXmlStream *xs);
/* At a stanza boundary, free the libxml2 context to save memory on an idle
 * stream; it is rebuilt (primed with the original header, no event) at
 * the next feed. No-op inside a stanza. TRUE when a context was freed. */
gboolean magpie_xml_stream_release(MagpieXmlStream *xs);
/* Is the parser between stanzas (depth 1, nothing partial buffered)? */
gboolean magpie_xml_stream_at_boundary(MagpieXmlStream *xs);
/* For tests: number of context replacements because of dictionary size. */
guint magpie_xml_stream_rotations(MagpieXmlStream *xs);

G_END_DECLS
