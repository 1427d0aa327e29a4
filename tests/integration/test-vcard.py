#!/usr/bin/python3
"""vcard-temp (XEP-0054) and vCard-based avatars (XEP-0153)."""

import asyncio
import base64
import hashlib
import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

NS = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"


async def iq(c, type_, payload_xml, to=None):
    stanza = c.Iq()
    stanza["type"] = type_
    if to:
        stanza["to"] = to
    stanza.append(ET.fromstring(payload_xml))
    try:
        return await stanza.send(timeout=mt.WAIT)
    except mt.IqError as e:
        return e.iq


def vcard_xml(fn, photo=None, wrap=False):
    """A vCard with a full name and, optionally, a photo (bytes)."""
    p = ""
    if photo is not None:
        b64 = base64.b64encode(photo).decode()
        if wrap:  # clients wrap BINVAL at 76 columns
            b64 = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
        p = "<PHOTO><TYPE>image/png</TYPE><BINVAL>%s</BINVAL></PHOTO>" % b64
    return "<vCard xmlns='%s'><FN>%s</FN>%s</vCard>" % (NS, fn, p)


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def fn_of(r):
    mt.check_eq(r["type"], "result", "type of %s" % r)
    v = r.xml.find("{%s}vCard" % NS)
    mt.check(v is not None, "no vCard in %s" % r)
    return v.findtext("{%s}FN" % NS)


def photo_of(presence):
    """The XEP-0153 hash in a presence: None without <x/>, '' for <photo/>."""
    x = presence.xml.find("{%s}x" % NS_UPDATE)
    if x is None:
        return None
    return x.findtext("{%s}photo" % NS_UPDATE)


