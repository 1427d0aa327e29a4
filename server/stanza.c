/* Stanzas: a compact refcounted element tree living in a per-stanza arena.
 *
 * A stanza is one allocation holding its header and a first arena chunk;
 * bigger stanzas chain more chunks. Nodes and strings are bump-allocated
 * and die with the stanza, never one by one. */
#include <string.h>

#include "stanza-private.h"
#include "xmlstream.h"

#define ARENA_ALIGN 8
/* Header + first chunk in one malloc: a typical 300-byte message tree fits. */
#define STANZA_ALLOC_SIZE 1024
#define ARENA_CHUNK_MIN   2048
#define ARENA_CHUNK_MAX   (64 * 1024)
#define NO_TO_OFF         G_MAXSIZE

typedef struct _ArenaChunk ArenaChunk;
struct _ArenaChunk {
	ArenaChunk *next;
	gsize size;
};

typedef struct _Node Node;
struct _Node {
	Node *next;
	gboolean is_text;
};

typedef struct {
	Node node;
	gsize len;
	char text[]; /* NUL-terminated */
} TextNode;

typedef struct {
	const char *name; /* local name, or "xml:lang" (qualified) for the xml: prefix */
	const char *ns;   /* NULL: no namespace */
	const char *value;
} Attr;

struct _MagpieElement {
	Node node;
	MagpieStanza *stanza;
	MagpieElement *parent;
	const char *name;
	const char *ns; /* "" = no namespace */
	Attr *attrs;
	guint n_attrs;
	guint cap_attrs;
	Node *first;
	Node *last;
};

struct _MagpieStanza {
	gint refcount;
	char *arena_ptr;
	gsize arena_left;
	gsize arena_total;
	ArenaChunk *chunks;
	MagpieElement *root;
	GBytes *bytes; /* the serialization, cached */
	/* The serialization of this stanza as it was before only the root's
	 * 'to' changed: the new bytes are spliced from it (the value is at
	 * to_off, to_len bytes escaped), so one stanza routed to many
	 * addresses in turn is serialized once. to_off is NO_TO_OFF when the
	 * cached bytes have no 'to' to replace. */
	GBytes *spliceable;
	gsize to_off;
	gsize to_len;
	guint generation; /* bumped by every change */
	                  /* the first arena chunk follows */
};

/* Namespaces that occur in most stanzas share one static copy. */
static const char *const well_known_ns[] = {
	MAGPIE_NS_CLIENT,
	MAGPIE_NS_SERVER,
	MAGPIE_NS_STANZAS,
	MAGPIE_NS_STREAM,
	MAGPIE_NS_STREAMS,
	"urn:xmpp:delay",
	"urn:xmpp:receipts",
	"http://jabber.org/protocol/chatstates",
	"urn:xmpp:sid:0",
	"urn:xmpp:chat-markers:0",
	"urn:xmpp:hints",
	"http://jabber.org/protocol/caps",
	"jabber:iq:roster",
	"urn:ietf:params:xml:ns:xmpp-session",
	"urn:ietf:params:xml:ns:xmpp-bind",
	"urn:xmpp:ping",
};

/* Arena */

static gpointer
arena_grow(MagpieStanza *st, gsize size)
{
	gsize csize = MIN(MAX(st->arena_total, (gsize) ARENA_CHUNK_MIN), (gsize) ARENA_CHUNK_MAX);
	ArenaChunk *chunk;
	char *p;

	if (csize < size)
		csize = size;
	chunk = g_malloc(sizeof(ArenaChunk) + csize);
	chunk->next = st->chunks;
	chunk->size = csize;
	st->chunks = chunk;
	st->arena_total += csize;
	p = (char *) (chunk + 1);
	st->arena_ptr = p + size;
	st->arena_left = csize - size;
	return p;
}

/* Unaligned bytes (strings). */
static inline char *
arena_bytes(MagpieStanza *st, gsize size)
{
	char *p;

	if (G_UNLIKELY(size > st->arena_left))
		return arena_grow(st, size);
	p = st->arena_ptr;
	st->arena_ptr += size;
	st->arena_left -= size;
	return p;
}

static inline gpointer
arena_alloc(MagpieStanza *st, gsize size)
{
	gsize pad = (-(guintptr) st->arena_ptr) & (ARENA_ALIGN - 1);

	size = (size + ARENA_ALIGN - 1) & ~(gsize) (ARENA_ALIGN - 1);
	if (G_UNLIKELY(size + pad > st->arena_left))
		return arena_grow(st, size); /* chunks start aligned */
	st->arena_ptr += pad;
	st->arena_left -= pad;
	return arena_bytes(st, size);
}

