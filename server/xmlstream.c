/* The XMPP stream parser: a libxml2 SAX2 push context per stream, building
 * MagpieStanza trees straight from SAX events (research/crux.md §2).
 *
 * One mechanism, "stop the parser right after a depth-1 end tag", serves
 * magpie_xml_stream_pause() (STARTTLS injection check, SASL restart, a
 * pending hook) and the replacement of a context whose name dictionary
 * grew too big: the context is then reset or replaced, primed with a
 * synthetic stream header carrying the original namespace declarations
 * (its event suppressed) and fed the rest of the input. */
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/dict.h>

#include "xmlstream.h"
#include "stanza-private.h"

#define PARSE_OPTIONS (XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_IGNORE_ENC)
/* Bounded xmlParseChunk() calls keep each one short and the byte budgets
 * prompt. */
#define FEED_SLICE 4096
/* Text buffers bigger than this are not kept between stanzas. */
#define TEXT_KEEP_MAX 8192
/* libxml2 gives a push context an input buffer of twice this (default
 * 4096, so 8 KiB of a 16 KiB context). Stanzas are mostly well under
 * 1 KiB and the buffer grows when one is not; a c2s stream keeps its
 * context until it has been silent for 5-8 s, so after a login burst
 * thousands are alive. */
#define INPUT_BUFFER_SIZE 1024

struct _MagpieXmlStream {
	MagpieXmlStreamCallbacks cb;
	gpointer user_data;
	MagpieXmlStreamLimits limits;
	xmlParserCtxtPtr ctxt; /* NULL: not yet created, or released */

	guint depth; /* 0: outside the root; 1: between stanzas */
	gboolean started;
	gboolean failed;
	gboolean priming;
	gboolean pause_requested;
	gboolean stopped; /* we stopped the parser at a stanza boundary */
	gboolean rotate;
	gboolean in_parse;

	/* Offsets in the bytes fed to the current context (priming included). */
	gsize fed;
	gsize boundary;
	gsize last_event;
	gsize stanza_start;

	MagpieStanza *stanza;
	MagpieElement *cur;
	GString *text;

	char *prime; /* the synthetic header, once the stream has started */
	gsize prime_len;
	guint rotations;
};

static void xs_on_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                                const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                                int nb_attributes, int nb_defaulted, const xmlChar **attributes);
static void xs_on_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                              const xmlChar *uri);
static void xs_on_characters(void *ctx, const xmlChar *ch, int len);
static void xs_on_start_document(void *ctx);
static void xs_on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                                  const xmlChar *system_id);
static void xs_on_pi(void *ctx, const xmlChar *target, const xmlChar *data);
static void xs_on_comment(void *ctx, const xmlChar *value);
static void xs_on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                              const xmlChar *system_id, xmlChar *content);
static xmlEntityPtr xs_on_get_entity(void *ctx, const xmlChar *name);
static void xs_on_reference(void *ctx, const xmlChar *name);
static void xs_on_serror(void *ctx, xmlErrorPtr error);

static xmlSAXHandler xs_sax = {
	.initialized = XML_SAX2_MAGIC,
	.startElementNs = xs_on_start_element,
	.endElementNs = xs_on_end_element,
	.characters = xs_on_characters,
	.cdataBlock = xs_on_characters,
	.ignorableWhitespace = xs_on_characters,
	.startDocument = xs_on_start_document,
	/* RFC 6120 §11.1: restricted XML */
	.internalSubset = xs_on_internal_subset,
	.externalSubset = xs_on_internal_subset,
	.processingInstruction = xs_on_pi,
	.comment = xs_on_comment,
	.entityDecl = xs_on_entity_decl,
	.getEntity = xs_on_get_entity,
	.getParameterEntity = xs_on_get_entity,
	.reference = xs_on_reference,
	.serror = xs_on_serror,
};

static void
xs_fail(MagpieXmlStream *xs, const char *condition, const char *text)
{
	if (xs->failed)
		return;
	xs->failed = TRUE;
	if (xs->ctxt != NULL && xs->in_parse)
		xmlStopParser(xs->ctxt);
	g_clear_pointer(&xs->stanza, magpie_stanza_unref);
	xs->cur = NULL;
	if (xs->cb.error != NULL)
		xs->cb.error(xs->user_data, condition, text);
}

