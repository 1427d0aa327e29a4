#!/usr/bin/python3
"""Hostile input and limits at the server level: stanza size, nesting
depth, entity expansion, idle timeouts and whitespace keepalives, the
legacy session element, a forged 'from' on an IQ."""

import asyncio
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

MAX_STANZA = 256 * 1024  # [c2s] max-stanza-size default (docs/configuration.md)
MAX_DEPTH = 32  # levels below the stream root, the stanza counting as one

# The classic "billion laughs": 10^9 "lol"s from a 1 KiB document.
LAUGHS = ("<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
          + "".join("<!ENTITY lol%d '%s'>" % (i, ("&lol%s;" % ("" if i == 1 else i - 1)) * 10)
                    for i in range(1, 10))
          + "]><lolz>&lol9;</lolz>")


async def send_chunked(raw, data, chunk=16384):
    """Write data piece by piece; stops quietly when the server closes.
    Run it as a task: the server stops reading once it has refused."""
    data = data.encode()
    for i in range(0, len(data), chunk):
        try:
            raw.send(data[i:i + chunk])
            await raw.writer.drain()
        except (ConnectionError, ssl.SSLError):
            return


async def expect_stream_error(raw, condition, timeout=mt.WAIT):
    """The stream ends with <stream:error><CONDITION/>, then the server
    closes the connection."""
    m = await raw.read_until(r"<stream:error>.*?</stream:error>", timeout)
    mt.check("<%s " % condition in m.group(0) or "<%s/" % condition in m.group(0),
             "want <%s/>, got %s" % (condition, m.group(0)))
    await raw.read_to_eof(timeout)


async def expect_stream_error_or_reset(raw, condition, timeout=mt.WAIT):
    """expect_stream_error for a client still writing when the server
    refuses. The server discards what still comes for a bounded time or
    amount only (server/conn.c); a close with unread input sends a TCP
    reset, which can destroy the stream error before the client reads it.
    When the connection ends without one, the server's log must show that
    this stream got the error."""
    try:
        await expect_stream_error(raw, condition, timeout)
        return
    except mt.Failure as e:
        if "<stream:error" in raw.buf or "connection closed" not in str(e):
            raise
    want = "(%s): stream error <%s/>" % (raw.jid, condition)
    for _ in range(50):
        if want in mt.sandbox().log.read_text(errors="replace"):
            mt.diag("connection reset before the stream error arrived; the log has it")
            return
        await asyncio.sleep(0.1)
    raise mt.Failure("connection closed without <%s/>, and the log does not show it" % condition)


def nested_iq(id, levels):
    """An IQ get to the server whose elements nest LEVELS deep, the <iq>
    being level 1."""
    inner = levels - 2
    return ("<iq type='get' id='%s' to='%s'><q xmlns='urn:example:deep'>%s%s</q></iq>"
            % (id, mt.sandbox().domain, "<d>" * inner, "</d>" * inner))


@mt.test("a stanza just under max-stanza-size is delivered")
async def _():
    bob = await mt.client()
    raw = await mt.RawStream.logged_in()
    try:
        body = "y" * (MAX_STANZA - 1024)
        raw.send("<message to='%s'><body>%s</body></message>" % (bob.boundjid.full, body))
        m = await bob.next_message()
        mt.check_eq(len(m["body"]), len(body), "length of the body received")
        mt.check_eq((await raw.ping())[:4], "<iq ", "ping after the big stanza")
    finally:
        raw.close()


@mt.test("a stanza over max-stanza-size gets policy-violation, others keep working")
async def _():
    alice, bob = await mt.clients(2)
    raw = await mt.RawStream.logged_in()
    writer = None
    try:
        big = ("<message to='%s'><body>%s</body></message>"
               % (bob.boundjid.full, "x" * (2 * MAX_STANZA)))
        writer = asyncio.ensure_future(send_chunked(raw, big))
        await expect_stream_error_or_reset(raw, "policy-violation")
    finally:
        if writer:
            writer.cancel()
        raw.close()
    alice.send_message(mto=bob.boundjid.full, mbody="after the big one")
    m = await bob.next_message(body=None)
    mt.check_eq(m["body"], "after the big one", "bob's next message (not the oversized one)")


@mt.test("an unfinished start tag as long as max-stanza-size gets policy-violation")
async def _():
    # No SAX event at all: the parser must not buffer without bound.
    raw = await mt.RawStream.logged_in()
    writer = None
    try:
        writer = asyncio.ensure_future(
            send_chunked(raw, "<message a='" + "z" * (2 * MAX_STANZA)))
        await expect_stream_error_or_reset(raw, "policy-violation")
    finally:
        if writer:
            writer.cancel()
        raw.close()


@mt.test("nesting %d deep is accepted, %d deep gets policy-violation"
         % (MAX_DEPTH, MAX_DEPTH + 1))
async def _():
    raw = await mt.RawStream.logged_in()
    try:
        raw.send(nested_iq("deep-ok", MAX_DEPTH))
        reply = await raw.read_iq("deep-ok")
        mt.check("type='error'" in reply or 'type="error"' in reply,
                 "unknown payload not refused: " + reply)
        raw.send(nested_iq("too-deep", MAX_DEPTH + 1))
        await expect_stream_error(raw, "policy-violation")
    finally:
        raw.close()