static inline char *
arena_strndup(MagpieStanza *st, const char *s, gsize len)
{
	char *p = arena_bytes(st, len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static const char *
arena_ns(MagpieStanza *st, const MagpieElement *parent, const char *ns)
{
	if (ns == NULL || ns[0] == '\0')
		return "";
	if (parent != NULL && (parent->ns == ns || strcmp(parent->ns, ns) == 0))
		return parent->ns;
	for (guint i = 0; i < G_N_ELEMENTS(well_known_ns); i++) {
		if (strcmp(well_known_ns[i], ns) == 0)
			return well_known_ns[i];
	}
	return arena_strndup(st, ns, strlen(ns));
}

static inline void
invalidate(MagpieStanza *st)
{
	st->generation++;
	if (G_UNLIKELY(st->bytes != NULL))
		g_clear_pointer(&st->bytes, g_bytes_unref);
	if (G_UNLIKELY(st->spliceable != NULL))
		g_clear_pointer(&st->spliceable, g_bytes_unref);
}

/* Only the root's 'to' changes to a new value: keep what the bytes can be
 * spliced from, if anything. */
static void
invalidate_to(MagpieStanza *st)
{
	st->generation++;
	if (st->spliceable == NULL && st->bytes != NULL && st->to_off != NO_TO_OFF) {
		st->spliceable = g_steal_pointer(&st->bytes);
		return;
	}
	if (st->spliceable == NULL)
		invalidate(st);
	else
		g_clear_pointer(&st->bytes, g_bytes_unref);
}

/* Stanza lifecycle */

#define STANZA_HEADER ((sizeof(MagpieStanza) + ARENA_ALIGN - 1) & ~(gsize) (ARENA_ALIGN - 1))

/* A stanza whose first arena chunk holds @arena bytes. */
static MagpieStanza *
stanza_alloc_sized(gsize arena)
{
	MagpieStanza *st = g_malloc(STANZA_HEADER + arena);

	st->refcount = 1;
	st->arena_ptr = (char *) st + STANZA_HEADER;
	st->arena_left = arena;
	st->arena_total = st->arena_left;
	st->chunks = NULL;
	st->root = NULL;
	st->bytes = NULL;
	st->spliceable = NULL;
	st->to_off = NO_TO_OFF;
	st->to_len = 0;
	st->generation = 0;
	return st;
}

static MagpieStanza *
stanza_alloc(void)
{
	return stanza_alloc_sized(STANZA_ALLOC_SIZE - STANZA_HEADER);
}

static MagpieElement *
element_new(MagpieStanza *st, MagpieElement *parent, const char *name, gsize name_len,
            const char *ns)
{
	MagpieElement *el = arena_alloc(st, sizeof(MagpieElement));

	el->node.next = NULL;
	el->node.is_text = FALSE;
	el->stanza = st;
	el->parent = parent;
	el->name = arena_strndup(st, name, name_len);
	el->ns = ns;
	el->attrs = NULL;
	el->n_attrs = 0;
	el->cap_attrs = 0;
	el->first = NULL;
	el->last = NULL;
	return el;
}

static inline void
element_append_node(MagpieElement *el, Node *node)
{
	node->next = NULL;
	if (el->last != NULL)
		el->last->next = node;
	else
		el->first = node;
	el->last = node;
}

MagpieStanza *
magpie_stanza_new_internal(const char *name, gsize name_len, const char *ns)
{
	MagpieStanza *st = stanza_alloc();

	st->root = element_new(st, NULL, name, name_len, arena_ns(st, NULL, ns));
	return st;
}

MagpieStanza *
magpie_stanza_new(const char *name, const char *xmlns)
{
	g_return_val_if_fail(name != NULL && name[0] != '\0', NULL);

	return magpie_stanza_new_internal(name, strlen(name), xmlns ? xmlns : MAGPIE_NS_CLIENT);
}

MagpieStanza *
magpie_stanza_ref(MagpieStanza *stanza)
{
	g_return_val_if_fail(stanza != NULL, NULL);

	g_atomic_int_inc(&stanza->refcount);
	return stanza;
}

void
magpie_stanza_unref(MagpieStanza *stanza)
{
	ArenaChunk *chunk, *next;

	g_return_if_fail(stanza != NULL);

	if (!g_atomic_int_dec_and_test(&stanza->refcount))
		return;
	for (chunk = stanza->chunks; chunk != NULL; chunk = next) {
		next = chunk->next;
		g_free(chunk);
	}
	if (stanza->bytes != NULL)
		g_bytes_unref(stanza->bytes);
	if (stanza->spliceable != NULL)
		g_bytes_unref(stanza->spliceable);
	g_free(stanza);
}

gsize
magpie_stanza_arena_size(MagpieStanza *stanza)
{
	return stanza->arena_total;
}

static MagpieElement *
element_copy_into(MagpieStanza *st, MagpieElement *parent, const MagpieElement *src)
{
	MagpieElement *el = element_new(st, parent, src->name, strlen(src->name),
	                                arena_ns(st, parent, src->ns));

	if (src->n_attrs > 0) {
		el->attrs = arena_alloc(st, src->n_attrs * sizeof(Attr));
		el->cap_attrs = el->n_attrs = src->n_attrs;
		for (guint i = 0; i < src->n_attrs; i++) {
			const Attr *a = &src->attrs[i];

			el->attrs[i].name = arena_strndup(st, a->name, strlen(a->name));
			el->attrs[i].ns = a->ns ? arena_strndup(st, a->ns, strlen(a->ns)) : NULL;
			el->attrs[i].value = arena_strndup(st, a->value, strlen(a->value));
		}
	}
	for (const Node *n = src->first; n != NULL; n = n->next) {
		if (n->is_text) {
			const TextNode *t = (const TextNode *) n;

			magpie_element_add_text_internal(el, t->text, t->len);
		} else {
			MagpieElement *child = element_copy_into(st, el, (const MagpieElement *) n);

			element_append_node(el, &child->node);
		}
	}
	return el;
}

MagpieStanza *
magpie_stanza_copy(MagpieStanza *stanza)
{
	MagpieStanza *st;

	g_return_val_if_fail(stanza != NULL, NULL);

	st = stanza_alloc();
	st->root = element_copy_into(st, NULL, stanza->root);
	return st;
}

MagpieStanza *
magpie_stanza_copy_compact_internal(MagpieStanza *stanza)
{
	MagpieStanza *probe = magpie_stanza_copy(stanza);
	MagpieStanza *st;

	/* The same copy again lays out the same bytes, so the probe tells the
	 * size. A stanza that outgrew the first chunk gains nothing. */
	if (probe->chunks != NULL)
		return probe;
	st = stanza_alloc_sized(probe->arena_total - probe->arena_left);
	magpie_stanza_unref(probe);
	st->root = element_copy_into(st, NULL, stanza->root);
	return st;
}

MagpieElement *
magpie_stanza_root(MagpieStanza *stanza)
{
	g_return_val_if_fail(stanza != NULL, NULL);

	return stanza->root;
}

const char *
magpie_stanza_name(MagpieStanza *stanza)
{
	g_return_val_if_fail(stanza != NULL, NULL);

	return stanza->root->name;
}

const char *
magpie_stanza_get_attr(MagpieStanza *stanza, const char *name)
{
	g_return_val_if_fail(stanza != NULL, NULL);

	return magpie_element_get_attr(stanza->root, name);
}

void
magpie_stanza_set_attr(MagpieStanza *stanza, const char *name, const char *value)
{
	g_return_if_fail(stanza != NULL);

	magpie_element_set_attr(stanza->root, name, value);
}

MagpieElement *
magpie_stanza_find_child(MagpieStanza *stanza, const char *name, const char *xmlns)
{
	g_return_val_if_fail(stanza != NULL, NULL);

	return magpie_element_find_child(stanza->root, name, xmlns);
}

/* Elements */

const char *
magpie_element_name(const MagpieElement *el)
{
	g_return_val_if_fail(el != NULL, NULL);

	return el->name;
}

const char *
magpie_element_ns(const MagpieElement *el)
{
	g_return_val_if_fail(el != NULL, NULL);

	return el->ns;
}

MagpieElement *
magpie_element_parent(const MagpieElement *el)
{
	return el->parent;
}

MagpieStanza *
magpie_element_stanza(const MagpieElement *el)
{
	g_return_val_if_fail(el != NULL, NULL);

	return el->stanza;
}

static Attr *
element_find_attr(const MagpieElement *el, const char *name)
{
	/* Looked up several times per stanza and hop ('type', 'to'): the
	 * first byte rules out most names without a call. */
	for (guint i = 0; i < el->n_attrs; i++) {
		const Attr *a = &el->attrs[i];

		if (a->name[0] == name[0] && a->ns == NULL && strcmp(a->name, name) == 0)
			return &el->attrs[i];
	}
	return NULL;
}

const char *
magpie_element_get_attr(const MagpieElement *el, const char *name)
{
	const Attr *a;

	g_return_val_if_fail(el != NULL, NULL);
	g_return_val_if_fail(name != NULL, NULL);

	a = element_find_attr(el, name);
	return a ? a->value : NULL;
}

static Attr *
element_new_attr(MagpieElement *el)
{
	if (el->n_attrs == el->cap_attrs) {
		guint cap = el->cap_attrs ? el->cap_attrs * 2 : 4;
		Attr *attrs = arena_alloc(el->stanza, cap * sizeof(Attr));

		if (el->n_attrs > 0)
			memcpy(attrs, el->attrs, el->n_attrs * sizeof(Attr));
		el->attrs = attrs;
		el->cap_attrs = cap;
	}
	return &el->attrs[el->n_attrs++];
}

/* Modules may hand us anything: keep the tree valid UTF-8 so that what we
 * serialize is well-formed for the receiver. */
static char *
arena_valid_utf8(MagpieStanza *st, const char *s, gssize len)
{
	const char *end;
	gsize n = len < 0 ? strlen(s) : (gsize) len;

	if (G_LIKELY(g_utf8_validate(s, n, &end)))
		return arena_strndup(st, s, n);

	g_autofree char *valid = g_utf8_make_valid(s, n);
	return arena_strndup(st, valid, strlen(valid));
}

void
magpie_element_set_attr(MagpieElement *el, const char *name, const char *value)
{
	Attr *a;

	g_return_if_fail(el != NULL);
	g_return_if_fail(name != NULL && name[0] != '\0');

	a = element_find_attr(el, name);
	if (value != NULL && a != NULL && el == el->stanza->root && strcmp(name, "to") == 0)
		invalidate_to(el->stanza);
	else
		invalidate(el->stanza);
	if (value == NULL) {
		if (a != NULL) {
			guint i = a - el->attrs;

			memmove(a, a + 1, (el->n_attrs - i - 1) * sizeof(Attr));
			el->n_attrs--;
		}
		return;
	}
	if (a == NULL) {
		a = element_new_attr(el);
		a->name = arena_strndup(el->stanza, name, strlen(name));
		a->ns = NULL;
	}
	a->value = arena_valid_utf8(el->stanza, value, -1);
}

void
magpie_stanza_set_to_internal(MagpieStanza *stanza, const char *to)
{
	Attr *a = element_find_attr(stanza->root, "to");

	if (a == NULL) {
		magpie_element_set_attr(stanza->root, "to", to);
		return;
	}
	invalidate_to(stanza);
	a->value = arena_strndup(stanza, to, strlen(to));
}

void
magpie_element_reserve_attrs_internal(MagpieElement *el, guint n)
{
	if (el->n_attrs + n > el->cap_attrs) {
		guint cap = el->n_attrs + n;
		Attr *attrs = arena_alloc(el->stanza, cap * sizeof(Attr));

		if (el->n_attrs > 0)
			memcpy(attrs, el->attrs, el->n_attrs * sizeof(Attr));
		el->attrs = attrs;
		el->cap_attrs = cap;
	}
}

void
magpie_element_add_attr_internal(MagpieElement *el, const char *name, const char *ns,
                                 const char *value, gsize value_len, gboolean decode_amp)
{
	MagpieStanza *st = el->stanza;
	Attr *a = element_new_attr(el);
	char *v;

	a->name = arena_strndup(st, name, strlen(name));
	a->ns = ns ? arena_strndup(st, ns, strlen(ns)) : NULL;
	v = arena_strndup(st, value, value_len);
	if (decode_amp && memchr(v, '&', value_len) != NULL) {
		char *w = v;

		for (const char *r = v; *r != '\0';) {
			if (r[0] == '&' && strncmp(r, "&#38;", 5) == 0) {
				*w++ = '&';
				r += 5;
			} else {
				*w++ = *r++;
			}
		}
		*w = '\0';
	}
	a->value = v;
}

gboolean
magpie_element_attr_iter(const MagpieElement *el, guint index, const char **name_out,
                         const char **value_out)
{
	g_return_val_if_fail(el != NULL, FALSE);

	if (index >= el->n_attrs)
		return FALSE;
	if (name_out != NULL)
		*name_out = el->attrs[index].name;
	if (value_out != NULL)
		*value_out = el->attrs[index].value;
	return TRUE;
}

static MagpieElement *
next_element(const Node *n)
{
	while (n != NULL && n->is_text)
		n = n->next;
	return (MagpieElement *) n;
}

MagpieElement *
magpie_element_first_child(const MagpieElement *el)
{
	g_return_val_if_fail(el != NULL, NULL);

	return next_element(el->first);
}

MagpieElement *
magpie_element_next_sibling(const MagpieElement *el)
{
	g_return_val_if_fail(el != NULL, NULL);

	return next_element(el->node.next);
}

guint
magpie_element_count_children(const MagpieElement *el)
{
	guint n = 0;

	g_return_val_if_fail(el != NULL, 0);

	for (const Node *c = el->first; c != NULL; c = c->next)
		n += !c->is_text;
	return n;
}

MagpieElement *
magpie_element_find_child(const MagpieElement *el, const char *name, const char *xmlns)
{
	g_return_val_if_fail(el != NULL, NULL);

	for (const Node *c = el->first; c != NULL; c = c->next) {
		const MagpieElement *child = (const MagpieElement *) c;

		if (c->is_text)
			continue;
		if (name != NULL && strcmp(child->name, name) != 0)
			continue;
		if (xmlns != NULL && strcmp(child->ns, xmlns) != 0)
			continue;
		return (MagpieElement *) child;
	}
	return NULL;
}

char *
magpie_element_get_text(const MagpieElement *el)
{
	const Node *c;
	GString *s;

	g_return_val_if_fail(el != NULL, NULL);

	for (c = el->first; c != NULL && !c->is_text; c = c->next)
		;
	if (c == NULL)
		return g_strdup("");
	s = g_string_sized_new(((const TextNode *) c)->len + 1);
	for (; c != NULL; c = c->next) {
		if (c->is_text)
			g_string_append_len(s, ((const TextNode *) c)->text,
			                    ((const TextNode *) c)->len);
	}
	return g_string_free(s, FALSE);
}

char *
magpie_element_get_child_text(const MagpieElement *el, const char *name, const char *xmlns)
{
	MagpieElement *child;

	g_return_val_if_fail(el != NULL, NULL);

	child = magpie_element_find_child(el, name, xmlns);
	return child ? magpie_element_get_text(child) : NULL;
}

MagpieElement *
magpie_element_add_child_internal(MagpieElement *el, const char *name, gsize name_len,
                                  const char *ns)
{
	MagpieStanza *st = el->stanza;
	MagpieElement *child = element_new(st, el, name, name_len, arena_ns(st, el, ns));

	element_append_node(el, &child->node);
	return child;
}

MagpieElement *
magpie_element_add_child(MagpieElement *el, const char *name, const char *xmlns)
{
	g_return_val_if_fail(el != NULL, NULL);
	g_return_val_if_fail(name != NULL && name[0] != '\0', NULL);

	invalidate(el->stanza);
	return magpie_element_add_child_internal(el, name, strlen(name), xmlns ? xmlns : el->ns);
}

void
magpie_element_add_text_internal(MagpieElement *el, const char *text, gsize len)
{
	TextNode *t = arena_alloc(el->stanza, sizeof(TextNode) + len + 1);

	t->node.is_text = TRUE;
	t->len = len;
	memcpy(t->text, text, len);
	t->text[len] = '\0';
	element_append_node(el, &t->node);
}

void
magpie_element_add_text(MagpieElement *el, const char *text, gssize len)
{
	gsize n;

	g_return_if_fail(el != NULL);
	g_return_if_fail(text != NULL);

	n = len < 0 ? strlen(text) : (gsize) len;
	if (n == 0)
		return;
	invalidate(el->stanza);
	if (G_LIKELY(g_utf8_validate(text, n, NULL))) {
		magpie_element_add_text_internal(el, text, n);
	} else {
		g_autofree char *valid = g_utf8_make_valid(text, n);

		magpie_element_add_text_internal(el, valid, strlen(valid));
	}
}

MagpieElement *
magpie_element_append_copy(MagpieElement *el, const MagpieElement *src)
{
	MagpieElement *copy;

	g_return_val_if_fail(el != NULL, NULL);
	g_return_val_if_fail(src != NULL, NULL);

	invalidate(el->stanza);
	copy = element_copy_into(el->stanza, el, src);
	element_append_node(el, &copy->node);
	return copy;
}

void
magpie_element_remove_child(MagpieElement *el, MagpieElement *child)
{
	Node *prev = NULL;

	g_return_if_fail(el != NULL);
	g_return_if_fail(child != NULL && child->parent == el);

	for (Node *n = el->first; n != NULL; prev = n, n = n->next) {
		if (n != &child->node)
			continue;
		if (prev != NULL)
			prev->next = n->next;
		else
			el->first = n->next;
		if (el->last == n)
			el->last = prev;
		n->next = NULL;
		child->parent = NULL;
		invalidate(el->stanza);
		return;
	}
	g_return_if_reached();
}

/* Serialization */

/* 1: escape in attributes; 2: escape in text too; 3: drop (C0 controls that
 * XML 1.0 forbids, should a module have put one there). Tab and newline are
 * escaped in attributes so that attribute-value normalization keeps them;
 * CR everywhere, or it would come back as LF. */
static const guint8 escape_class[256] = {
	[0x00 ... 0x08] = 3, [0x0b] = 3, [0x0c] = 3, [0x0e ... 0x1f] = 3, ['\t'] = 1, ['\n'] = 1,
	['\r'] = 2,          ['&'] = 2,  ['<'] = 2,  ['>'] = 2,           ['"'] = 1,  ['\''] = 1,
};

/* What each escaped byte becomes (NULL: dropped), and how many bytes that
 * adds (-1: dropped). */
static const char *const escape_text[256] = {
	['&'] = "&amp;",   ['<'] = "&lt;",  ['>'] = "&gt;",   ['"'] = "&quot;",
	['\''] = "&apos;", ['\t'] = "&#9;", ['\n'] = "&#10;", ['\r'] = "&#13;",
};
static const gint8 escape_delta[256] = {
	[0x00 ... 0x08] = -1,
	[0x0b] = -1,
	[0x0c] = -1,
	[0x0e ... 0x1f] = -1,
	['&'] = 4,
	['<'] = 3,
	['>'] = 3,
	['"'] = 5,
	['\''] = 5,
	['\t'] = 3,
	['\n'] = 4,
	['\r'] = 4,
};

/* Serialization is two passes over the tree: the exact size, then the
 * bytes, written into one buffer of that size with runs that need no
 * escaping copied in one go. */

static gsize
escaped_size(const char *s, gsize len, guint8 min_class)
{
	gsize n = len;

	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar) s[i];

		if (G_UNLIKELY(escape_class[c] >= min_class))
			n += escape_delta[c];
	}
	return n;
}

