/* Configuration files: magpie.conf, then conf.d/NAME.conf in lexical order,
 * merged into one GKeyFile. A later file's key replaces an earlier one;
 * "key+=a;b" appends to a list and "key-=a" removes from it. Every value
 * remembers the file it came from, so each problem names file, group and
 * key. */
#pragma once

#include <magpie/config.h>

G_BEGIN_DECLS

typedef struct _MagpieConfigFile MagpieConfigFile;

#define MAGPIE_CONFIG_ERROR (magpie_config_error_quark())
GQuark magpie_config_error_quark(void);
typedef enum {
	MAGPIE_CONFIG_ERROR_PARSE,   /* syntax: "FILE:LINE: ..." */
	MAGPIE_CONFIG_ERROR_INVALID, /* one or more problems; message lists them */
	MAGPIE_CONFIG_ERROR_IO,
} MagpieConfigError;

/* @path: a directory holding magpie.conf and conf.d/, or a file (then
 * conf.d/ beside it). Syntax errors fail; semantic checks are separate. */
MagpieConfigFile *magpie_config_file_load(const char *path, GError **error);
void magpie_config_file_free(MagpieConfigFile *cfg);
/* The path it was loaded from (for reload). */
const char *magpie_config_file_path(MagpieConfigFile *cfg);

/* Check the core groups ([core], [c2s], [tls], [auth], [database],
 * [limits], [host NAME]) against their schemas and add one line per
 * problem to @problems ("FILE: [GROUP] KEY: message"); warnings (unknown
 * keys) go to @warnings. Certificates and keys are checked for
 * readability here too. */
void magpie_config_file_check_core(MagpieConfigFile *cfg, GPtrArray *problems, GPtrArray *warnings);
/* Check a module group against its schema (same line format). */
void magpie_config_file_check_group(MagpieConfigFile *cfg, const char *group,
                                    const MagpieConfigKey *schema, GPtrArray *problems,
                                    GPtrArray *warnings);
/* Groups that are neither core groups nor [host ...] (module groups). */
GStrv magpie_config_file_module_groups(MagpieConfigFile *cfg);
gboolean magpie_config_file_module_enabled(MagpieConfigFile *cfg, const char *module);

/* Typed access with the schema's default when the key is absent. Values are
 * validated first by the check functions; these never fail. */
const char *magpie_config_file_string(MagpieConfigFile *cfg, const char *group, const char *key,
                                      const MagpieConfigKey *schema);
gint64 magpie_config_file_int(MagpieConfigFile *cfg, const char *group, const char *key,
                              const MagpieConfigKey *schema);
gboolean magpie_config_file_bool(MagpieConfigFile *cfg, const char *group, const char *key,
                                 const MagpieConfigKey *schema);
/* (transfer none) NULL-terminated. */
const char *const *magpie_config_file_strv(MagpieConfigFile *cfg, const char *group,
                                           const char *key, const MagpieConfigKey *schema);
/* The file a key came from, or NULL. */
const char *magpie_config_file_origin(MagpieConfigFile *cfg, const char *group, const char *key);
/* Virtual host names from [host NAME] groups and [core] hosts. */
const char *const *magpie_config_file_hosts(MagpieConfigFile *cfg);

/* The schemas of the core groups (for --print-config and typed access). */
const MagpieConfigKey *magpie_config_core_schema(const char *group);

/* The merged configuration with defaults filled in, as a GKeyFile text;
 * @module_schemas: group name -> const MagpieConfigKey * (may be NULL). */
char *magpie_config_file_print(MagpieConfigFile *cfg, GHashTable *module_schemas);

/* The configuration in force (for magpie_module_config_*()). */
MagpieConfigFile *magpie_config_get_active(void);
void magpie_config_set_active(MagpieConfigFile *cfg); /* takes ownership; frees the old one */

G_END_DECLS
