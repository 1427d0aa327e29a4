/* Event names. Hooking a name that is neither here nor declared by a loaded
 * module (magpie_module_declare_event()) fails the module's load. */
#pragma once

/* Every stanza entering the router, before its destination is looked at
 * (blocking, rate limits, carbons...). STOP drops it: the handler answered. */
#define MAGPIE_EVENT_STANZA_PRE "stanza.pre"
/* An IQ about to be dispatched to its (namespace, element) owner. */
#define MAGPIE_EVENT_IQ_PRE "iq.pre"

/* Stanzas addressed to a local user's bare JID. */
#define MAGPIE_EVENT_MESSAGE_BARE  "message.bare"
#define MAGPIE_EVENT_PRESENCE_BARE "presence.bare"
/* Addressed to a local user's full JID. */
#define MAGPIE_EVENT_MESSAGE_FULL  "message.full"
#define MAGPIE_EVENT_PRESENCE_FULL "presence.full"
/* Addressed to a local host (or no 'to' from a client). */
#define MAGPIE_EVENT_MESSAGE_HOST  "message.host"
#define MAGPIE_EVENT_PRESENCE_HOST "presence.host"
/* A chat/normal message for a local account with no available resource.
 * Unclaimed, the sender gets service-unavailable. */
#define MAGPIE_EVENT_MESSAGE_OFFLINE "message.offline"
/* Presence of type subscribe/subscribed/unsubscribe/unsubscribed/probe,
 * outbound (from a local user) and inbound (to a local user). */
#define MAGPIE_EVENT_PRESENCE_OUT "presence.out"
#define MAGPIE_EVENT_PRESENCE_IN  "presence.in"
/* Presence without 'to' from a client (available or unavailable), after the
 * core updated the session; also the implicit unavailable when a session
 * ends. Modules broadcast it to subscribers. */
#define MAGPIE_EVENT_PRESENCE_BROADCAST "presence.broadcast"

/* IQs by address kind, before the (namespace, element) owner is looked up
 * (host, bare JID) or the IQ is delivered (full JID). */
#define MAGPIE_EVENT_IQ_HOST "iq.host"
#define MAGPIE_EVENT_IQ_BARE "iq.bare"
#define MAGPIE_EVENT_IQ_FULL "iq.full"

/* Stream features being offered to a client (after TLS, before and after
 * authentication): the event's stanza is the <stream:features/> element;
 * handlers append their feature elements to its root. The event's session
 * tells the stage (magpie_session_is_authenticated()). Handlers must answer
 * at once: PENDING is not allowed here. */
#define MAGPIE_EVENT_STREAM_FEATURES "stream.features"

/* Session life cycle (no stanza, or the presence that caused it). */
#define MAGPIE_EVENT_SESSION_BOUND     "session.bound"     /* resource bound */
#define MAGPIE_EVENT_SESSION_AVAILABLE "session.available" /* initial presence */
#define MAGPIE_EVENT_SESSION_END       "session.end"       /* the stanza is NULL */

/* Account changes (stanza NULL; the event's 'from' is the account's bare JID),
 * fired from the database's NOTIFY, so for accounts made or deleted by
 * magpiectl, a module or SQL alike. */
#define MAGPIE_EVENT_USER_CREATED "user.created"
#define MAGPIE_EVENT_USER_DELETED "user.deleted"