static char *
write_bytes(char *p, const char *s, gsize len)
{
	memcpy(p, s, len);
	return p + len;
}

static char *
write_escaped(char *p, const char *s, gsize len, guint8 min_class)
{
	const char *run = s;
	const char *end = s + len;

	for (const char *q = s; q < end; q++) {
		guchar c = (guchar) *q;

		if (G_LIKELY(escape_class[c] < min_class))
			continue;
		p = write_bytes(p, run, q - run);
		run = q + 1;
		if (escape_text[c] != NULL)
			p = write_bytes(p, escape_text[c], escape_delta[c] + 1);
	}
	return write_bytes(p, run, end - run);
}

static void
append_escaped(GString *out, const char *s, gsize len, guint8 min_class)
{
	gsize old = out->len;

	g_string_set_size(out, old + escaped_size(s, len, min_class));
	write_escaped(out->str + old, s, len, min_class);
}

static gboolean
declares_ns(const MagpieElement *el, const char *parent_ns, gboolean ns_implicit)
{
	return !ns_implicit && el->ns != parent_ns && strcmp(el->ns, parent_ns) != 0;
}

/* The prefix of a namespaced attribute other than xml:* (rare): declared
 * on its element as "xmlns:aI='NS' aI:". */
static gsize
attr_prefix_size(const Attr *a, guint i)
{
	char digits[16];
	gsize d = (gsize) g_snprintf(digits, sizeof digits, "%u", i);

	return strlen(" xmlns:a") + d + 2 + escaped_size(a->ns, strlen(a->ns), 1) + 3 + d + 1;
}