static void G_GNUC_PRINTF(3, 4)
        xs_failf(MagpieXmlStream *xs, const char *condition, const char *format, ...)
{
	g_autofree char *text = NULL;
	va_list ap;

	if (xs->failed)
		return;
	va_start(ap, format);
	text = g_strdup_vprintf(format, ap);
	va_end(ap);
	xs_fail(xs, condition, text);
}

static inline gsize
xs_consumed(MagpieXmlStream *xs)
{
	long n = xmlByteConsumed(xs->ctxt);

	return n > 0 ? (gsize) n : 0;
}

/* Bookkeeping common to every SAX event; FALSE when the stream failed. */
static inline gboolean
xs_event(MagpieXmlStream *xs)
{
	if (G_UNLIKELY(xs->failed))
		return FALSE;
	xs->last_event = xs_consumed(xs);
	if (xs->stanza != NULL && xs->last_event - xs->stanza_start > xs->limits.max_stanza_size) {
		xs_failf(xs, "policy-violation", "stanza larger than %" G_GSIZE_FORMAT " bytes",
		         xs->limits.max_stanza_size);
		return FALSE;
	}
	return TRUE;
}

static void
xs_stop_at_boundary(MagpieXmlStream *xs, gboolean in_start_tag)
{
	xmlParserInputPtr in = xs->ctxt->input;

	/* xmlByteConsumed() first: xmlStopParser() drops the input. A start
	 * tag's event comes before its '>' is consumed (the push parser
	 * only parses a start tag once its '>' has arrived). */
	xs->boundary = xs_consumed(xs);
	if (in_start_tag && in->cur < in->end && *in->cur == '>')
		xs->boundary++;
	xs->stopped = TRUE;
	xmlStopParser(xs->ctxt);
}

static void
xs_free_text(MagpieXmlStream *xs)
{
	if (xs->text != NULL) {
		g_string_free(xs->text, TRUE);
		xs->text = NULL;
	}
}

static void
xs_flush_text(MagpieXmlStream *xs)
{
	if (xs->text == NULL || xs->text->len == 0)
		return;
	magpie_element_add_text_internal(xs->cur, xs->text->str, xs->text->len);
	g_string_truncate(xs->text, 0);
}

static void
xs_append_escaped(GString *out, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			g_string_append(out, "&amp;");
			break;
		case '<':
			g_string_append(out, "&lt;");
			break;
		case '\'':
			g_string_append(out, "&apos;");
			break;
		default:
			g_string_append_c(out, *s);
		}
	}
}

static void
xs_stream_start(MagpieXmlStream *xs, const xmlChar *localname, const xmlChar *prefix,
                const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                int nb_attributes, const xmlChar **attributes)
{
	g_autoptr(MagpieStanza) header = NULL;
	const char *default_ns = NULL;
	GString *prime;

	if (strcmp((const char *) localname, "stream") != 0) {
		xs_failf(xs, "not-well-formed", "root element <%.64s> is not <stream:stream>",
		         (const char *) localname);
		return;
	}
	if (uri == NULL || strcmp((const char *) uri, MAGPIE_NS_STREAM) != 0) {
		xs_failf(xs, "invalid-namespace", "stream root in namespace '%.200s'",
		         uri ? (const char *) uri : "");
		return;
	}

	header = magpie_stanza_new_internal("stream", 6, MAGPIE_NS_STREAM);
	prime = g_string_new("<");
	if (prefix != NULL)
		g_string_append_printf(prime, "%s:", (const char *) prefix);
	g_string_append(prime, "stream");
	for (int i = 0; i < nb_namespaces; i++) {
		const char *p = (const char *) namespaces[2 * i];
		const char *u = (const char *) namespaces[2 * i + 1];

		if (p == NULL) {
			default_ns = u;
			g_string_append(prime, " xmlns='");
		} else {
			g_string_append_printf(prime, " xmlns:%s='", p);
		}
		xs_append_escaped(prime, u ? u : "");
		g_string_append_c(prime, '\'');
	}
	g_string_append_c(prime, '>');
	g_free(xs->prime);
	xs->prime_len = prime->len;
	xs->prime = g_string_free(prime, FALSE);

	magpie_element_reserve_attrs_internal(magpie_stanza_root(header), nb_attributes);
	for (int i = 0; i < nb_attributes; i++) {
		const xmlChar **a = &attributes[5 * i];
		char qname[256];
		const char *name = (const char *) a[0];
		const char *ns = (const char *) a[2];

		if (a[1] != NULL && strcmp((const char *) a[1], "xml") == 0) {
			g_snprintf(qname, sizeof(qname), "xml:%s", name);
			name = qname;
			ns = NULL;
		}
		magpie_element_add_attr_internal(magpie_stanza_root(header), name, ns,
		                                 (const char *) a[3], a[4] - a[3], TRUE);
	}
	xs->started = TRUE;
	xs->depth = 1;
	if (xs->cb.stream_start != NULL)
		xs->cb.stream_start(xs->user_data, header, default_ns);
	if (!xs->failed && xs->pause_requested)
		xs_stop_at_boundary(xs, TRUE);
}

