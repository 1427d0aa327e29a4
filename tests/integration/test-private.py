#!/usr/bin/python3
"""Private XML Storage (XEP-0049)."""

import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

NS = "jabber:iq:private"


async def iq(c, type_, payload_xml, to=None):
    """An IQ get/set with a raw payload; the reply, result or error."""
    stanza = c.Iq()
    stanza["type"] = type_
    if to:
        stanza["to"] = to
    stanza.append(ET.fromstring(payload_xml))
    try:
        return await stanza.send(timeout=mt.WAIT)
    except mt.IqError as e:
        return e.iq


def error_condition(r):
    """The defined condition, read from the XML: slixmpp 1.8 does not know
    RFC 6120's policy-violation."""
    err = r.xml.find("{jabber:client}error")
    for child in (err if err is not None else []):
        if child.tag.startswith("{%s}" % mt.NS_STANZAS) and not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return None


def check_error(r, condition):
    mt.check_eq(r["type"], "error", "type of %s" % r)
    mt.check_eq(error_condition(r), condition, "error condition")


BOOKMARKS = ("<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
             "<conference jid='room@conference.example.org' autojoin='true' name='A &amp; B'>"
             "<nick>al</nick></conference></storage></query>")


@mt.test("set, then get, returns the stored element; no 'to' and own bare JID alike")
async def _():
    alice = await mt.client()
    r = await iq(alice, "set", BOOKMARKS)
    mt.check_eq(r["type"], "result", "set")
    for to in (None, alice.boundjid.bare):
        r = await iq(alice, "get", "<query xmlns='%s'><storage xmlns='storage:bookmarks'/></query>"
                     % NS, to=to)
        mt.check_eq(r["type"], "result", "get")
        conf = r.xml.find("{%s}query/{storage:bookmarks}storage/{storage:bookmarks}conference"
                          % NS)
        mt.check(conf is not None, "no conference in %s" % r)
        mt.check_eq(conf.get("name"), "A & B", "name")
        mt.check_eq(conf.findtext("{storage:bookmarks}nick"), "al", "nick")


@mt.test("a second set replaces the element; other namespaces are separate")
async def _():
    alice = await mt.client()
    await iq(alice, "set", "<query xmlns='%s'><a xmlns='urn:x:one'><v>1</v></a></query>" % NS)
    await iq(alice, "set", "<query xmlns='%s'><b xmlns='urn:x:two'><v>2</v></b></query>" % NS)
    r = await iq(alice, "set", "<query xmlns='%s'><a xmlns='urn:x:one'><v>3</v></a></query>" % NS)
    mt.check_eq(r["type"], "result", "replace")
    r = await iq(alice, "get", "<query xmlns='%s'><a xmlns='urn:x:one'/></query>" % NS)
    mt.check_eq(r.xml.findtext("{%s}query/{urn:x:one}a/{urn:x:one}v" % NS), "3", "replaced")
    r = await iq(alice, "get", "<query xmlns='%s'><b xmlns='urn:x:two'/></query>" % NS)
    mt.check_eq(r.xml.findtext("{%s}query/{urn:x:two}b/{urn:x:two}v" % NS), "2", "other ns")
    rows = mt.sandbox().psql("SELECT count(*) FROM private_storage WHERE username || '@' || host"
                             " = :'p1'", alice.boundjid.bare)
    mt.check_eq(rows, [["2"]], "rows in private_storage")


@mt.test("get of a namespace with nothing stored returns the empty element")
async def _():
    alice = await mt.client()
    r = await iq(alice, "get", "<query xmlns='%s'><prefs xmlns='urn:x:nothing'/></query>" % NS)
    mt.check_eq(r["type"], "result", "type")
    el = r.xml.find("{%s}query/{urn:x:nothing}prefs" % NS)
    mt.check(el is not None and len(el) == 0 and not (el.text or "").strip(),
             "not the empty element: %s" % r)


@mt.test("another user's private storage is forbidden, get and set, and so is the host")
async def _():
    alice, bob = await mt.clients(2)
    await iq(bob, "set", "<query xmlns='%s'><s xmlns='urn:x:secret'>bob's</s></query>" % NS)
    r = await iq(alice, "get", "<query xmlns='%s'><s xmlns='urn:x:secret'/></query>" % NS,
                 to=bob.boundjid.bare)
    check_error(r, "forbidden")
    r = await iq(alice, "set", "<query xmlns='%s'><s xmlns='urn:x:secret'>mine</s></query>" % NS,
                 to=bob.boundjid.bare)
    check_error(r, "forbidden")
    r = await iq(alice, "get", "<query xmlns='%s'><s xmlns='urn:x:secret'/></query>" % NS,
                 to=mt.sandbox().domain)
    check_error(r, "forbidden")
    r = await iq(bob, "get", "<query xmlns='%s'><s xmlns='urn:x:secret'/></query>" % NS)
    mt.check_eq(r.xml.findtext("{%s}query/{urn:x:secret}s" % NS), "bob's", "bob's data")


