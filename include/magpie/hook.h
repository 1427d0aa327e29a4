/* Hooks: named events, handlers in priority bands, CONTINUE/STOP/PENDING. */
#pragma once

#include <magpie/stanza.h>
#include <magpie/jid.h>

G_BEGIN_DECLS

typedef struct _MagpieModule MagpieModule;
typedef struct _MagpieSession MagpieSession;
typedef struct _MagpieStanzaEvent MagpieStanzaEvent;

typedef enum {
	MAGPIE_HOOK_CONTINUE, /* pass the event on */
	MAGPIE_HOOK_STOP,     /* handled: no later handler, no default action */
	MAGPIE_HOOK_PENDING,  /* the handler holds a ref and calls magpie_hook_resume() */
} MagpieHookResult;

/* Lower runs first (like G_PRIORITY_*). Ties run in module load order. */
typedef enum {
	MAGPIE_PRIORITY_FIRST = -200,
	MAGPIE_PRIORITY_EARLY = -100,
	MAGPIE_PRIORITY_DEFAULT = 0,
	MAGPIE_PRIORITY_LATE = 100,
	MAGPIE_PRIORITY_FALLBACK = 200,
} MagpiePriority;

typedef MagpieHookResult (*MagpieHookFunc)(MagpieModule *mod, MagpieStanzaEvent *ev);

typedef struct {
	const char *event;
	MagpieHookFunc func;
	int priority;
} MagpieHookSpec;

/* Event accessors; all (transfer none). The stanza is borrowed: ref it to
 * keep it past the handler's return. */
MAGPIE_API const char *magpie_event_name(MagpieStanzaEvent *ev);
MAGPIE_API MagpieStanza *magpie_event_stanza(MagpieStanzaEvent *ev);
/* The session the stanza came from, or NULL (from s2s, a module, SQL...). */
MAGPIE_API MagpieSession *magpie_event_session(MagpieStanzaEvent *ev);
MAGPIE_API MagpieJid *magpie_event_from(MagpieStanzaEvent *ev);
MAGPIE_API MagpieJid *magpie_event_to(MagpieStanzaEvent *ev);

MAGPIE_API MagpieStanzaEvent *magpie_event_ref(MagpieStanzaEvent *ev);
MAGPIE_API void magpie_event_unref(MagpieStanzaEvent *ev);

/* Resume an event a handler answered PENDING for, with the result it would
 * have returned (CONTINUE or STOP). Runs the rest of the chain in a later
 * main-loop iteration. Consumes nothing: the handler still drops its own
 * ref with magpie_event_unref(). */
MAGPIE_API void magpie_hook_resume(MagpieStanzaEvent *ev, MagpieHookResult result);

/* Fire an event with no default action (e.g. a module's own events).
 * Handlers run now, up to the first PENDING. */
MAGPIE_API void magpie_hook_fire(const char *event, MagpieStanza *stanza, MagpieSession *session,
                                 MagpieJid *from, MagpieJid *to);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MagpieStanzaEvent, magpie_event_unref)

G_END_DECLS
