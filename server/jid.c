/* JIDs: RFC 7622 structure, prepared with the stringprep profiles that
 * deployed servers still use (nodeprep, nameprep, resourceprep; RFC 3920).
 *
 * A JID is one allocation: the struct, then "full\0" with node, domain and
 * resource pointing into a second copy "node\0domain\0resource\0" and the
 * bare form. ASCII parts, by far the most common, skip libidn: for ASCII
 * the three profiles reduce to the checks below (tests compare both). */
#include <string.h>

#include <gio/gio.h>
#include <stringprep.h>

#include <magpie/jid.h>

#define JID_PART_MAX 1023
/* Preparation can only shrink an input by dropping "mapped to nothing"
 * characters; anything this long is not worth preparing. */
#define JID_INPUT_MAX (4 * JID_PART_MAX)

struct _MagpieJid {
	gint refcount;
	guint hash;
	const char *node; /* NULL if none */
	const char *domain;
	const char *resource; /* NULL if none */
	const char *bare;
	char full[]; /* full form, then bare form, then the parts */
};

G_DEFINE_QUARK(magpie - jid - error - quark, magpie_jid_error)

typedef enum {
	PART_NODE,
	PART_DOMAIN,
	PART_RESOURCE,
} JidPart;

static const char *const part_names[] = { "localpart", "domainpart", "resourcepart" };
static const MagpieJidError part_errors[] = {
	MAGPIE_JID_ERROR_NODEPREP,
	MAGPIE_JID_ERROR_NAMEPREP,
	MAGPIE_JID_ERROR_RESOURCEPREP,
};

/* RFC 3920 Appendix A.5: nodeprep's additional prohibited ASCII. */
static gboolean
is_node_prohibited_ascii(guchar c)
{
	return c <= 0x20 || c == 0x7f || c == '"' || c == '&' || c == '\'' || c == '/' ||
	       c == ':' || c == '<' || c == '>' || c == '@';
}

/* Returns a newly allocated prepared ASCII part, or NULL when @s has a
 * non-ASCII byte (the caller then uses libidn). *bad_out is set when the
 * part is ASCII but invalid. */
static char *
prep_ascii(JidPart part, const char *s, gsize len, gboolean *bad_out)
{
	char *out;

	*bad_out = FALSE;
	for (gsize i = 0; i < len; i++) {
		if ((guchar) s[i] >= 0x80)
			return NULL;
	}
	out = g_malloc(len + 1);
	for (gsize i = 0; i < len; i++) {
		guchar c = s[i];

		switch (part) {
		case PART_NODE:
			if (is_node_prohibited_ascii(c))
				*bad_out = TRUE;
			c = g_ascii_tolower(c);
			break;
		case PART_DOMAIN:
			/* nameprep maps case; STD3 leaves letters, digits,
			 * hyphen and the dots separating labels. */
			c = g_ascii_tolower(c);
			if (!g_ascii_isalnum(c) && c != '-' && c != '.')
				*bad_out = TRUE;
			break;
		case PART_RESOURCE:
			if (c < 0x20 || c == 0x7f)
				*bad_out = TRUE;
			break;
		}
		out[i] = c;
	}
	out[len] = '\0';
	if (*bad_out)
		g_clear_pointer(&out, g_free);
	return out;
}

static gboolean
domain_labels_ok(const char *d)
{
	/* No empty labels: "a..b", ".a" (a trailing dot was already
	 * stripped once). ASCII characters must be STD3 (LDH). */
	if (d[0] == '.')
		return FALSE;
	for (const char *p = d; *p != '\0'; p++) {
		guchar c = *p;

		if (c == '.' && (p[1] == '.' || p[1] == '\0'))
			return FALSE;
		if (c < 0x80 && !g_ascii_isalnum(c) && c != '-' && c != '.')
			return FALSE;
	}
	return TRUE;
}