static void
xs_on_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                    int nb_namespaces, const xmlChar **namespaces, int nb_attributes,
                    int nb_defaulted, const xmlChar **attributes)
{
	MagpieXmlStream *xs = ctx;
	MagpieElement *el;

	if (!xs_event(xs))
		return;
	if (xs->depth == 0) {
		if (xs->priming) {
			xs->depth = 1;
			return;
		}
		if (xs->started) {
			xs_fail(xs, "not-well-formed", "a second stream root");
			return;
		}
		xs_stream_start(xs, localname, prefix, uri, nb_namespaces, namespaces,
		                nb_attributes, attributes);
		return;
	}
	if (xs->depth > xs->limits.max_depth) {
		xs_failf(xs, "policy-violation", "elements nested deeper than %u",
		         xs->limits.max_depth);
		return;
	}
	if (xs->depth == 1) {
		xs->stanza = magpie_stanza_new_internal((const char *) localname,
		                                        strlen((const char *) localname),
		                                        (const char *) uri);
		xs->stanza_start = xs->last_event;
		el = magpie_stanza_root(xs->stanza);
	} else {
		xs_flush_text(xs);
		el = magpie_element_add_child_internal(xs->cur, (const char *) localname,
		                                       strlen((const char *) localname),
		                                       (const char *) uri);
	}
	if (nb_attributes > 0)
		magpie_element_reserve_attrs_internal(el, nb_attributes);
	for (int i = 0; i < nb_attributes; i++) {
		const xmlChar **a = &attributes[5 * i];
		const char *name = (const char *) a[0];
		const char *ns = (const char *) a[2];
		char qname[256];

		if (G_UNLIKELY(a[1] != NULL) && strcmp((const char *) a[1], "xml") == 0) {
			g_snprintf(qname, sizeof(qname), "xml:%s", name);
			name = qname;
			ns = NULL;
		}
		magpie_element_add_attr_internal(el, name, ns, (const char *) a[3], a[4] - a[3],
		                                 TRUE);
	}
	xs->cur = el;
	xs->depth++;
}

/* The peer closed the stream (</stream:stream>). */
static void
xs_stream_ended(MagpieXmlStream *xs)
{
	xs->depth = 0;
	if (xs->cb.stream_end != NULL)
		xs->cb.stream_end(xs->user_data);
}

static void
xs_on_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
	MagpieXmlStream *xs = ctx;
	MagpieStanza *stanza;

	if (!xs_event(xs))
		return;
	if (xs->depth == 1) {
		xs_stream_ended(xs);
		return;
	}
	xs_flush_text(xs);
	xs->depth--;
	if (xs->depth > 1) {
		xs->cur = magpie_element_parent(xs->cur);
		return;
	}

	stanza = g_steal_pointer(&xs->stanza);
	xs->cur = NULL;
	if (xs->text != NULL && xs->text->allocated_len > TEXT_KEEP_MAX)
		xs_free_text(xs);
	if (xs->cb.stanza != NULL)
		xs->cb.stanza(xs->user_data, stanza);
	magpie_stanza_unref(stanza);
	if (xs->failed)
		return;
	if (G_UNLIKELY((guint) xmlDictSize(xs->ctxt->dict) > xs->limits.dict_rotate_threshold))
		xs->rotate = TRUE;
	if (xs->pause_requested || xs->rotate)
		xs_stop_at_boundary(xs, FALSE);
}

