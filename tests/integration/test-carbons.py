#!/usr/bin/python3
"""Message Carbons (XEP-0280): received and sent copies to the account's
other enabled resources, private messages, disabled resources."""

import asyncio
import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS = "urn:xmpp:carbons:2"
NS_FWD = "urn:xmpp:forward:0"


async def iq_set(c, payload):
    stanza = c.Iq()
    stanza["type"] = "set"
    stanza.append(ET.fromstring(payload))
    try:
        return await stanza.send(timeout=mt.WAIT)
    except mt.IqError as e:
        return e.iq


async def enable(c):
    r = await iq_set(c, "<enable xmlns='%s'/>" % NS)
    mt.check_eq(r["type"], "result", "enable reply")


async def disable(c):
    r = await iq_set(c, "<disable xmlns='%s'/>" % NS)
    mt.check_eq(r["type"], "result", "disable reply")


def carbon(m, direction):
    """The forwarded <message/> of a <received/> or <sent/> carbon, or None."""
    return m.xml.find("{%s}%s/{%s}forwarded/{jabber:client}message" % (NS, direction, NS_FWD))


def body_of(el):
    b = el.find("{jabber:client}body")
    return b.text if b is not None else None


async def next_carbon(c, direction, body, timeout=mt.WAIT):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        m = await c.next_message(timeout=max(0.05, deadline - loop.time()))
        fwd = carbon(m, direction)
        if fwd is not None and body_of(fwd) == body:
            mt.check_eq(m["from"].full, c.boundjid.bare, "carbon from (the bare JID)")
            mt.check_eq(m["to"].full, c.boundjid.full, "carbon to")
            return m, fwd


