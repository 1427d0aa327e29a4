/* Server-wide counters and memory figures for `magpiectl stats`. */
#include "stats.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

MagpieStats magpie_stats;

/* VmRSS from /proc/self/status, in KiB; 0 when unavailable. */
static gsize
read_rss_kib(void)
{
	g_autofree char *status = NULL;
	const char *line;

	if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL))
		return 0;
	line = strstr(status, "\nVmRSS:");
	if (line == NULL)
		return 0;
	/* "VmRSS:\t   12345 kB" */
	return (gsize) g_ascii_strtoull(line + strlen("\nVmRSS:"), NULL, 10);
}

void
magpie_stats_memory(gsize *rss_kib_out, gsize *heap_kib_out)
{
	if (rss_kib_out != NULL)
		*rss_kib_out = read_rss_kib();
	if (heap_kib_out != NULL) {
		/* In use from the arenas plus mmap'd blocks; glibc only. */
		struct mallinfo2 mi = mallinfo2();

		*heap_kib_out = (mi.uordblks + mi.hblkhd) / 1024;
	}
}
