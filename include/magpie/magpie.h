/* Magpie module API: the one header a module includes.
 *
 * Everything a module may touch is declared under include/magpie/ and
 * marked MAGPIE_API; the daemon exports exactly these symbols (see
 * server/magpied.dynlist).
 */
#pragma once

#include <magpie/version.h>
#include <magpie/account.h>
#include <magpie/stanza.h>
#include <magpie/jid.h>
#include <magpie/events.h>
#include <magpie/hook.h>
#include <magpie/iq.h>
#include <magpie/session.h>
#include <magpie/config.h>
#include <magpie/pg.h>
#include <magpie/router.h>
#include <magpie/module.h>
