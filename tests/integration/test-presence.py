#!/usr/bin/python3
"""Presence: subscriptions (RFC 6121 section 3 and Appendix A), broadcast,
probes, directed presence (section 4) and live SQL (modules/presence)."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402
from rawclient import RawClient, q, NS_ROSTER  # noqa: E402


def item_of(push):
    return push.find(q("query", NS_ROSTER)).find(q("item", NS_ROSTER))


async def state(c, contact):
    """(subscription, ask) of contact in c's roster, None if absent."""
    items = await c.roster_items()
    it = items.get(contact)
    return None if it is None else (it.get("subscription"), it.get("ask"))


async def subscribe_and_approve(a, b):
    """a subscribes to b, b approves; waits for the end of the flow."""
    a.subscription("subscribe", b.bare)
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe"
                 and e.get("from") == a.bare, what="subscribe")
    b.subscription("subscribed", a.bare)
    await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribed"
                 and e.get("from") == b.bare, what="subscribed")
    await a.ping()
    await b.ping()


async def mutual(a, b):
    await subscribe_and_approve(a, b)
    await subscribe_and_approve(b, a)
    await asyncio.sleep(0.2)
    a.drain()
    b.drain()


@mt.test("subscribe: request, pushes, delivery; approve: To/From and presence (3.1)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    a.subscription("subscribe", b.jid)  # a full JID: stamped to the bare JID
    p = await a.push(b.bare, subscription="none", ask="subscribe")
    sub = await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe",
                       what="subscribe")
    mt.check_eq(sub.get("from"), a.bare, "subscribe from (bare, 3.1.2)")
    mt.check_eq(sub.get("to"), b.bare, "subscribe to")
    # None + Pending In: not shown in b's roster, not pushed (3.1.3)
    mt.check_eq(await state(b, a.bare), None, "b's roster before approval")
    await b.nothing(lambda e: e.tag == q("iq") and e.get("type") == "set", 0.3, "push to b")
    b.subscription("subscribed", a.bare)
    await b.push(a.bare, subscription="from")
    ok = await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribed",
                      what="subscribed")
    mt.check_eq(ok.get("from"), b.bare, "subscribed from")
    it = item_of(await a.push(b.bare, subscription="to"))
    mt.check(it.get("ask") is None, "ask left after approval")
    # 3.1.5: b's server sends b's presence to a
    await a.presence(frm=b.jid)
    mt.check_eq(await state(a, b.bare), ("to", None), "a's item")
    mt.check_eq(await state(b, a.bare), ("from", None), "b's item")
    # presence flows b -> a only
    b.send("<presence><show>away</show></presence>")
    pr = await a.presence(frm=b.jid)
    mt.check_eq(pr.findtext(q("show")), "away", "show")
    a.send("<presence><show>dnd</show></presence>")
    await b.no_presence(frm=a.bare)