static char *
write_attr_prefix(char *p, const Attr *a, guint i)
{
	char digits[16];
	gsize d = (gsize) g_snprintf(digits, sizeof digits, "%u", i);

	p = write_bytes(p, " xmlns:a", strlen(" xmlns:a"));
	p = write_bytes(p, digits, d);
	p = write_bytes(p, "='", 2);
	p = write_escaped(p, a->ns, strlen(a->ns), 1);
	p = write_bytes(p, "' a", 3);
	p = write_bytes(p, digits, d);
	return write_bytes(p, ":", 1);
}

static gsize
element_size(const MagpieElement *el, const char *parent_ns, gboolean ns_implicit)
{
	gsize name_len = strlen(el->name);
	gsize n = 1 + name_len;

	if (declares_ns(el, parent_ns, ns_implicit))
		n += strlen(" xmlns='") + escaped_size(el->ns, strlen(el->ns), 1) + 1;
	for (guint i = 0; i < el->n_attrs; i++) {
		const Attr *a = &el->attrs[i];

		n += a->ns != NULL ? attr_prefix_size(a, i) : 1;
		n += strlen(a->name) + 2 + escaped_size(a->value, strlen(a->value), 1) + 1;
	}
	if (el->first == NULL)
		return n + 2;
	n += 1;
	for (const Node *c = el->first; c != NULL; c = c->next) {
		if (c->is_text) {
			const TextNode *t = (const TextNode *) c;

			n += escaped_size(t->text, t->len, 2);
		} else {
			n += element_size((const MagpieElement *) c, el->ns, FALSE);
		}
	}
	return n + 2 + name_len + 1;
}

