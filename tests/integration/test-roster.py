#!/usr/bin/python3
"""Rosters: RFC 6121 section 2 (get, set, push, remove, errors), roster
versioning (XEP-0237) and live SQL administration (modules/roster)."""

import asyncio
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402
from rawclient import RawClient, q, NS_ROSTER, error_condition, error_type, esc  # noqa: E402


def contact():
    return "%s@%s" % (mt.unique("c"), mt.sandbox().domain)


def query_of(iq):
    return iq.find(q("query", NS_ROSTER))


@mt.test("roster versioning is advertised after authentication (XEP-0237 3)")
async def _():
    import base64
    jid, pw = mt.account("feat")
    rs = await mt.RawStream.open()
    try:
        rs.header()
        await rs.read_until(r"</stream:features>")
        before = rs.buf
        mt.check("rosterver" not in before, "rosterver offered before TLS")
        rs.send("<starttls xmlns='%s'/>" % mt.NS_TLS)
        await rs.read_until(r"<proceed")
        await rs.starttls()
        rs.header()
        await rs.read_until(r"</stream:features>")
        pre = rs.buf
        mt.check("urn:xmpp:features:rosterver" not in pre, "rosterver offered before auth")
        blob = base64.b64encode(b"\0" + jid.split("@")[0].encode() + b"\0" + pw.encode())
        rs.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (mt.NS_SASL, blob.decode()))
        await rs.read_until(r"<success")
        rs.buf = ""
        rs.header()
        await rs.read_until(r"</stream:features>")
        post = rs.buf
        mt.check(re.search(r"<ver xmlns=['\"]urn:xmpp:features:rosterver['\"]\s*/>", post),
                 "no <ver xmlns='urn:xmpp:features:rosterver'/> in %r" % post)
    finally:
        rs.close()


@mt.test("an empty roster has a version and no items (2.2)")
async def _():
    a = await RawClient.login()
    r = a.roster_reply
    mt.check_eq(r.get("type"), "result", "type")
    query = query_of(r)
    mt.check(query is not None, "no query in the result")
    mt.check(query.get("ver") is not None, "no ver attribute")
    mt.check_eq(len(query), 0, "items")


@mt.test("roster set adds an item, pushed to every interested resource (2.3, 2.1.6)")
async def _():
    jid, pw = mt.account("multi")
    a1 = await RawClient.login(jid, pw)
    a2 = await RawClient.login(jid, pw)
    a3 = await RawClient.login(jid, pw, roster=False)  # not interested
    c = contact()
    r = await a1.roster_set("<item jid='%s' name='Nurse'><group>Servants</group>"
                            "<group>Friends</group></item>" % c)
    mt.check_eq(r.get("type"), "result", "roster set")
    ids = set()
    for x in (a1, a2):
        push = await x.push(c, subscription="none", name="Nurse")
        mt.check(push.get("id") and push.get("id") not in ids, "push ids unique")
        ids.add(push.get("id"))
        mt.check(push.get("from") in (None, x.bare), "push from %r" % push.get("from"))
        mt.check(query_of(push).get("ver"), "push without ver")
        item = query_of(push).find(q("item", NS_ROSTER))
        mt.check_eq(sorted(g.text for g in item.findall(q("group", NS_ROSTER))),
                    ["Friends", "Servants"], "groups")
        mt.check(item.get("ask") is None, "ask on a fresh item")
    await a3.nothing(lambda e: e.tag == q("iq") and e.get("type") == "set", 1.0,
                     "push to a resource that never asked for the roster")
    items = await a2.roster_items()
    mt.check(c in items, "item in the roster")
    mt.check_eq(items[c].get("name"), "Nurse", "name")
    mt.check_eq(items[c].get("subscription"), "none", "subscription")


@mt.test("roster set updates the name and groups; subscription/ask from a client are ignored")
async def _():
    a = await RawClient.login()
    c = contact()
    await a.roster_set("<item jid='%s' name='One'/>" % c)
    await a.push(c, name="One")
    r = await a.roster_set("<item jid='%s' name='Two' subscription='both' ask='subscribe' "
                           "approved='true'><group>G</group></item>" % c)
    mt.check_eq(r.get("type"), "result", "update")
    item = query_of(await a.push(c, name="Two")).find(q("item", NS_ROSTER))
    mt.check_eq(item.get("subscription"), "none", "subscription after a client set")
    mt.check(item.get("ask") is None, "ask after a client set")
    mt.check(item.get("approved") is None, "approved after a client set")
    # no name: the name goes away
    await a.roster_set("<item jid='%s'/>" % c)
    item = query_of(await a.push(c)).find(q("item", NS_ROSTER))
    mt.check(item.get("name") is None, "name removed")