@mt.test("mutual subscription gives Both, presence both ways (Appendix A)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    await mutual(a, b)
    mt.check_eq(await state(a, b.bare), ("both", None), "a's item")
    mt.check_eq(await state(b, a.bare), ("both", None), "b's item")
    a.send("<presence><status>hi from a</status></presence>")
    pr = await b.presence(frm=a.jid)
    mt.check_eq(pr.findtext(q("status")), "hi from a", "status")
    b.send("<presence><status>hi from b</status></presence>")
    await a.presence(frm=b.jid)


@mt.test("unsubscribe: Both -> From / To, unavailable follows (3.3)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    await mutual(a, b)
    a.subscription("unsubscribe", b.bare)
    await a.push(b.bare, subscription="from")
    u = await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "unsubscribe",
                     what="unsubscribe")
    mt.check_eq(u.get("from"), a.bare, "from")
    await b.push(a.bare, subscription="to")
    # 3.3.3: b's server sends unavailable from b's resources to a
    await a.presence(frm=b.jid, type="unavailable")
    b.send("<presence><status>after</status></presence>")
    await a.no_presence(frm=b.bare)
    a.send("<presence><status>still</status></presence>")
    await b.presence(frm=a.jid)


@mt.test("unsubscribed cancels the contact's subscription (3.2)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    await subscribe_and_approve(a, b)  # a: to, b: from
    a.drain()
    b.subscription("unsubscribed", a.bare)
    await b.push(a.bare, subscription="none")
    u = await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "unsubscribed",
                     what="unsubscribed")
    mt.check_eq(u.get("from"), b.bare, "from")
    await a.push(b.bare, subscription="none")
    await a.presence(frm=b.jid, type="unavailable")
    b.send("<presence><status>gone</status></presence>")
    await a.no_presence(frm=b.bare)


@mt.test("declining a request: None + Pending Out -> None (A.2.4, A.3.4)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    a.subscription("subscribe", b.bare)
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe")
    b.subscription("unsubscribed", a.bare)
    await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "unsubscribed")
    await a.push(b.bare, subscription="none", ask=None)
    mt.check_eq(await state(b, a.bare), None, "b's roster keeps no trace")
    # a subscribed stanza without a request is not delivered (A.3.3)
    b.subscription("subscribed", a.bare)  # this is a pre-approval now
    await a.nothing(lambda e: e.tag == q("presence") and e.get("type") == "subscribed", 0.8)


@mt.test("subscribe while already subscribed: nothing new (A.2.1, A.3.1, A.3.3)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    await subscribe_and_approve(a, b)
    b.drain()
    a.drain()
    a.subscription("subscribe", b.bare)
    # b's server answers subscribed itself (3.1.3); a is in To already, so
    # a's server does not deliver it (A.3.3)
    await b.nothing(lambda e: e.tag == q("presence") and e.get("type") == "subscribe", 0.8)
    await a.nothing(lambda e: e.tag == q("presence") and e.get("type") == "subscribed", 0.3)
    mt.check_eq(await state(a, b.bare), ("to", None), "a's item")


@mt.test("out of sync: a lost its state, b's server auto-replies subscribed (3.1.3)")
async def _():
    sb = mt.sandbox()
    a = await RawClient.login()
    b = await RawClient.login()
    await subscribe_and_approve(a, b)
    sb.psql("UPDATE roster_item SET subscription = 'none' "
            "WHERE username || '@' || host = :'p1' AND contact = :'p2'", a.bare, b.bare)
    await a.push(b.bare, subscription="none")
    a.drain()
    b.drain()
    a.subscription("subscribe", b.bare)
    await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribed"
                 and e.get("from") == b.bare, what="auto-reply subscribed")
    await a.push(b.bare, subscription="to", ask=None)
    await b.nothing(lambda e: e.tag == q("presence") and e.get("type") == "subscribe", 0.5)


@mt.test("a request to an offline user is delivered at each login until answered (3.1.3)")
async def _():
    a = await RawClient.login()
    bjid, bpw = mt.account("offline")
    a.subscription("subscribe", bjid)
    await a.push(bjid, ask="subscribe")
    await asyncio.sleep(0.3)
    for _ in range(2):
        b = await RawClient.login(bjid, bpw)
        sub = await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe",
                           what="stored subscribe")
        mt.check_eq(sub.get("from"), a.bare, "from")
        await b.close()
        await asyncio.sleep(0.3)
    b = await RawClient.login(bjid, bpw)
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe")
    b.subscription("subscribed", a.bare)
    await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribed")
    await b.close()
    b = await RawClient.login(bjid, bpw)
    await b.nothing(lambda e: e.tag == q("presence") and e.get("type") == "subscribe", 1.0)
    # not before initial presence
    b2 = await RawClient.login(bjid, bpw, presence=False)
    await b2.nothing(lambda e: e.tag == q("presence"), 0.5)


@mt.test("pre-approval: subscribed before the request, then automatic approval (3.4)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    b.subscription("subscribed", a.bare)
    it = item_of(await b.push(a.bare, approved="true"))
    mt.check_eq(it.get("subscription"), "none", "subscription of the pre-approved item")
    await a.nothing(lambda e: e.tag == q("presence") and e.get("type") == "subscribed", 0.8)
    a.subscription("subscribe", b.bare)
    await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribed"
                 and e.get("from") == b.bare, what="subscribed")
    await a.push(b.bare, subscription="to")
    it = item_of(await b.push(a.bare, subscription="from"))
    mt.check(it.get("approved") is None, "approved left once used")
    await b.nothing(lambda e: e.tag == q("presence") and e.get("type") == "subscribe", 0.5)
    await a.presence(frm=b.jid)


@mt.test("pre-approval can be cancelled with unsubscribed (3.4)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    b.subscription("subscribed", a.bare)
    await b.push(a.bare, approved="true")
    b.subscription("unsubscribed", a.bare)
    it = item_of(await b.push(a.bare, subscription="none"))
    mt.check(it.get("approved") is None, "approved after cancel")
    await a.nothing(lambda e: e.tag == q("presence") and e.get("type") == "unsubscribed", 0.5)
    a.subscription("subscribe", b.bare)
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe",
                 what="subscribe delivered after cancelled pre-approval")


