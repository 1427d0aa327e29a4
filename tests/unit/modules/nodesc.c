/* Test module: exports no descriptor. */
#include <gmodule.h>

G_MODULE_EXPORT int magpie_test_nodesc_marker = 1;