static gboolean
is_xml_space(const char *s, gsize len)
{
	for (gsize i = 0; i < len; i++) {
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return FALSE;
	}
	return TRUE;
}

static void
xs_on_characters(void *ctx, const xmlChar *ch, int len)
{
	MagpieXmlStream *xs = ctx;

	if (!xs_event(xs))
		return;
	if (xs->depth <= 1) {
		/* Whitespace between stanzas is a keepalive. */
		if (!is_xml_space((const char *) ch, len))
			xs_fail(xs, "not-well-formed", "character data between stanzas");
		return;
	}
	if (xs->text == NULL)
		xs->text = g_string_sized_new(MAX(len, 64));
	g_string_append_len(xs->text, (const char *) ch, len);
}

/* With XML_PARSE_IGNORE_ENC libxml2 forgets the declared encoding, so look
 * at the declaration ourselves: it is still in the input buffer here. */
static void
xs_on_start_document(void *ctx)
{
	MagpieXmlStream *xs = ctx;
	xmlParserInputPtr in = xs->ctxt->input;
	g_autofree char *decl = NULL;
	const char *p, *q;
	char quote;

	if (xs->priming || in == NULL)
		return;
	/* A byte order mark or a UTF-16 start made libxml2 install a
	 * decoder: RFC 6120 §11.6 allows UTF-8 only. */
	if (in->buf != NULL && in->buf->encoder != NULL) {
		xs_fail(xs, "unsupported-encoding", "input is not UTF-8");
		return;
	}
	if (in->base == NULL || in->cur <= in->base)
		return;
	decl = g_strndup((const char *) in->base, MIN(in->cur - in->base, 512));
	if (strstr(decl, "<?xml") == NULL)
		return;
	p = strstr(decl, "encoding");
	if (p == NULL)
		return;
	p += 8;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p++ != '=')
		return;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	quote = *p++;
	if (quote != '\'' && quote != '"')
		return;
	q = strchr(p, quote);
	if (q == NULL)
		return;
	if (q - p != 5 || g_ascii_strncasecmp(p, "UTF-8", 5) != 0)
		xs_failf(xs, "unsupported-encoding", "declared encoding '%.*s'",
		         (int) MIN(q - p, 40), p);
}

static void
xs_on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                      const xmlChar *system_id)
{
	xs_fail(ctx, "restricted-xml", "DOCTYPE");
}

static void
xs_on_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
	xs_fail(ctx, "restricted-xml", "processing instruction");
}

static void
xs_on_comment(void *ctx, const xmlChar *value)
{
	xs_fail(ctx, "restricted-xml", "comment");
}

static void
xs_on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                  const xmlChar *system_id, xmlChar *content)
{
	xs_fail(ctx, "restricted-xml", "entity declaration");
}

/* Called only for entities other than the five predefined ones. */
static xmlEntityPtr
xs_on_get_entity(void *ctx, const xmlChar *name)
{
	xs_fail(ctx, "restricted-xml", "entity reference");
	return NULL;
}

static void
xs_on_reference(void *ctx, const xmlChar *name)
{
	xs_fail(ctx, "restricted-xml", "entity reference");
}

static void
xs_on_serror(void *ctx, xmlErrorPtr error)
{
	MagpieXmlStream *xs = ctx;
	g_autofree char *message = NULL;

	if (error == NULL || error->level < XML_ERR_ERROR)
		return;
	if (error->code == XML_ERR_USER_STOP || xs->failed)
		return;
	message = g_strndup(error->message ? error->message : "", 200);
	xs_failf(xs, "not-well-formed", "XML error %d at line %d: %s", error->code, error->line,
	         g_strchomp(message));
}

/* Contexts */

static void
xs_init_libxml(void)
{
	static gsize once = 0;

	if (g_once_init_enter(&once)) {
		xmlInitParser();
		xmlThrDefDefaultBufferSize(INPUT_BUFFER_SIZE);
		xmlDefaultBufferSize = INPUT_BUFFER_SIZE;
		g_once_init_leave(&once, 1);
	}
}

static void
xs_feed_prime(MagpieXmlStream *xs)
{
	xs->priming = TRUE;
	xs->in_parse = TRUE;
	xs->fed += xs->prime_len;
	xmlParseChunk(xs->ctxt, xs->prime, xs->prime_len, 0);
	xs->in_parse = FALSE;
	xs->priming = FALSE;
	if (!xs->failed && xs->depth != 1)
		xs_fail(xs, "internal-server-error", "priming the parser failed");
}