@mt.test("both sides ask at once: Pending Out/In, then Both (A.2, A.3)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    a.subscription("subscribe", b.bare)
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe")
    b.subscription("subscribe", a.bare)
    await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribe")
    await b.push(a.bare, subscription="none", ask="subscribe")
    a.subscription("subscribed", b.bare)
    await a.push(b.bare, subscription="from", ask="subscribe")
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribed")
    b.subscription("subscribed", a.bare)
    await a.wait(lambda e: e.tag == q("presence") and e.get("type") == "subscribed")
    await a.push(b.bare, subscription="both")
    mt.check_eq(await state(b, a.bare), ("both", None), "b's item")


@mt.test("probes at login are answered with the contacts' presence (4.3)")
async def _():
    ajid, apw = mt.account("probe")
    a = await RawClient.login(ajid, apw)
    b = await RawClient.login()
    b.send("<presence><status>b is here</status></presence>")
    await mutual(a, b)
    await a.close()
    await b.presence(frm=a.jid, type="unavailable")
    a2 = await RawClient.login(ajid, apw)
    pr = await a2.presence(frm=b.jid)
    mt.check_eq(pr.findtext(q("status")), "b is here", "b's presence from the probe")
    await b.presence(frm=a2.jid)


@mt.test("presence probes from non-subscribers reveal nothing (4.3.2)")
async def _():
    a = await RawClient.login()
    c = await RawClient.login()
    c.send("<presence type='probe' to='%s'/>" % a.bare)
    await c.no_presence(frm=a.bare, timeout=0.8)


@mt.test("logout and a dropped connection send unavailable to subscribers (4.5)")
async def _():
    ajid, apw = mt.account("drop")
    a = await RawClient.login(ajid, apw)
    b = await RawClient.login()
    await mutual(a, b)
    a.send("<presence type='unavailable'><status>bye</status></presence>")
    pr = await b.presence(frm=a.jid, type="unavailable")
    mt.check_eq(pr.findtext(q("status")), "bye", "status of the unavailable")
    a.send("<presence/>")
    await b.presence(frm=a.jid)
    await a.close(abort=True)
    await b.presence(frm=a.jid, type="unavailable")
    a2 = await RawClient.login(ajid, apw)
    await b.presence(frm=a2.jid)
    await a2.close()
    await b.presence(frm=a2.jid, type="unavailable")


@mt.test("directed presence, then logout, sends unavailable to its recipient (4.6)")
async def _():
    a = await RawClient.login()
    c = await RawClient.login()
    a.send("<presence to='%s'><status>just for you</status></presence>" % c.bare)
    pr = await c.presence(frm=a.jid)
    mt.check_eq(pr.findtext(q("status")), "just for you", "directed status")
    await a.close(abort=True)
    await c.presence(frm=a.jid, type="unavailable")


@mt.test("directed unavailable ends the tracking (4.6.3)")
async def _():
    a = await RawClient.login()
    c = await RawClient.login()
    a.send("<presence to='%s'/>" % c.jid)
    await c.presence(frm=a.jid)
    a.send("<presence type='unavailable' to='%s'/>" % c.jid)
    await c.presence(frm=a.jid, type="unavailable")
    a.send("<presence type='unavailable'/>")
    await c.no_presence(frm=a.bare, type="unavailable", timeout=0.8)


@mt.test("a negative priority resource gets no bare-JID messages (RFC 6121 8.5.2.1.1)")
async def _():
    bjid, bpw = mt.account("neg")
    neg = await RawClient.login(bjid, bpw, priority=-1)
    pos = await RawClient.login(bjid, bpw, priority=0)
    a = await RawClient.login()
    a.send("<message to='%s' type='chat'><body>x</body></message>" % bjid)
    await pos.wait(lambda e: e.tag == q("message") and e.findtext(q("body")) == "x")
    await neg.nothing(lambda e: e.tag == q("message"), 0.8)


@mt.test("removing a subscribed contact sends unsubscribe and unsubscribed (2.5.3)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    await mutual(a, b)
    await a.roster_set("<item jid='%s' subscription='remove'/>" % b.bare)
    await a.push(b.bare, subscription="remove")
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "unsubscribe",
                 what="unsubscribe")
    await b.wait(lambda e: e.tag == q("presence") and e.get("type") == "unsubscribed",
                 what="unsubscribed")
    await b.presence(frm=a.jid, type="unavailable")
    await b.push(a.bare, subscription="none")
    mt.check_eq(await state(b, a.bare), ("none", None), "b's item")


@mt.test("live SQL: a subscription set to 'both' with psql shows in presence")
async def _():
    sb = mt.sandbox()
    a = await RawClient.login()
    b = await RawClient.login()
    b.send("<presence><status>b</status></presence>")
    a.send("<presence><status>a</status></presence>")
    await asyncio.sleep(0.2)
    sb.psql("SELECT magpie_roster_add(:'p1', :'p2', NULL, '{}', 'both'), "
            "magpie_roster_add(:'p2', :'p1', NULL, '{}', 'both')", a.bare, b.bare)
    await a.push(b.bare, subscription="both")
    await b.push(a.bare, subscription="both")
    pa = await a.presence(frm=b.jid)
    pb = await b.presence(frm=a.jid)
    mt.check_eq(pa.findtext(q("status")), "b", "b's status at a")
    mt.check_eq(pb.findtext(q("status")), "a", "a's status at b")
    # and later broadcasts follow the new state
    a.send("<presence><status>a2</status></presence>")
    await b.wait(lambda e: e.tag == q("presence") and e.get("from") == a.jid
                 and e.findtext(q("status")) == "a2", what="broadcast after the SQL change")
    # back to none in SQL: unavailable
    sb.psql("UPDATE roster_item SET subscription = 'none' WHERE username || '@' || host = :'p1'",
            a.bare)
    await a.push(b.bare, subscription="none")
    await b.presence(frm=a.jid, type="unavailable")
    await asyncio.sleep(0.2)
    b.drain()
    a.send("<presence><status>a3</status></presence>")
    await b.no_presence(frm=a.bare, timeout=0.8)


mt.main()