@mt.test("roster remove pushes subscription='remove'; removing again is item-not-found (2.5)")
async def _():
    a = await RawClient.login()
    c = contact()
    await a.roster_set("<item jid='%s'/>" % c)
    await a.push(c)
    r = await a.roster_set("<item jid='%s' subscription='remove'/>" % c)
    mt.check_eq(r.get("type"), "result", "remove")
    await a.push(c, subscription="remove")
    mt.check(c not in await a.roster_items(), "item still there")
    r = await a.roster_set("<item jid='%s' subscription='remove'/>" % c)
    mt.check_eq(r.get("type"), "error", "second remove")
    mt.check_eq(error_condition(r), "item-not-found", "condition")
    mt.check_eq(error_type(r), "cancel", "error type")


@mt.test("roster set error cases of 2.3.3")
async def _():
    a = await RawClient.login()
    c = contact()
    cases = [
        ("<item jid='%s'/><item jid='%s'/>" % (c, contact()), "modify", "bad-request"),
        ("", "modify", "bad-request"),
        ("<item jid='%s'><group>X</group><group>X</group></item>" % c, "modify",
         "bad-request"),
        ("<item jid='%s'><group></group></item>" % c, "modify", "not-acceptable"),
        ("<item jid='%s' name='%s'/>" % (c, "n" * 1024), "modify", "not-acceptable"),
        ("<item jid='%s'><group>%s</group></item>" % (c, "g" * 1024), "modify",
         "not-acceptable"),
        ("<item jid='%s'>%s</item>" % (c, "".join("<group>g%d</group>" % i for i in range(51))),
         "modify", "not-acceptable"),
        ("<item jid='a@b@c'/>", "modify", "jid-malformed"),
        ("<item name='no jid'/>", "modify", "bad-request"),
        ("<item jid='%s/res'/>" % c, "modify", "bad-request"),
    ]
    for payload, etype, cond in cases:
        r = await a.roster_set(payload)
        mt.check_eq(r.get("type"), "error", "type for %s" % payload[:80])
        mt.check_eq(error_condition(r), cond, "condition for %s" % payload[:80])
        mt.check_eq(error_type(r), etype, "error type for %s" % payload[:80])
    # nothing was stored, nothing pushed
    mt.check_eq(await a.roster_items(), {}, "roster after the errors")
    await a.nothing(lambda e: e.tag == q("iq") and e.get("type") == "set", 0.5, "push")
    # the limits are inclusive: 1023 bytes of name, 50 groups are fine
    r = await a.roster_set("<item jid='%s' name='%s'>%s</item>" % (
        c, "\u00e9" * 511 + "n", "".join("<group>g%d</group>" % i for i in range(50))))
    mt.check_eq(r.get("type"), "result", "1023-byte name and 50 groups")


@mt.test("another user's roster is forbidden (2.3.3)")
async def _():
    a = await RawClient.login()
    b = await RawClient.login()
    r = await a.iq("get", "<query xmlns='jabber:iq:roster'/>", to=b.bare)
    mt.check_eq(r.get("type"), "error", "get type")
    mt.check_eq(error_condition(r), "forbidden", "get condition")
    r = await a.iq("set", "<query xmlns='jabber:iq:roster'><item jid='%s'/></query>"
                   % contact(), to=b.bare)
    mt.check_eq(error_condition(r), "forbidden", "set condition")
    mt.check_eq(error_type(r), "auth", "set error type")
    mt.check_eq(await b.roster_items(), {}, "b's roster")
    # to one's own bare JID is fine
    r = await a.iq("get", "<query xmlns='jabber:iq:roster'/>", to=a.bare)
    mt.check_eq(r.get("type"), "result", "own bare JID")


@mt.test("names and groups with XML and SQL special characters round-trip")
async def _():
    a = await RawClient.login()
    c = contact()
    name = "<b>&'\"{},\\ é 𝄞"
    groups = ['a"b', "c\\d", "{e,f}", "NULL", " spaced "]
    await a.roster_set("<item jid='%s' name='%s'>%s</item>" % (
        c, esc(name), "".join("<group>%s</group>" % esc(g) for g in groups)))
    items = await a.roster_items()
    mt.check_eq(items[c].get("name"), name, "name")
    mt.check_eq(sorted(g.text for g in items[c].findall(q("group", NS_ROSTER))),
                sorted(groups), "groups")


@mt.test("a full roster refuses new items with not-allowed (max-items)")
async def _():
    sb = mt.sandbox()
    with sb.conf_d("90-roster-test.conf", "[roster]\nenabled = true\nmax-items = 3\n"):
        await asyncio.sleep(0.5)
        a = await RawClient.login()
        cs = [contact() for _ in range(4)]
        for c in cs[:3]:
            r = await a.roster_set("<item jid='%s'/>" % c)
            mt.check_eq(r.get("type"), "result", "item within the limit")
        r = await a.roster_set("<item jid='%s'/>" % cs[3])
        mt.check_eq(r.get("type"), "error", "4th item")
        mt.check_eq(error_condition(r), "not-allowed", "condition")
        r = await a.roster_set("<item jid='%s' name='renamed'/>" % cs[0])
        mt.check_eq(r.get("type"), "result", "updating an item of a full roster")