/* @mark (may be NULL): an attribute of @el whose value's position is
 * stored in *@mark_pos. */
static char *
element_write_marked(char *p, const MagpieElement *el, const char *parent_ns, gboolean ns_implicit,
                     const Attr *mark, char **mark_pos)
{
	gsize name_len = strlen(el->name);

	*p++ = '<';
	p = write_bytes(p, el->name, name_len);
	if (declares_ns(el, parent_ns, ns_implicit)) {
		p = write_bytes(p, " xmlns='", strlen(" xmlns='"));
		p = write_escaped(p, el->ns, strlen(el->ns), 1);
		*p++ = '\'';
	}
	for (guint i = 0; i < el->n_attrs; i++) {
		const Attr *a = &el->attrs[i];

		if (a->ns != NULL)
			p = write_attr_prefix(p, a, i);
		else
			*p++ = ' ';
		p = write_bytes(p, a->name, strlen(a->name));
		p = write_bytes(p, "='", 2);
		if (a == mark)
			*mark_pos = p;
		p = write_escaped(p, a->value, strlen(a->value), 1);
		*p++ = '\'';
	}
	if (el->first == NULL)
		return write_bytes(p, "/>", 2);
	*p++ = '>';
	for (const Node *c = el->first; c != NULL; c = c->next) {
		if (c->is_text) {
			const TextNode *t = (const TextNode *) c;

			p = write_escaped(p, t->text, t->len, 2);
		} else {
			p = element_write_marked(p, (const MagpieElement *) c, el->ns, FALSE, NULL,
			                         NULL);
		}
	}
	p = write_bytes(p, "</", 2);
	p = write_bytes(p, el->name, name_len);
	*p++ = '>';
	return p;
}