async def nothing_about(c, body, timeout=1.5):
    """No message, original or carbon, carrying this body arrives."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return
        try:
            m = await c.next_message(timeout=left)
        except mt.Failure:
            return
        for d in ("received", "sent"):
            fwd = carbon(m, d)
            if fwd is not None and body_of(fwd) == body:
                raise mt.Failure("%s: unexpected %s carbon of %r" % (c.boundjid, d, body))
        if m["body"] == body:
            raise mt.Failure("%s: unexpected message %r" % (c.boundjid, body))


def watch_carbons(c):
    """slixmpp's "message" event skips messages without a body: queue the
    carbons (and bodiless messages) as well."""
    for d in ("received", "sent"):
        c.register_handler(Callback("carbon-" + d,
                                    MatchXPath("{jabber:client}message/{%s}%s" % (NS, d)),
                                    c.messages.put_nowait))


async def two_resources(prio_one=5, prio_two=1):
    jid, pw = mt.account()
    one = await mt.client(jid, pw, resource="one", presence=False)
    two = await mt.client(jid, pw, resource="two", presence=False)
    watch_carbons(one)
    watch_carbons(two)
    one.send_presence(ppriority=prio_one)
    two.send_presence(ppriority=prio_two)
    await one.sync()
    await two.sync()
    return one, two


@mt.test("disco#info lists urn:xmpp:carbons:2")
async def _():
    alice = await mt.client()
    info = await alice["xep_0030"].get_info(jid=mt.sandbox().domain)
    mt.check(NS in info["disco_info"]["features"], "feature missing")


@mt.test("enable and disable answer result, also when repeated")
async def _():
    alice = await mt.client()
    await enable(alice)
    await enable(alice)
    await disable(alice)
    await disable(alice)


@mt.test("enabling for another account is not allowed")
async def _():
    alice, bob = await mt.clients(2)
    stanza = alice.Iq()
    stanza["type"] = "set"
    stanza["to"] = bob.boundjid.bare
    stanza.append(ET.fromstring("<enable xmlns='%s'/>" % NS))
    try:
        r = await stanza.send(timeout=mt.WAIT)
    except mt.IqError as e:
        r = e.iq
    mt.check_eq(r["type"], "error", "type")
    mt.check_eq(mt.error_condition(r), "not-allowed", "condition")


@mt.test("a message to the bare JID: the top-priority resource gets it, the other a carbon")
async def _():
    one, two = await two_resources(5, 1)
    await enable(one)
    await enable(two)
    bob = await mt.client()
    bob.send_message(mto=one.boundjid.bare, mbody="to bare", mtype="chat")
    m = await one.next_message(body="to bare")
    mt.check(carbon(m, "received") is None, "the recipient got a carbon, not the original")
    _, fwd = await next_carbon(two, "received", "to bare")
    mt.check_eq(fwd.get("from"), bob.boundjid.full, "forwarded from")
    mt.check_eq(fwd.get("type"), "chat", "forwarded type")
    await nothing_about(one, "to bare", timeout=1.0)


@mt.test("a message to a full JID is copied to the other enabled resource")
async def _():
    one, two = await two_resources(1, 5)
    await enable(one)
    await enable(two)
    bob = await mt.client()
    bob.send_message(mto=one.boundjid.full, mbody="to full", mtype="chat")
    await one.next_message(body="to full")
    _, fwd = await next_carbon(two, "received", "to full")
    mt.check_eq(fwd.get("to"), one.boundjid.full, "forwarded to")
    # A normal message with a body is eligible too.
    bob.send_message(mto=one.boundjid.full, mbody="normal one", mtype="normal")
    await one.next_message(body="normal one")
    await next_carbon(two, "received", "normal one")


@mt.test("a sent message is copied as <sent/> to the other enabled resources")
async def _():
    one, two = await two_resources()
    await enable(two)  # the sender need not enable Carbons
    bob = await mt.client()
    one.send_message(mto=bob.boundjid.bare, mbody="I said this", mtype="chat")
    await bob.next_message(body="I said this")
    _, fwd = await next_carbon(two, "sent", "I said this")
    mt.check_eq(fwd.get("from"), one.boundjid.full, "forwarded from")
    mt.check_eq(fwd.get("to"), bob.boundjid.bare, "forwarded to")
    await nothing_about(one, "I said this", timeout=1.0)


@mt.test("private messages are not copied, and <private/> is removed on delivery")
async def _():
    one, two = await two_resources(5, 1)
    await enable(one)
    await enable(two)
    bob = await mt.client()
    bob.send_raw("<message to='%s' type='chat'><body>psst</body><private xmlns='%s'/></message>"
                 % (one.boundjid.bare, NS))
    m = await one.next_message(body="psst")
    mt.check(m.xml.find("{%s}private" % NS) is None, "<private/> was delivered")
    await nothing_about(two, "psst")
    one.send_raw("<message to='%s' type='chat'><body>secret</body><private xmlns='%s'/></message>"
                 % (bob.boundjid.bare, NS))
    await bob.next_message(body="secret")
    await nothing_about(two, "secret")


@mt.test("<no-copy/> and headline messages are not copied")
async def _():
    one, two = await two_resources(5, 1)
    await enable(one)
    await enable(two)
    bob = await mt.client()
    bob.send_raw("<message to='%s' type='chat'><body>nc</body><no-copy xmlns='urn:xmpp:hints'/>"
                 "</message>" % one.boundjid.full)
    await one.next_message(body="nc")
    bob.send_message(mto=one.boundjid.full, mbody="news", mtype="headline")
    await one.next_message(body="news")
    bob.send_message(mto=one.boundjid.full, mbody=None, mtype="normal")  # no body
    await nothing_about(two, "nc")
    await nothing_about(two, "news", timeout=0.5)


@mt.test("a disabled resource gets no copies")
async def _():
    one, two = await two_resources(5, 1)
    await enable(one)
    await enable(two)
    await disable(two)
    bob = await mt.client()
    bob.send_message(mto=one.boundjid.bare, mbody="not for two", mtype="chat")
    await one.next_message(body="not for two")
    one.send_message(mto=bob.boundjid.bare, mbody="nor this", mtype="chat")
    await bob.next_message(body="nor this")
    await nothing_about(two, "not for two")
    await nothing_about(two, "nor this", timeout=0.5)


@mt.test("a resource that never enabled Carbons gets no copies")
async def _():
    one, two = await two_resources(5, 1)
    await enable(one)
    bob = await mt.client()
    bob.send_message(mto=one.boundjid.bare, mbody="quiet", mtype="chat")
    await one.next_message(body="quiet")
    await nothing_about(two, "quiet")


@mt.test("a message to the bare JID with equal priorities reaches both, without carbons")
async def _():
    one, two = await two_resources(3, 3)
    await enable(one)
    await enable(two)
    bob = await mt.client()
    bob.send_message(mto=one.boundjid.bare, mbody="both", mtype="chat")
    m1 = await one.next_message(body="both")
    m2 = await two.next_message(body="both")
    mt.check(carbon(m1, "received") is None and carbon(m2, "received") is None, "originals")
    await nothing_about(one, "both", timeout=0.7)
    await nothing_about(two, "both", timeout=0.7)


mt.main()