/* A fresh context, primed when the stream has already started. */
static void
xs_new_context(MagpieXmlStream *xs)
{
	xs_init_libxml();
	xs->ctxt = xmlCreatePushParserCtxt(&xs_sax, xs, NULL, 0, NULL);
	g_assert(xs->ctxt != NULL);
	xmlCtxtUseOptions(xs->ctxt, PARSE_OPTIONS);
	xs->fed = 0;
	xs->last_event = 0;
	if (xs->started) {
		xs->depth = 0;
		xs_feed_prime(xs);
	}
}

static void
xs_reset_context(MagpieXmlStream *xs)
{
	xmlCtxtResetPush(xs->ctxt, NULL, 0, NULL, NULL);
	xmlCtxtUseOptions(xs->ctxt, PARSE_OPTIONS);
	xs->fed = 0;
	xs->last_event = 0;
}

static gboolean
xs_pending_junk(MagpieXmlStream *xs)
{
	xmlParserInputPtr in = xs->ctxt->input;

	if (in == NULL || in->cur == NULL)
		return FALSE;
	for (const xmlChar *p = in->cur; p < in->end; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return *p != '<';
	}
	return FALSE;
}

MagpieXmlStream *
magpie_xml_stream_new(const MagpieXmlStreamCallbacks *callbacks, gpointer user_data,
                      const MagpieXmlStreamLimits *limits)
{
	MagpieXmlStream *xs;

	g_return_val_if_fail(callbacks != NULL, NULL);

	xs = g_new0(MagpieXmlStream, 1);
	xs->cb = *callbacks;
	xs->user_data = user_data;
	if (limits != NULL)
		xs->limits = *limits;
	if (xs->limits.max_stanza_size == 0)
		xs->limits.max_stanza_size = 256 * 1024;
	if (xs->limits.max_depth == 0)
		xs->limits.max_depth = 32;
	if (xs->limits.max_bytes_without_event == 0)
		xs->limits.max_bytes_without_event = xs->limits.max_stanza_size;
	if (xs->limits.dict_rotate_threshold == 0)
		xs->limits.dict_rotate_threshold = 5000;
	return xs;
}

void
magpie_xml_stream_free(MagpieXmlStream *xs)
{
	if (xs == NULL)
		return;
	g_return_if_fail(!xs->in_parse);

	if (xs->ctxt != NULL)
		xmlFreeParserCtxt(xs->ctxt);
	g_clear_pointer(&xs->stanza, magpie_stanza_unref);
	if (xs->text != NULL)
		g_string_free(xs->text, TRUE);
	g_free(xs->prime);
	g_free(xs);
}

/* Whether @data is all of "</stream:stream>" (the stream's own qualified
 * name, from the synthetic header), whitespace around it allowed. */
static gboolean
xs_is_stream_close(MagpieXmlStream *xs, const char *data, gsize len)
{
	const char *p = data;
	const char *end = data + len;
	const char *qname = xs->prime + 1;
	gsize qlen = strcspn(qname, " >");

	while (p < end && is_xml_space(p, 1))
		p++;
	if ((gsize) (end - p) < qlen + 3 || p[0] != '<' || p[1] != '/' ||
	    memcmp(p + 2, qname, qlen) != 0)
		return FALSE;
	p += 2 + qlen;
	while (p < end && is_xml_space(p, 1))
		p++;
	if (p == end || *p != '>')
		return FALSE;
	p++;
	return is_xml_space(p, end - p);
}

