#!/usr/bin/python3
"""Last Activity (XEP-0012): server uptime, users' last logout."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

NS = "jabber:iq:last"
QUERY = "<query xmlns='%s'/>" % NS


def seconds_and_text(r):
    mt.check_eq(r["type"], "result", "type of %s" % r)
    q = r.xml.find("{%s}query" % NS)
    mt.check(q is not None, "no <query/> in %s" % r)
    return int(q.get("seconds")), (q.text or "")


async def logout_with_status(jid, pw, status):
    """Log in, go available, then unavailable with a status, and leave."""
    c = await mt.client(jid, pw, resource="leaving")
    c.send_raw("<presence type='unavailable'><status>%s</status></presence>" % status)
    await c.sync()
    await c.close()


def roster_view_exists():
    rows = mt.sandbox().psql("SELECT to_regclass('magpie_roster_view') IS NOT NULL")
    return rows == [["t"]]


@mt.test("to the host: the server's uptime in seconds")
async def _():
    alice = await mt.client()
    secs, text = seconds_and_text(await alice.iq_get(mt.sandbox().domain, QUERY))
    mt.check(0 <= secs < 10 * 24 * 3600, "uptime %d" % secs)
    mt.check_eq(text, "", "text")


@mt.test("a user's own last logout: seconds and the status of the last unavailable presence")
async def _():
    jid, pw = mt.account("last")
    await logout_with_status(jid, pw, "Gone fishing &amp; back &lt;soon&gt;")
    await asyncio.sleep(1.2)
    # Logged in but not available: the last logout is what is known.
    me = await mt.client(jid, pw, resource="back", presence=False)
    secs, text = seconds_and_text(await me.iq_get(jid, QUERY))
    mt.check(1 <= secs < 30, "seconds %d" % secs)
    mt.check_eq(text, "Gone fishing & back <soon>", "status text")


@mt.test("a user with an available resource has 0 seconds")
async def _():
    jid, pw = mt.account("last")
    await logout_with_status(jid, pw, "earlier")
    me = await mt.client(jid, pw)
    secs, text = seconds_and_text(await me.iq_get(jid, QUERY))
    mt.check_eq(secs, 0, "seconds")
    mt.check_eq(text, "", "text")


@mt.test("a lost connection counts as a logout (no status)")
async def _():
    jid, pw = mt.account("last")
    c = await mt.client(jid, pw)
    c.abort()
    await asyncio.sleep(0.5)
    me = await mt.client(jid, pw, presence=False)
    secs, text = seconds_and_text(await me.iq_get(jid, QUERY))
    mt.check(0 <= secs < 30, "seconds %d" % secs)
    mt.check_eq(text, "", "text")


@mt.test("a stranger gets forbidden, for existing and unknown accounts alike")
async def _():
    jid, pw = mt.account("last")
    await logout_with_status(jid, pw, "private")
    stranger = await mt.client()
    r = await stranger.iq_get(jid, QUERY)
    mt.check_eq(r["type"], "error", "type")
    mt.check_eq(mt.error_condition(r), "forbidden", "condition")
    ghost = "%s@%s" % (mt.unique("ghost"), mt.sandbox().domain)
    r = await stranger.iq_get(ghost, QUERY)
    mt.check_eq(mt.error_condition(r), "forbidden", "condition for an unknown account")


@mt.test("an account that never logged out: item-not-found for itself")
async def _():
    jid, pw = mt.account("last")
    me = await mt.client(jid, pw, presence=False)
    r = await me.iq_get(jid, QUERY)
    mt.check_eq(mt.error_condition(r), "item-not-found", "condition")


@mt.test("a contact subscribed to the user's presence gets the last logout")
async def _():
    if not roster_view_exists():
        raise mt.Skip("no magpie_roster_view (roster module not loaded)")
    bob_jid, bob_pw = mt.account("bob")
    alice = await mt.client()
    bob = await mt.client(bob_jid, bob_pw)
    # Alice subscribes to Bob's presence; Bob approves: Bob's roster then
    # has Alice with subscription 'from'.
    alice.send_presence(pto=bob_jid, ptype="subscribe")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + mt.WAIT
    while True:
        p = await asyncio.wait_for(bob.presences.get(), max(0.1, deadline - loop.time()))
        if p["type"] == "subscribe":
            break
    bob.send_presence(pto=alice.boundjid.bare, ptype="subscribed")
    await bob.sync()
    for _ in range(50):
        rows = mt.sandbox().psql(
            "SELECT subscription FROM magpie_roster_view WHERE owner = :'p1' AND contact = :'p2'",
            bob_jid, alice.boundjid.bare)
        if rows and rows[0][0] in ("from", "both"):
            break
        await asyncio.sleep(0.1)
    else:
        raise mt.Failure("Bob's roster has no 'from' subscription for Alice: %r" % rows)
    bob.send_raw("<presence type='unavailable'><status>see you</status></presence>")
    await bob.sync()
    await bob.close()
    await asyncio.sleep(1.1)
    secs, text = seconds_and_text(await alice.iq_get(bob_jid, QUERY))
    mt.check(1 <= secs < 30, "seconds %d" % secs)
    mt.check_eq(text, "see you", "status text")


@mt.test("jabber:iq:last is advertised in disco#info")
async def _():
    alice = await mt.client()
    info = await alice["xep_0030"].get_info(jid=mt.sandbox().domain, timeout=mt.WAIT)
    mt.check(NS in info["disco_info"]["features"], "not advertised")


mt.main()
