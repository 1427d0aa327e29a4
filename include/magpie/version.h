#pragma once

#include <glib.h>

#define MAGPIE_API __attribute__((visibility("default")))

#define MAGPIE_VERSION "0.1.0"

/* Bumped whenever MagpieModuleInfo or any MAGPIE_API signature changes. */
#define MAGPIE_MODULE_ABI_VERSION 1
