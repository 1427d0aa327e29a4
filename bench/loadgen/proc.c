/* What the benchmark reads about the servers from /proc. */
#include "loadgen.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* utime + stime of each process (all its threads), in seconds. */
double
proc_cpu_seconds(const GArray *pids)
{
	static long hz;
	double total = 0;
	guint i;

	if (hz == 0)
		hz = sysconf(_SC_CLK_TCK);
	for (i = 0; i < pids->len; i++) {
		g_autofree char *path =
		        g_strdup_printf("/proc/%d/stat", g_array_index(pids, int, i));
		g_autofree char *text = NULL;
		const char *p;
		unsigned long utime = 0, stime = 0;
		int field;

		if (!g_file_get_contents(path, &text, NULL, NULL))
			continue;
		/* The command name may hold spaces: fields start after ')'. */
		p = strrchr(text, ')');
		if (p == NULL)
			continue;
		p += 2;
		/* After ')': field 3 is the state; utime is field 14. */
		for (field = 3; field < 14 && p != NULL; field++) {
			p = strchr(p, ' ');
			if (p != NULL)
				p++;
		}
		if (p != NULL && sscanf(p, "%lu %lu", &utime, &stime) == 2)
			total += (double) (utime + stime) / hz;
	}
	return total;
}

/* Proportional set size (and resident set) summed over the processes. */
guint64
proc_pss_kb(const GArray *pids, guint64 *rss_kb)
{
	guint64 pss = 0, rss = 0;
	guint i;

	for (i = 0; i < pids->len; i++) {
		g_autofree char *path =
		        g_strdup_printf("/proc/%d/smaps_rollup", g_array_index(pids, int, i));
		g_autofree char *text = NULL;
		g_auto(GStrv) lines = NULL;
		char **l;

		if (!g_file_get_contents(path, &text, NULL, NULL))
			continue;
		lines = g_strsplit(text, "\n", -1);
		for (l = lines; *l != NULL; l++) {
			unsigned long long v;

			if (sscanf(*l, "Pss: %llu kB", &v) == 1)
				pss += v;
			else if (sscanf(*l, "Rss: %llu kB", &v) == 1)
				rss += v;
		}
	}
	if (rss_kb != NULL)
		*rss_kb = rss;
	return pss;
}
