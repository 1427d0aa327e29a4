/* Module configuration: typed keys declared in the module descriptor and
 * read from the module's own conf.d group. */
#pragma once

#include <magpie/version.h>

G_BEGIN_DECLS

typedef struct _MagpieModule MagpieModule;

typedef enum {
	MAGPIE_CONFIG_BOOL,
	MAGPIE_CONFIG_INT,
	MAGPIE_CONFIG_STRING,
	MAGPIE_CONFIG_STRING_LIST,
	/* Written "500ms", "30s", "5m", "2h", "1d" (a bare number is seconds);
	 * read as MILLISECONDS by magpie_module_config_int(); min/max in ms too. */
	MAGPIE_CONFIG_DURATION,
	MAGPIE_CONFIG_SIZE, /* bytes; "512", "64k", "1M" */
} MagpieConfigType;

typedef struct {
	const char *key;
	MagpieConfigType type;
	const char *default_value; /* as it would be written in the file */
	gint64 min, max;           /* for INT, DURATION, SIZE; both 0 = unbounded */
	const char *doc;
} MagpieConfigKey;

/* Typed getters for the module's own keys; the value is the file's or the
 * declared default. Asking for an undeclared key is a programming error. */
MAGPIE_API gboolean magpie_module_config_bool(MagpieModule *mod, const char *key);
MAGPIE_API gint64 magpie_module_config_int(MagpieModule *mod, const char *key);
/* (transfer none) valid until the next config reload. */
MAGPIE_API const char *magpie_module_config_string(MagpieModule *mod, const char *key);
MAGPIE_API const char *const *magpie_module_config_strv(MagpieModule *mod, const char *key);

/* The virtual hosts served. (transfer none) NULL-terminated. */
MAGPIE_API const char *const *magpie_config_hosts(void);
MAGPIE_API gboolean magpie_config_is_local_host(const char *domain);

G_END_DECLS