static char *
element_write(char *p, const MagpieElement *el, const char *parent_ns, gboolean ns_implicit)
{
	return element_write_marked(p, el, parent_ns, ns_implicit, NULL, NULL);
}

static void
element_serialize(const MagpieElement *el, const char *parent_ns, gboolean ns_implicit,
                  GString *out)
{
	gsize old = out->len;
	gsize size = element_size(el, parent_ns, ns_implicit);

	g_string_set_size(out, old + size);
	char *end = element_write(out->str + old, el, parent_ns, ns_implicit);
	g_assert(end == out->str + old + size);
}

void
magpie_element_serialize(const MagpieElement *el, const char *parent_ns, GString *out)
{
	g_return_if_fail(el != NULL);
	g_return_if_fail(out != NULL);

	element_serialize(el, parent_ns ? parent_ns : "", FALSE, out);
}

static gboolean
is_content_ns(const char *ns)
{
	return strcmp(ns, MAGPIE_NS_CLIENT) == 0 || strcmp(ns, MAGPIE_NS_SERVER) == 0;
}

static gboolean
root_ns_implicit(MagpieStanza *stanza, const char *stream_ns)
{
	const char *ns = stanza->root->ns;

	return strcmp(ns, stream_ns) == 0 || (is_content_ns(ns) && is_content_ns(stream_ns));
}