@mt.test("very deep nesting (100000 levels) gets policy-violation, others keep working")
async def _():
    alice, bob = await mt.clients(2)
    raw = await mt.RawStream.logged_in()
    writer = None
    try:
        writer = asyncio.ensure_future(send_chunked(raw, "<message>" + "<a>" * 100000))
        await expect_stream_error_or_reset(raw, "policy-violation")
    finally:
        if writer:
            writer.cancel()
        raw.close()
    alice.send_message(mto=bob.boundjid.full, mbody="still fine")
    await bob.next_message(body="still fine")


@mt.test("a billion-laughs DTD before the stream root gets restricted-xml")
async def _():
    raw = await mt.RawStream.open()
    try:
        t0 = time.monotonic()
        raw.send("<?xml version='1.0'?>" + LAUGHS)
        raw.header()
        await expect_stream_error(raw, "restricted-xml")
        mt.check(time.monotonic() - t0 < 5, "took %.1fs" % (time.monotonic() - t0))
    finally:
        raw.close()


@mt.test("a billion-laughs document inside an authenticated stream closes it at once")
async def _():
    alice, bob = await mt.clients(2)
    raw = await mt.RawStream.logged_in()
    try:
        t0 = time.monotonic()
        raw.send(LAUGHS)
        m = await raw.read_until(r"<stream:error>.*?</stream:error>")
        # A DOCTYPE inside the stream root is first of all not well-formed
        # XML (XML 1.0 allows it in the prolog only); restricted-xml
        # (RFC 6120 4.9.3.18) would fit as well. No expansion either way.
        mt.check("restricted-xml" in m.group(0) or "not-well-formed" in m.group(0),
                 "unexpected condition: " + m.group(0))
        mt.diag("condition: " + m.group(0))
        await raw.read_to_eof()
        mt.check(time.monotonic() - t0 < 5, "took %.1fs" % (time.monotonic() - t0))
    finally:
        raw.close()
    alice.send_message(mto=bob.boundjid.full, mbody="no laughing matter")
    await bob.next_message(body="no laughing matter")


@mt.test("an entity reference in a stanza gets restricted-xml")
async def _():
    raw = await mt.RawStream.logged_in()
    try:
        raw.send("<message to='%s'><body>&lol9;</body></message>" % raw.jid)
        await expect_stream_error(raw, "restricted-xml")
    finally:
        raw.close()


@mt.test("the five predefined entities and character references are accepted")
async def _():
    bob = await mt.client()
    raw = await mt.RawStream.logged_in()
    try:
        raw.send("<message to='%s'><body>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</body></message>"
                 % bob.boundjid.full)
        m = await bob.next_message()
        mt.check_eq(m["body"], "<>&'\"AB", "body")
    finally:
        raw.close()


async def keepalive_then_ping(seconds):
    raw = await mt.RawStream.logged_in(resource="keepalive")
    try:
        for _ in range(seconds):
            raw.send(" ")
            await asyncio.sleep(1)
        mt.check("<stream:error" not in raw.buf, "stream error: " + raw.buf[-500:])
        reply = await raw.ping("after-keepalives")
        mt.check("type='result'" in reply or 'type="result"' in reply, "ping: " + reply)
    finally:
        raw.close()


async def silent_until_timeout(limit):
    raw = await mt.RawStream.logged_in(resource="silent")
    try:
        t0 = time.monotonic()
        await expect_stream_error(raw, "connection-timeout", timeout=limit)
        mt.diag("silent stream closed after %.1fs" % (time.monotonic() - t0))
    finally:
        raw.close()


@mt.test("idle-timeout: whitespace keepalives keep a stream open, silence closes it",
         timeout=60)
async def _():
    sb = mt.sandbox()
    with sb.conf_d("99-test-limits.conf", "[c2s]\nidle-timeout=4s\n"):
        await asyncio.gather(keepalive_then_ping(12), silent_until_timeout(15))


@mt.test("the legacy session element (RFC 3921) gets an empty result")
async def _():
    raw = await mt.RawStream.logged_in()
    try:
        raw.send("<iq type='set' id='s1'>"
                 "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        reply = await raw.read_iq("s1")
        mt.check("type='result'" in reply or 'type="result"' in reply, "reply: " + reply)
        mt.check(reply.endswith("/>") or reply.count("<") == 2, "result not empty: " + reply)
        # The stream is fine afterwards.
        mt.check("type='result'" in await raw.ping(), "ping after the session element")
    finally:
        raw.close()


# test-messages.py checks that a forged 'from' on a message is never
# delivered (stamped or refused); here: an IQ, and the sender's own JIDs.
@mt.test("'from' of the own full or bare JID is accepted, another user's gets invalid-from")
async def _():
    other, _pw = mt.account("victim")
    raw = await mt.RawStream.logged_in()
    try:
        bare = raw.jid.split("/")[0]
        for i, frm in enumerate((raw.jid, bare)):
            raw.send("<iq type='get' id='own-%d' from='%s' to='%s'>"
                     "<ping xmlns='urn:xmpp:ping'/></iq>" % (i, frm, mt.sandbox().domain))
            reply = await raw.read_iq("own-%d" % i)
            mt.check("type='result'" in reply, "from=%s: %s" % (frm, reply))
        raw.send("<iq type='get' id='forged' from='%s/x' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                 % (other, mt.sandbox().domain))
        await expect_stream_error(raw, "invalid-from")
        mt.check("id='forged'" not in raw.buf, "the forged IQ was answered: " + raw.buf)
    finally:
        raw.close()


mt.main()