static char *
prep_part(JidPart part, const char *s, gsize len, GError **error)
{
	static const Stringprep_profile *const profiles[] = {
		stringprep_xmpp_nodeprep,
		stringprep_nameprep,
		stringprep_xmpp_resourceprep,
	};
	/* Deployed servers refuse unassigned code points in stored
	 * identifiers (node, domain); resources are more lenient. */
	static const Stringprep_profile_flags flags[] = {
		STRINGPREP_NO_UNASSIGNED,
		STRINGPREP_NO_UNASSIGNED,
		0,
	};
	gboolean bad;
	char *out;
	gsize cap;
	int rc;

	if (len == 0) {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED, "empty %s",
		            part_names[part]);
		return NULL;
	}
	if (len > JID_INPUT_MAX) {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_TOO_LONG,
		            "%s longer than %d bytes", part_names[part], JID_PART_MAX);
		return NULL;
	}

	out = prep_ascii(part, s, len, &bad);
	if (out == NULL && !bad) {
		if (!g_utf8_validate(s, len, NULL)) {
			g_set_error(error, MAGPIE_JID_ERROR, part_errors[part],
			            "%s is not valid UTF-8", part_names[part]);
			return NULL;
		}
		cap = MAX(len * 4 + 16, (gsize) 64);
		for (;;) {
			out = g_malloc(cap);
			memcpy(out, s, len);
			out[len] = '\0';
			rc = stringprep(out, cap, flags[part], profiles[part]);
			if (rc != STRINGPREP_TOO_SMALL_BUFFER || cap > 64 * JID_INPUT_MAX)
				break;
			g_free(out);
			cap *= 4;
		}
		if (rc != STRINGPREP_OK) {
			g_set_error(error, MAGPIE_JID_ERROR, part_errors[part], "%s: %s",
			            part_names[part], stringprep_strerror(rc));
			g_free(out);
			return NULL;
		}
		if (part == PART_DOMAIN && !domain_labels_ok(out))
			bad = TRUE;
	} else if (out != NULL && part == PART_DOMAIN && !domain_labels_ok(out)) {
		bad = TRUE;
	}
	if (bad) {
		g_set_error(error, MAGPIE_JID_ERROR, part_errors[part],
		            "%s has prohibited characters", part_names[part]);
		g_free(out);
		return NULL;
	}
	if (out[0] == '\0') {
		/* e.g. only characters that map to nothing */
		g_set_error(error, MAGPIE_JID_ERROR, part_errors[part],
		            "%s empty after preparation", part_names[part]);
		g_free(out);
		return NULL;
	}
	if (strlen(out) > JID_PART_MAX) {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_TOO_LONG,
		            "%s longer than %d bytes", part_names[part], JID_PART_MAX);
		g_free(out);
		return NULL;
	}
	return out;
}

/* RFC 7622 §3.2: IP literals are taken as they are (IPv6 lowercased). */
static char *
prep_domain(const char *s, gsize len, GError **error)
{
	if (len > 0 && s[len - 1] == '.')
		len--; /* one trailing dot: the DNS root label */
	if (len > 2 && s[0] == '[' && s[len - 1] == ']') {
		g_autofree char *addr = g_strndup(s + 1, len - 2);
		g_autoptr(GInetAddress) inet = g_inet_address_new_from_string(addr);

		if (inet == NULL || g_inet_address_get_family(inet) != G_SOCKET_FAMILY_IPV6 ||
		    strchr(addr, '%') != NULL) {
			g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_NAMEPREP,
			            "invalid IPv6 literal");
			return NULL;
		}
		return g_ascii_strdown(s, len);
	}
	return prep_part(PART_DOMAIN, s, len, error);
}

static MagpieJid *
jid_build(const char *node, const char *domain, const char *resource)
{
	gsize nl = node ? strlen(node) : 0;
	gsize dl = strlen(domain);
	gsize rl = resource ? strlen(resource) : 0;
	gsize bare_len = (node ? nl + 1 : 0) + dl;
	gsize full_len = bare_len + (resource ? rl + 1 : 0);
	MagpieJid *jid = g_malloc(sizeof(MagpieJid) + full_len + 1 + bare_len + 1 + nl + 1 + dl +
	                          1 + rl + 1);
	char *p = jid->full;

	jid->refcount = 1;
	if (node) {
		memcpy(p, node, nl);
		p += nl;
		*p++ = '@';
	}
	memcpy(p, domain, dl);
	p += dl;
	if (resource) {
		*p++ = '/';
		memcpy(p, resource, rl);
		p += rl;
	}
	*p++ = '\0';
	jid->bare = p;
	memcpy(p, jid->full, bare_len);
	p += bare_len;
	*p++ = '\0';
	if (node) {
		jid->node = p;
		memcpy(p, node, nl + 1);
		p += nl + 1;
	} else {
		jid->node = NULL;
	}
	jid->domain = p;
	memcpy(p, domain, dl + 1);
	p += dl + 1;
	if (resource) {
		jid->resource = p;
		memcpy(p, resource, rl + 1);
	} else {
		jid->resource = NULL;
	}
	jid->hash = g_str_hash(jid->full);
	return jid;
}

static MagpieJid *
jid_prepare(const char *node, gsize node_len, const char *domain, gsize domain_len,
            const char *resource, gsize resource_len, GError **error)
{
	g_autofree char *n = NULL;
	g_autofree char *d = NULL;
	g_autofree char *r = NULL;

	d = prep_domain(domain, domain_len, error);
	if (d == NULL)
		return NULL;
	if (node != NULL && (n = prep_part(PART_NODE, node, node_len, error)) == NULL)
		return NULL;
	if (resource != NULL &&
	    (r = prep_part(PART_RESOURCE, resource, resource_len, error)) == NULL)
		return NULL;
	return jid_build(n, d, r);
}