void
magpie_stanza_serialize(MagpieStanza *stanza, const char *stream_ns, GString *out)
{
	g_return_if_fail(stanza != NULL);
	g_return_if_fail(out != NULL);

	if (stream_ns == NULL)
		stream_ns = "";
	element_serialize(stanza->root, stream_ns, root_ns_implicit(stanza, stream_ns), out);
}

/* The pieces of a stanza that differs from its spliceable bytes only by
 * the root's 'to' value: the bytes before the old value, the new value
 * (unescaped), the bytes after the old value. */
static void
splice_layout(MagpieStanza *stanza, struct iovec parts[3])
{
	const char *to = magpie_element_get_attr(stanza->root, "to");
	gsize old_size;
	const char *old = g_bytes_get_data(stanza->spliceable, &old_size);

	parts[0].iov_base = (void *) old;
	parts[0].iov_len = stanza->to_off;
	parts[1].iov_base = (void *) to;
	parts[1].iov_len = strlen(to);
	parts[2].iov_base = (void *) (old + stanza->to_off + stanza->to_len);
	parts[2].iov_len = old_size - stanza->to_off - stanza->to_len;
}

gboolean
magpie_stanza_splice_parts_internal(MagpieStanza *stanza, struct iovec parts[3])
{
	if (stanza->bytes != NULL || stanza->spliceable == NULL)
		return FALSE;
	splice_layout(stanza, parts);
	for (gsize i = 0; i < parts[1].iov_len; i++) {
		if (escape_class[((const guchar *) parts[1].iov_base)[i]] >= 1)
			return FALSE; /* written escaped: splice_to() */
	}
	return TRUE;
}

