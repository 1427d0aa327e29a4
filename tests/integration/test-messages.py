#!/usr/bin/python3
"""Messages between accounts, and IQs the server answers itself."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402


@mt.test("a message to a bare JID is delivered")
async def _():
    alice, bob = await mt.clients(2)
    alice.send_message(mto=bob.boundjid.bare, mbody="hello bare", mtype="chat")
    m = await bob.next_message(body="hello bare")
    mt.check_eq(m["from"], alice.boundjid, "from")
    mt.check_eq(m["type"], "chat", "type")


@mt.test("a message to a full JID is delivered")
async def _():
    alice, bob = await mt.clients(2)
    alice.send_message(mto=bob.boundjid.full, mbody="hello full")
    m = await bob.next_message(body="hello full")
    mt.check_eq(m["from"], alice.boundjid, "from")


@mt.test("messages both ways keep their order")
async def _():
    alice, bob = await mt.clients(2)
    for i in range(20):
        alice.send_message(mto=bob.boundjid.full, mbody="n%d" % i)
    for i in range(20):
        m = await bob.next_message()
        mt.check_eq(m["body"], "n%d" % i, "body of message %d" % i)
    bob.send_message(mto=alice.boundjid.bare, mbody="back")
    await alice.next_message(body="back")


@mt.test("a message with a forged 'from' is never delivered as forged")
async def _():
    alice, bob = await mt.clients(2)
    alice.send_raw("<message to='%s' from='mallory@%s/x'><body>forged</body></message>"
                   % (bob.boundjid.full, mt.sandbox().domain))
    # RFC 6120 8.1.2.1 / 4.9.3.10: either the server stamps the real
    # sender, or it closes the sender's stream with <invalid-from/>.
    try:
        m = await bob.next_message(body="forged", timeout=3)
    except mt.Failure:
        err = await alice.next_stream_error(timeout=1)
        mt.check_eq(err["condition"], "invalid-from", "stream error of the forger")
        return
    mt.check_eq(m["from"], alice.boundjid, "from")


@mt.test("a message to an unknown local user is dropped or bounced (RFC 6121 8.5.2)")
async def _():
    alice = await mt.client()
    nobody = "%s@%s" % (mt.unique("ghost"), mt.sandbox().domain)
    alice.send_message(mto=nobody, mbody="anyone?", mtype="chat")
    # Either silence or <service-unavailable/>; anything else is wrong.
    try:
        m = await alice.next_message(timeout=2)
    except mt.Failure:
        return
    mt.check_eq(m["type"], "error", "type")
    mt.check_eq(mt.error_condition(m), "service-unavailable", "error condition")


@mt.test("an iq with an unknown namespace to the server gets service-unavailable")
async def _():
    alice = await mt.client()
    r = await alice.iq_get(mt.sandbox().domain, "<query xmlns='urn:example:nothing'/>")
    mt.check_eq(r["type"], "error", "type")
    mt.check_eq(mt.error_condition(r), "service-unavailable", "error condition")


@mt.test("an iq with an unknown namespace to a bare JID gets service-unavailable")
async def _():
    alice, bob = await mt.clients(2)
    r = await alice.iq_get(bob.boundjid.bare, "<query xmlns='urn:example:nothing'/>")
    mt.check_eq(r["type"], "error", "type")
    mt.check_eq(mt.error_condition(r), "service-unavailable", "error condition")


@mt.test("an iq to a full JID reaches that client")
async def _():
    alice, bob = await mt.clients(2)
    r = await alice.iq_get(bob.boundjid.full, "<query xmlns='jabber:iq:version'/>")
    mt.check_eq(r["type"], "result", "type")


@mt.test("ping (XEP-0199) to the server is answered")
async def _():
    alice = await mt.client()
    r = await alice.iq_get(mt.sandbox().domain, "<ping xmlns='urn:xmpp:ping'/>")
    mt.check_eq(r["type"], "result", "type")


@mt.test("version (XEP-0092) of the server is answered")
async def _():
    alice = await mt.client()
    r = await alice.iq_get(mt.sandbox().domain, "<query xmlns='jabber:iq:version'/>")
    mt.check_eq(r["type"], "result", "type")
    name = r["software_version"]["name"]
    mt.check(name, "no software name")
    mt.diag("server says it is %s %s" % (name, r["software_version"]["version"]))


@mt.test("disco#info of an account: the account and its subscribers only (RFC 6121 8.5.1)")
async def _():
    sb = mt.sandbox()
    info = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
    alice, bob, eve = await mt.clients(3)
    a = alice.boundjid.bare
    # The account itself.
    r = await alice.iq_get(a, info)
    mt.check_eq(r["type"], "result", "own account")
    # A stranger: the same answer as for an account that does not exist.
    r = await eve.iq_get(a, info)
    mt.check_eq(mt.error_condition(r), "service-unavailable", "stranger")
    r = await eve.iq_get("nobody-%s@%s" % (mt.unique("x"), sb.domain), info)
    mt.check_eq(mt.error_condition(r), "service-unavailable", "no such account")
    if sb.psql("SELECT to_regclass('magpie_roster_view') IS NOT NULL")[0][0] != "t":
        raise mt.Skip("the roster module is not loaded")
    # A contact allowed to see alice's presence.
    sb.psql("SELECT magpie_roster_add(:'p1', :'p2', NULL, '{}', 'from')", a, bob.boundjid.bare)
    r = await bob.iq_get(a, info)
    mt.check_eq(r["type"], "result", "subscriber")
    mt.check("account" in r.xml.find("{http://jabber.org/protocol/disco#info}query")
             .find("{http://jabber.org/protocol/disco#info}identity").get("category"),
             "account identity")


@mt.test("disco#info of the server is answered")
async def _():
    alice = await mt.client()
    info = await alice["xep_0030"].get_info(jid=mt.sandbox().domain, timeout=mt.WAIT)
    ids = info["disco_info"]["identities"]
    feats = info["disco_info"]["features"]
    mt.check(any(i[0] == "server" for i in ids), "no server identity: %r" % (ids,))
    mt.check("http://jabber.org/protocol/disco#info" in feats, "features: %r" % (feats,))
    mt.check("urn:xmpp:ping" in feats, "ping not advertised: %r" % (feats,))
    mt.check("jabber:iq:version" in feats, "version not advertised: %r" % (feats,))


@mt.test("an iq result nobody asked for gets no reply")
async def _():
    alice = await mt.client()
    alice.send_raw("<iq type='result' id='unsolicited' to='%s'/>" % mt.sandbox().domain)
    r = await alice.iq_get(mt.sandbox().domain, "<ping xmlns='urn:xmpp:ping'/>")
    mt.check_eq(r["type"], "result", "ping after the stray result")


mt.main()