MagpieJid *
magpie_jid_parse(const char *str, GError **error)
{
	const char *slash, *at, *domain;
	gsize local_len;

	g_return_val_if_fail(str != NULL, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);

	/* RFC 7622 §3.1: the resource starts at the first '/'; the node ends
	 * at the first '@' before it. */
	slash = strchr(str, '/');
	local_len = slash ? (gsize) (slash - str) : strlen(str);
	at = memchr(str, '@', local_len);
	if (slash != NULL && slash[1] == '\0') {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED,
		            "empty resourcepart");
		return NULL;
	}
	if (at != NULL && at == str) {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED, "empty localpart");
		return NULL;
	}
	domain = at ? at + 1 : str;
	if (domain == str + local_len || (str + local_len - domain == 1 && domain[0] == '.')) {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED,
		            "empty domainpart");
		return NULL;
	}
	return jid_prepare(at ? str : NULL, at ? (gsize) (at - str) : 0, domain,
	                   str + local_len - domain, slash ? slash + 1 : NULL,
	                   slash ? strlen(slash + 1) : 0, error);
}

MagpieJid *
magpie_jid_new(const char *node, const char *domain, const char *resource, GError **error)
{
	g_return_val_if_fail(domain != NULL, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);

	if (domain[0] == '\0' || (domain[0] == '.' && domain[1] == '\0')) {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED,
		            "empty domainpart");
		return NULL;
	}
	return jid_prepare(node, node ? strlen(node) : 0, domain, strlen(domain), resource,
	                   resource ? strlen(resource) : 0, error);
}

MagpieJid *
magpie_jid_ref(MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, NULL);

	g_atomic_int_inc(&jid->refcount);
	return jid;
}

void
magpie_jid_unref(MagpieJid *jid)
{
	g_return_if_fail(jid != NULL);

	if (g_atomic_int_dec_and_test(&jid->refcount))
		g_free(jid);
}

const char *
magpie_jid_node(const MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, NULL);

	return jid->node;
}

const char *
magpie_jid_domain(const MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, NULL);

	return jid->domain;
}

const char *
magpie_jid_resource(const MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, NULL);

	return jid->resource;
}

const char *
magpie_jid_string(const MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, NULL);

	return jid->full;
}

const char *
magpie_jid_bare_string(const MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, NULL);

	return jid->bare;
}

MagpieJid *
magpie_jid_bare(MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, NULL);

	if (jid->resource == NULL)
		return magpie_jid_ref(jid);
	return jid_build(jid->node, jid->domain, NULL);
}

MagpieJid *
magpie_jid_with_resource(MagpieJid *jid, const char *resource, GError **error)
{
	g_autofree char *r = NULL;

	g_return_val_if_fail(jid != NULL, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);

	if (resource == NULL)
		return magpie_jid_bare(jid);
	r = prep_part(PART_RESOURCE, resource, strlen(resource), error);
	if (r == NULL)
		return NULL;
	return jid_build(jid->node, jid->domain, r);
}

gboolean
magpie_jid_is_bare(const MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, FALSE);

	return jid->resource == NULL;
}

gboolean
magpie_jid_equal(const MagpieJid *a, const MagpieJid *b)
{
	g_return_val_if_fail(a != NULL && b != NULL, FALSE);

	return a == b || (a->hash == b->hash && strcmp(a->full, b->full) == 0);
}

gboolean
magpie_jid_bare_equal(const MagpieJid *a, const MagpieJid *b)
{
	g_return_val_if_fail(a != NULL && b != NULL, FALSE);

	return a == b || strcmp(a->bare, b->bare) == 0;
}

guint
magpie_jid_hash(const MagpieJid *jid)
{
	g_return_val_if_fail(jid != NULL, 0);

	return jid->hash;
}

char *
magpie_jid_nodeprep(const char *node, GError **error)
{
	g_return_val_if_fail(node != NULL, NULL);

	return prep_part(PART_NODE, node, strlen(node), error);
}

char *
magpie_jid_nameprep(const char *domain, GError **error)
{
	g_return_val_if_fail(domain != NULL, NULL);

	if (domain[0] == '\0') {
		g_set_error(error, MAGPIE_JID_ERROR, MAGPIE_JID_ERROR_MALFORMED,
		            "empty domainpart");
		return NULL;
	}
	return prep_domain(domain, strlen(domain), error);
}

char *
magpie_jid_resourceprep(const char *resource, GError **error)
{
	g_return_val_if_fail(resource != NULL, NULL);

	return prep_part(PART_RESOURCE, resource, strlen(resource), error);
}