static GBytes *
splice_to(MagpieStanza *stanza)
{
	struct iovec parts[3];

	splice_layout(stanza, parts);
	gsize size = parts[0].iov_len + escaped_size(parts[1].iov_base, parts[1].iov_len, 1) +
	             parts[2].iov_len;
	char *buf = g_malloc(size);
	char *p = write_bytes(buf, parts[0].iov_base, parts[0].iov_len);

	p = write_escaped(p, parts[1].iov_base, parts[1].iov_len, 1);
	p = write_bytes(p, parts[2].iov_base, parts[2].iov_len);
	g_assert(p == buf + size);
	stanza->bytes = g_bytes_new_take(buf, size);
	return stanza->bytes;
}

guint
magpie_stanza_generation(MagpieStanza *stanza)
{
	return stanza->generation;
}

gboolean
magpie_stanza_is_shared(MagpieStanza *stanza)
{
	return g_atomic_int_get(&stanza->refcount) > 1;
}

GBytes *
magpie_stanza_to_bytes(MagpieStanza *stanza)
{
	g_return_val_if_fail(stanza != NULL, NULL);

	if (stanza->bytes != NULL)
		return stanza->bytes;
	if (stanza->spliceable != NULL)
		return splice_to(stanza);
	gboolean implicit = root_ns_implicit(stanza, MAGPIE_NS_CLIENT);
	gsize size = element_size(stanza->root, MAGPIE_NS_CLIENT, implicit);
	char *buf = g_malloc(size);
	const Attr *to = element_find_attr(stanza->root, "to");
	char *to_pos = NULL;
	char *end =
	        element_write_marked(buf, stanza->root, MAGPIE_NS_CLIENT, implicit, to, &to_pos);
	g_assert(end == buf + size);
	if (to_pos != NULL) {
		stanza->to_off = to_pos - buf;
		stanza->to_len = escaped_size(to->value, strlen(to->value), 1);
	} else {
		stanza->to_off = NO_TO_OFF;
	}
	stanza->bytes = g_bytes_new_take(buf, size);
	return stanza->bytes;
}

/* Parsing one element: a synthetic stream around it, so the restrictions
 * are exactly those of a stream. */

typedef struct {
	MagpieStanza *stanza;
	guint count;
	char *error;
} ParseState;

static void
parse_on_stanza(gpointer user_data, MagpieStanza *stanza)
{
	ParseState *ps = user_data;

	if (ps->count++ == 0)
		ps->stanza = magpie_stanza_ref(stanza);
}

static void
parse_on_error(gpointer user_data, const char *condition, const char *text)
{
	ParseState *ps = user_data;

	if (ps->error == NULL)
		ps->error = g_strdup_printf("%s: %s", condition, text);
}

MagpieStanza *
magpie_stanza_parse(const char *xml, gssize len, const char *default_ns, GError **error)
{
	static const MagpieXmlStreamCallbacks callbacks = {
		.stanza = parse_on_stanza,
		.error = parse_on_error,
	};
	MagpieXmlStreamLimits limits = { 0 };
	ParseState ps = { 0 };
	MagpieXmlStream *xs;
	GString *header;
	gsize n;

	g_return_val_if_fail(xml != NULL, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);

	n = len < 0 ? strlen(xml) : (gsize) len;
	limits.max_stanza_size = MAX(n + 64, (gsize) 256 * 1024);
	limits.max_bytes_without_event = limits.max_stanza_size;
	limits.max_depth = 64;
	xs = magpie_xml_stream_new(&callbacks, &ps, &limits);

	header = g_string_new("<stream:stream xmlns:stream='" MAGPIE_NS_STREAM "'");
	if (default_ns != NULL) {
		g_string_append(header, " xmlns='");
		append_escaped(header, default_ns, strlen(default_ns), 1);
		g_string_append_c(header, '\'');
	}
	g_string_append_c(header, '>');
	magpie_xml_stream_feed(xs, header->str, header->len);
	g_string_free(header, TRUE);
	magpie_xml_stream_feed(xs, xml, n);
	/* Stanzas are delivered at their end tag; a whitespace-only tail is
	 * fine, anything still open is not. */
	if (ps.error == NULL && ps.count == 1 && !magpie_xml_stream_at_boundary(xs))
		ps.error = g_strdup("not-well-formed: trailing data after the element");
	magpie_xml_stream_free(xs);

	if (ps.error == NULL && ps.count != 1)
		ps.error = g_strdup_printf("not-well-formed: %s",
		                           ps.count == 0 ? "no complete element"
		                                         : "more than one element");
	if (ps.error != NULL) {
		g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_PARSE, "%s", ps.error);
		g_free(ps.error);
		g_clear_pointer(&ps.stanza, magpie_stanza_unref);
		return NULL;
	}
	return ps.stanza;
}