@mt.test("roster versioning: same version gives an empty result (XEP-0237 4)")
async def _():
    a = await RawClient.login()
    await a.roster_set("<item jid='%s'/>" % contact())
    await a.push()
    ver = query_of(await a.roster()).get("ver")
    r = await a.roster(ver)
    mt.check_eq(r.get("type"), "result", "type")
    mt.check(query_of(r) is None or len(query_of(r)) == 0, "items sent for a current version")
    await a.nothing(lambda e: e.tag == q("iq") and e.get("type") == "set", 0.5, "push")


@mt.test("roster versioning: an older version gets the changes as pushes")
async def _():
    a = await RawClient.login()
    c1, c2, c3 = contact(), contact(), contact()
    await a.roster_set("<item jid='%s' name='one'/>" % c1)
    await a.push(c1)
    old = query_of(await a.roster()).get("ver")
    await a.roster_set("<item jid='%s' name='two'/>" % c2)
    await a.roster_set("<item jid='%s'/>" % c3)
    await a.roster_set("<item jid='%s' subscription='remove'/>" % c3)
    await a.roster_set("<item jid='%s' name='uno'/>" % c1)
    a.drain()
    current = query_of(await a.roster()).get("ver")
    mt.check(current != old, "version did not change")
    r = await a.roster(old)
    mt.check(query_of(r) is None or len(query_of(r)) == 0, "full roster for a known version")
    p1 = await a.push(c2, name="two")
    p2 = await a.push(c3, subscription="remove")
    p3 = await a.push(c1, name="uno")
    vers = [int(query_of(p).get("ver")) for p in (p1, p2, p3)]
    mt.check_eq(max(vers), int(current), "last push carries the current version")
    # an unknown version gets the whole roster
    r = await a.roster("bogus")
    mt.check_eq(sorted(i.get("jid") for i in query_of(r)), sorted([c1, c2]), "full roster")
    mt.check_eq(query_of(r).get("ver"), current, "ver of the full roster")


@mt.test("live SQL: rows inserted, updated and deleted with psql are pushed within a second")
async def _():
    sb = mt.sandbox()
    a = await RawClient.login()
    c = contact()
    t0 = time.monotonic()
    sb.psql("SELECT magpie_roster_add(:'p1', :'p2', 'From SQL', ARRAY['Ops'])", a.bare, c)
    item = query_of(await a.push(c, timeout=1.5, name="From SQL")).find(q("item", NS_ROSTER))
    mt.check(time.monotonic() - t0 < 1.5, "push too slow")
    mt.check_eq([g.text for g in item.findall(q("group", NS_ROSTER))], ["Ops"], "groups")
    host, user = a.bare.split("@")[1], a.bare.split("@")[0]
    sb.psql("UPDATE roster_item SET name = 'Renamed' WHERE host = :'p1' AND username = :'p2' "
            "AND contact = :'p3'", host, user, c)
    await a.push(c, timeout=1.5, name="Renamed")
    c2 = contact()
    sb.psql("INSERT INTO roster_item (host, username, contact, subscription) "
            "VALUES (:'p1', :'p2', :'p3', 'none')", host, user, c2)
    await a.push(c2, timeout=1.5, subscription="none")
    rows = sb.psql("SELECT owner, contact, name, subscription, ask, approved, groups "
                   "FROM magpie_roster_view WHERE owner = :'p1' ORDER BY contact", a.bare)
    mt.check_eq(len(rows), 2, "rows in magpie_roster_view")
    sb.psql("SELECT magpie_roster_remove(:'p1', :'p2')", a.bare, c)
    await a.push(c, timeout=1.5, subscription="remove")
    sb.psql("DELETE FROM roster_item WHERE host = :'p1' AND username = :'p2' AND contact = :'p3'",
            host, user, c2)
    await a.push(c2, timeout=1.5, subscription="remove")
    mt.check_eq(await a.roster_items(), {}, "roster after the SQL deletes")


@mt.test("deleting an account deletes its roster")
async def _():
    sb = mt.sandbox()
    a = await RawClient.login()
    await a.roster_set("<item jid='%s'/>" % contact())
    await a.close()
    sb.ctl("account", "delete", a.bare)
    rows = sb.psql("SELECT count(*) FROM roster_item WHERE username || '@' || host = :'p1'",
                   a.bare)
    mt.check_eq(rows, [["0"]], "rows left")


mt.main()