@mt.test("reserved namespaces get not-acceptable (jabber:client, jabber:server, jabber:iq:private)")
async def _():
    alice = await mt.client()
    for ns in ("jabber:client", "jabber:server", NS):
        for t in ("get", "set"):
            r = await iq(alice, t, "<query xmlns='%s'><x xmlns='%s'/></query>" % (NS, ns))
            check_error(r, "not-acceptable")
    # An unqualified child inherits jabber:iq:private.
    alice.send_raw("<iq type='set' id='unq'><query xmlns='%s'><x/></query></iq>" % NS)
    r = await iq(alice, "get", "<query xmlns='%s'><x/></query>" % NS)
    check_error(r, "not-acceptable")


@mt.test("no child, or two children, is a bad request")
async def _():
    alice = await mt.client()
    r = await iq(alice, "get", "<query xmlns='%s'/>" % NS)
    check_error(r, "bad-request")
    r = await iq(alice, "set", "<query xmlns='%s'><a xmlns='urn:x:a'/><b xmlns='urn:x:b'/></query>"
                 % NS)
    check_error(r, "bad-request")


@mt.test("an element over max-size (64k) is refused with not-acceptable; nothing is stored")
async def _():
    alice = await mt.client()
    big = "x" * (70 * 1024)
    r = await iq(alice, "set", "<query xmlns='%s'><big xmlns='urn:x:big'>%s</big></query>"
                 % (NS, big))
    check_error(r, "not-acceptable")
    r = await iq(alice, "get", "<query xmlns='%s'><big xmlns='urn:x:big'/></query>" % NS)
    mt.check_eq(r["type"], "result", "get after refusal")
    mt.check_eq(r.xml.findtext("{%s}query/{urn:x:big}big" % NS) or "", "", "stored text")
    # Just under the limit is fine.
    ok = "y" * (60 * 1024)
    r = await iq(alice, "set", "<query xmlns='%s'><big xmlns='urn:x:big'>%s</big></query>"
                 % (NS, ok))
    mt.check_eq(r["type"], "result", "60k element")


@mt.test("hostile content round-trips escaped: markup in text and attributes")
async def _():
    alice = await mt.client()
    payload = ("<query xmlns='%s'><h xmlns='urn:x:h' a='&lt;/h&gt;&amp;&quot;'>"
               "&lt;script&gt;&amp;amp;]]&gt;</h></query>" % NS)
    r = await iq(alice, "set", payload)
    mt.check_eq(r["type"], "result", "set")
    r = await iq(alice, "get", "<query xmlns='%s'><h xmlns='urn:x:h'/></query>" % NS)
    h = r.xml.find("{%s}query/{urn:x:h}h" % NS)
    mt.check_eq(h.get("a"), "</h>&\"", "attribute")
    mt.check_eq(h.text, "<script>&amp;]]>", "text")


@mt.test("max-entries limits the namespaces per account (config reload)")
async def _():
    sb = mt.sandbox()
    with sb.conf_d("99-test-private.conf", "[private]\nenabled = true\nmax-entries = 2\n"):
        alice = await mt.client()
        for n in (1, 2):
            r = await iq(alice, "set", "<query xmlns='%s'><e xmlns='urn:x:n%d'/></query>" % (NS, n))
            mt.check_eq(r["type"], "result", "entry %d" % n)
        r = await iq(alice, "set", "<query xmlns='%s'><e xmlns='urn:x:n3'/></query>" % NS)
        check_error(r, "policy-violation")
        # Replacing an existing one still works at the limit.
        r = await iq(alice, "set", "<query xmlns='%s'><e xmlns='urn:x:n2'>v</e></query>" % NS)
        mt.check_eq(r["type"], "result", "replace at the limit")


@mt.test("deleting the account deletes its private data")
async def _():
    sb = mt.sandbox()
    jid, pw = mt.account()
    alice = await mt.client(jid, pw)
    await iq(alice, "set", "<query xmlns='%s'><d xmlns='urn:x:d'/></query>" % NS)
    await alice.close()
    sb.ctl("account", "delete", jid)
    rows = sb.psql("SELECT count(*) FROM private_storage WHERE username || '@' || host = :'p1'",
                   jid)
    mt.check_eq(rows, [["0"]], "rows left")


@mt.test("jabber:iq:private is advertised in disco#info")
async def _():
    alice = await mt.client()
    info = await alice["xep_0030"].get_info(jid=mt.sandbox().domain, timeout=mt.WAIT)
    mt.check(NS in info["disco_info"]["features"], "not advertised")


mt.main()