async def presence_with_photo(c, from_jid, want, timeout=mt.WAIT):
    """Wait for an available presence from from_jid whose photo hash is want."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = []
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise mt.Failure("%s: no presence from %s with photo %r; saw %r"
                             % (c.boundjid, from_jid, want, seen))
        try:
            p = await asyncio.wait_for(c.presences.get(), left)
        except asyncio.TimeoutError:
            continue
        if p["from"] != from_jid or p["type"] not in ("available", ""):
            continue
        seen.append(photo_of(p))
        if photo_of(p) == want:
            return p


def drain(c):
    while not c.presences.empty():
        c.presences.get_nowait()


@mt.test("set and get one's own vCard (no 'to' and own bare JID)")
async def _():
    alice = await mt.client()
    r = await iq(alice, "set", vcard_xml("Alice &amp; Co"))
    mt.check_eq(r["type"], "result", "set")
    mt.check_eq(fn_of(await iq(alice, "get", "<vCard xmlns='%s'/>" % NS)), "Alice & Co", "FN")
    mt.check_eq(fn_of(await iq(alice, "get", "<vCard xmlns='%s'/>" % NS,
                               to=alice.boundjid.bare)), "Alice & Co", "FN via bare JID")
    r = await iq(alice, "set", vcard_xml("Alice Two"))
    mt.check_eq(fn_of(await iq(alice, "get", "<vCard xmlns='%s'/>" % NS)), "Alice Two",
                "FN after replace")


@mt.test("one's own vCard when none is stored: an empty <vCard/>")
async def _():
    alice = await mt.client()
    r = await iq(alice, "get", "<vCard xmlns='%s'/>" % NS)
    mt.check_eq(r["type"], "result", "type")
    v = r.xml.find("{%s}vCard" % NS)
    mt.check(v is not None and len(v) == 0, "not an empty vCard: %s" % r)


@mt.test("another user's vCard; none stored and unknown account get the same error")
async def _():
    alice, bob = await mt.clients(2)
    await iq(bob, "set", vcard_xml("Bob"))
    mt.check_eq(fn_of(await iq(alice, "get", "<vCard xmlns='%s'/>" % NS, to=bob.boundjid.bare)),
                "Bob", "Bob's FN")
    carol = await mt.client()
    r1 = await iq(alice, "get", "<vCard xmlns='%s'/>" % NS, to=carol.boundjid.bare)
    r2 = await iq(alice, "get", "<vCard xmlns='%s'/>" % NS,
                  to="%s@%s" % (mt.unique("ghost"), mt.sandbox().domain))
    mt.check_eq(mt.error_condition(r1), "service-unavailable", "no vCard")
    mt.check_eq(mt.error_condition(r2), "service-unavailable", "no account")


@mt.test("setting another user's vCard is forbidden")
async def _():
    alice, bob = await mt.clients(2)
    await iq(bob, "set", vcard_xml("Bob"))
    r = await iq(alice, "set", vcard_xml("Mallory"), to=bob.boundjid.bare)
    mt.check_eq(mt.error_condition(r), "forbidden", "condition")
    r = await iq(alice, "set", vcard_xml("Mallory"), to=mt.sandbox().domain)
    mt.check_eq(mt.error_condition(r), "forbidden", "condition for the host")
    mt.check_eq(fn_of(await iq(bob, "get", "<vCard xmlns='%s'/>" % NS)), "Bob", "unchanged")


@mt.test("a vCard over max-size (64k) is refused with not-acceptable and not stored")
async def _():
    alice = await mt.client()
    await iq(alice, "set", vcard_xml("Small"))
    r = await iq(alice, "set", vcard_xml("Big", photo=os.urandom(60 * 1024)))
    mt.check_eq(r["type"], "error", "type")
    mt.check_eq(mt.error_condition(r), "not-acceptable", "condition")
    mt.check_eq(fn_of(await iq(alice, "get", "<vCard xmlns='%s'/>" % NS)), "Small", "unchanged")


@mt.test("the vCard of the host is empty")
async def _():
    alice = await mt.client()
    r = await iq(alice, "get", "<vCard xmlns='%s'/>" % NS, to=mt.sandbox().domain)
    mt.check_eq(r["type"], "result", "type")


@mt.test("the photo hash is in the presence another resource of the same user receives")
async def _():
    jid, pw = mt.account("avatar")
    image = os.urandom(3000)
    one = await mt.client(jid, pw, resource="one")
    await iq(one, "set", vcard_xml("A", photo=image, wrap=True))
    two = await mt.client(jid, pw, resource="two")
    p = await presence_with_photo(one, two.boundjid.full, sha1(image))
    mt.check_eq(photo_of(p), sha1(image), "hash")
    # A hash the client put there itself is replaced by the server's.
    two.send_raw("<presence><x xmlns='%s'><photo>%s</photo></x></presence>"
                 % (NS_UPDATE, "0" * 40))
    await presence_with_photo(one, two.boundjid.full, sha1(image))


@mt.test("no photo: an empty <photo/> in presence")
async def _():
    jid, pw = mt.account("avatar")
    one = await mt.client(jid, pw, resource="one")
    await mt.client(jid, pw, resource="two")
    await presence_with_photo(one, "%s/two" % jid, "")


@mt.test("a vCard set re-broadcasts the presence of the user's resources with the new hash")
async def _():
    jid, pw = mt.account("avatar")
    one = await mt.client(jid, pw, resource="one")
    two = await mt.client(jid, pw, resource="two")
    image = os.urandom(500)
    await iq(one, "set", vcard_xml("A", photo=image))
    await presence_with_photo(two, one.boundjid.full, sha1(image))
    await presence_with_photo(one, two.boundjid.full, sha1(image))


@mt.test("a vCard changed in SQL updates the hash in presence within a second")
async def _():
    jid, pw = mt.account("avatar")
    one = await mt.client(jid, pw, resource="one")
    two = await mt.client(jid, pw, resource="two")
    await iq(one, "set", vcard_xml("A", photo=b"first"))
    await presence_with_photo(two, one.boundjid.full, sha1(b"first"))
    drain(two)
    sb = mt.sandbox()
    loop = asyncio.get_running_loop()
    # psql blocks this loop until it has committed: the second starts then.
    sb.psql("UPDATE vcard SET xml = :'p2' WHERE username || '@' || host = :'p1'",
            jid, vcard_xml("A", photo=b"second"))
    t0 = loop.time()
    await presence_with_photo(two, one.boundjid.full, sha1(b"second"), timeout=1.0)
    mt.diag("presence seen %.0f ms after psql returned" % ((loop.time() - t0) * 1000))
    # The daemon keeps photo_hash true for operators.
    for _ in range(20):
        rows = sb.psql("SELECT photo_hash FROM vcard WHERE username || '@' || host = :'p1'", jid)
        if rows == [[sha1(b"second")]]:
            break
        await asyncio.sleep(0.05)
    mt.check_eq(rows, [[sha1(b"second")]], "photo_hash column")
    # Deleting the row: no photo any more.
    sb.psql("DELETE FROM vcard WHERE username || '@' || host = :'p1'", jid)
    await presence_with_photo(two, one.boundjid.full, "", timeout=1.0)
    # A new resource sees the current state too.
    three = await mt.client(jid, pw, resource="three")
    await presence_with_photo(one, three.boundjid.full, "")


@mt.test("a contact subscribed to the user's presence gets the new hash")
async def _():
    rows = mt.sandbox().psql("SELECT to_regclass('magpie_roster_view') IS NOT NULL")
    if rows != [["t"]]:
        raise mt.Skip("no magpie_roster_view (roster module not loaded)")
    bob_jid, bob_pw = mt.account("bob")
    alice = await mt.client()
    bob = await mt.client(bob_jid, bob_pw)
    alice.send_presence(pto=bob_jid, ptype="subscribe")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + mt.WAIT
    while True:
        p = await asyncio.wait_for(bob.presences.get(), max(0.1, deadline - loop.time()))
        if p["type"] == "subscribe":
            break
    bob.send_presence(pto=alice.boundjid.bare, ptype="subscribed")
    await bob.sync()
    image = os.urandom(700)
    await iq(bob, "set", vcard_xml("Bob", photo=image))
    await presence_with_photo(alice, bob.boundjid.full, sha1(image))
    mt.sandbox().psql("UPDATE vcard SET xml = :'p2' WHERE username || '@' || host = :'p1'",
                      bob_jid, vcard_xml("Bob", photo=b"sql"))
    await presence_with_photo(alice, bob.boundjid.full, sha1(b"sql"), timeout=1.0)


@mt.test("after a module reload, online users' presence still gets the hash")
async def _():
    jid, pw = mt.account("avatar")
    one = await mt.client(jid, pw, resource="one")
    two = await mt.client(jid, pw, resource="two")
    await iq(one, "set", vcard_xml("A", photo=b"reload"))
    await presence_with_photo(two, one.boundjid.full, sha1(b"reload"))
    mt.sandbox().ctl("module", "reload", "vcard")
    drain(two)
    one.send_presence(pstatus="after reload")
    await presence_with_photo(two, one.boundjid.full, sha1(b"reload"))
    r = await iq(one, "get", "<vCard xmlns='%s'/>" % NS)
    mt.check_eq(fn_of(r), "A", "FN after reload")


@mt.test("unavailable presence carries no photo hash")
async def _():
    jid, pw = mt.account("avatar")
    one = await mt.client(jid, pw, resource="one")
    two = await mt.client(jid, pw, resource="two")
    await iq(two, "set", vcard_xml("A", photo=b"img"))
    drain(one)
    two.send_raw("<presence type='unavailable'/>")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + mt.WAIT
    while True:
        p = await asyncio.wait_for(one.presences.get(), max(0.1, deadline - loop.time()))
        if p["from"] == two.boundjid.full and p["type"] == "unavailable":
            mt.check_eq(photo_of(p), None, "photo in unavailable")
            break


@mt.test("deleting the account deletes its vCard")
async def _():
    sb = mt.sandbox()
    jid, pw = mt.account("avatar")
    alice = await mt.client(jid, pw)
    await iq(alice, "set", vcard_xml("Gone"))
    await alice.close()
    sb.ctl("account", "delete", jid)
    rows = sb.psql("SELECT count(*) FROM vcard WHERE username || '@' || host = :'p1'", jid)
    mt.check_eq(rows, [["0"]], "rows left")


@mt.test("vcard-temp is advertised in disco#info")
async def _():
    alice = await mt.client()
    info = await alice["xep_0030"].get_info(jid=mt.sandbox().domain, timeout=mt.WAIT)
    mt.check(NS in info["disco_info"]["features"], "not advertised")


mt.main()
