/* Server-wide counters for `magpiectl stats`. Plain globals: the main
 * loop is the only writer. */
#pragma once

#include <glib.h>

typedef struct {
	guint64 connections_total;
	guint connections_open;
	guint sessions_bound;
	guint64 stanzas_in;
	guint64 stanzas_out;
	guint64 bytes_in;
	guint64 bytes_out;
	guint64 auth_failures;
} MagpieStats;

extern MagpieStats magpie_stats;

/* Resident and heap memory of the process in KiB (from /proc and mallinfo2). */
void magpie_stats_memory(gsize *rss_kib_out, gsize *heap_kib_out);