gsize
magpie_xml_stream_feed(MagpieXmlStream *xs, const char *data, gsize len)
{
	gsize off = 0;

	g_return_val_if_fail(xs != NULL, len);
	g_return_val_if_fail(!xs->in_parse, 0);
	g_return_val_if_fail(data != NULL || len == 0, 0);

	if (xs->failed || len == 0)
		return len;
	xs->pause_requested = FALSE; /* one asked for outside a stanza end */
	if (xs->ctxt == NULL && xs->started && xs->prime != NULL &&
	    xs_is_stream_close(xs, data, len)) {
		/* The usual last bytes of an idle stream: end it without
		 * rebuilding a context (about 10 KiB each, all at once when a
		 * whole population of clients disconnects). */
		xs->in_parse = TRUE;
		xs_stream_ended(xs);
		xs->in_parse = FALSE;
		return len;
	}
	if (xs->ctxt == NULL)
		xs_new_context(xs);

	while (off < len && !xs->failed) {
		gsize n = MIN(len - off, (gsize) FEED_SLICE);
		gsize base = xs->fed;

		xs->fed += n;
		xs->in_parse = TRUE;
		xmlParseChunk(xs->ctxt, data + off, n, 0);
		xs->in_parse = FALSE;
		if (xs->failed)
			break;

		if (xs->stopped) {
			gboolean paused = xs->pause_requested;

			g_assert(xs->boundary >= base && xs->boundary <= base + n);
			off += xs->boundary - base;
			xs->stopped = FALSE;
			xs->pause_requested = FALSE;
			if (xs->rotate) {
				xs->rotate = FALSE;
				xs->rotations++;
				xmlFreeParserCtxt(xs->ctxt);
				xs_new_context(xs);
			} else {
				xs_reset_context(xs);
				xs->depth = 0;
				xs_feed_prime(xs);
			}
			if (paused)
				return off;
			continue;
		}
		off += n;

		/* libxml2 holds text between stanzas until the next '<': judge
		 * it now rather than when the peer chooses to send one. */
		if (xs->depth == 1 && xs->stanza == NULL && xs->started && xs_pending_junk(xs))
			xs_fail(xs, "not-well-formed", "character data between stanzas");
		else if (xs->stanza != NULL &&
		         xs->fed - xs->stanza_start > xs->limits.max_stanza_size)
			xs_failf(xs, "policy-violation",
			         "stanza larger than %" G_GSIZE_FORMAT " bytes",
			         xs->limits.max_stanza_size);
		else if (xs->fed - xs->last_event > xs->limits.max_bytes_without_event)
			xs_failf(xs, "policy-violation",
			         "%" G_GSIZE_FORMAT " bytes without a complete XML event",
			         xs->fed - xs->last_event);
	}
	return len;
}

void
magpie_xml_stream_pause(MagpieXmlStream *xs)
{
	g_return_if_fail(xs != NULL);
	g_return_if_fail(xs->in_parse);

	xs->pause_requested = TRUE;
}

void
magpie_xml_stream_reset(MagpieXmlStream *xs)
{
	g_return_if_fail(xs != NULL);
	g_return_if_fail(!xs->in_parse);

	if (xs->ctxt != NULL)
		xs_reset_context(xs);
	g_clear_pointer(&xs->stanza, magpie_stanza_unref);
	g_clear_pointer(&xs->prime, g_free);
	xs->prime_len = 0;
	xs->cur = NULL;
	xs->depth = 0;
	xs->started = FALSE;
	xs->failed = FALSE;
	xs->stopped = FALSE;
	xs->pause_requested = FALSE;
	xs->rotate = FALSE;
	if (xs->text != NULL)
		g_string_truncate(xs->text, 0);
}

gboolean
magpie_xml_stream_at_boundary(MagpieXmlStream *xs)
{
	xmlParserInputPtr in;

	g_return_val_if_fail(xs != NULL, FALSE);

	if (xs->failed || !xs->started || xs->depth != 1 || xs->stanza != NULL)
		return FALSE;
	if (xs->ctxt == NULL)
		return TRUE;
	in = xs->ctxt->input;
	if (in == NULL || in->cur == NULL)
		return TRUE;
	/* Unparsed whitespace (libxml2 holds it until the next '<') is fine. */
	return is_xml_space((const char *) in->cur, in->end - in->cur);
}

gboolean
magpie_xml_stream_release(MagpieXmlStream *xs)
{
	g_return_val_if_fail(xs != NULL, FALSE);
	g_return_val_if_fail(!xs->in_parse, FALSE);

	if (xs->ctxt == NULL || !magpie_xml_stream_at_boundary(xs))
		return FALSE;
	xmlFreeParserCtxt(xs->ctxt);
	xs->ctxt = NULL;
	xs_free_text(xs);
	return TRUE;
}

guint
magpie_xml_stream_rotations(MagpieXmlStream *xs)
{
	g_return_val_if_fail(xs != NULL, 0);

	return xs->rotations;
}
