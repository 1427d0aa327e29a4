#!/usr/bin/python3
"""What a client must not get before TLS, and broken XML."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402


@mt.test("before TLS: STARTTLS required, no SASL mechanisms offered")
async def _():
    raw = await mt.RawStream.open()
    try:
        raw.header()
        m = await raw.read_until(r"<stream:features.*?</stream:features>")
        feats = m.group(0)
        mt.check("<starttls" in feats and mt.NS_TLS in feats, "no starttls offered: " + feats)
        mt.check("<required" in feats, "starttls is not required: " + feats)
        mt.check("<mechanisms" not in feats, "SASL mechanisms offered before TLS: " + feats)
        mt.check("PLAIN" not in feats, "PLAIN offered before TLS: " + feats)
    finally:
        raw.close()


@mt.test("before TLS: <auth mechanism='PLAIN'> is refused")
async def _():
    jid, pw = mt.account("plain-notls")
    import base64
    user = jid.split("@")[0]
    blob = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
    raw = await mt.RawStream.open()
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        raw.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (mt.NS_SASL, blob))
        m = await raw.read_until(r"<failure|<stream:error|</stream:stream>")
        mt.check("<success" not in raw.buf, "PLAIN succeeded without TLS: " + raw.buf)
        mt.diag("server answered: " + m.group(0))
    finally:
        raw.close()


@mt.test("before TLS: a stanza is refused")
async def _():
    raw = await mt.RawStream.open()
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        raw.send("<message to='nobody@%s'><body>x</body></message>" % mt.sandbox().domain)
        await raw.read_until(r"<stream:error|</stream:stream>|<error")
        mt.check("not-authorized" in raw.buf or "policy-violation" in raw.buf
                 or "encryption-required" in raw.buf,
                 "unexpected answer: " + raw.buf[-500:])
    finally:
        raw.close()


@mt.test("leftover plaintext after <starttls/> closes the stream")
async def _():
    raw = await mt.RawStream.open()
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        # STARTTLS command injection: bytes sent with <starttls/> must not
        # be processed after the handshake (nor let it proceed).
        raw.send("<starttls xmlns='%s'/><message to='x@%s'><body>injected</body></message>"
                 % (mt.NS_TLS, mt.sandbox().domain))
        try:
            await raw.read_until(r"<proceed")
        except mt.Failure:
            return  # closed without proceeding: fine
        # If it said proceed, the TLS handshake must fail or the stream close.
        try:
            await raw.starttls()
        except Exception:  # noqa: BLE001 - handshake refused: fine
            return
        raw.header()
        await raw.read_to_eof()
    finally:
        raw.close()


@mt.test("junk after the stream header gets not-well-formed, others keep working")
async def _():
    alice, bob = await mt.clients(2)
    raw = await mt.RawStream.open()
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        raw.send("<message><<this is not XML&&;>")
        await raw.read_until(r"<stream:error>.*?</stream:error>")
        mt.check("not-well-formed" in raw.buf, "no not-well-formed: " + raw.buf[-500:])
        await raw.read_to_eof()
    finally:
        raw.close()
    bob.send_message(mto=alice.boundjid.full, mbody="still here")
    m = await alice.next_message(body="still here")
    mt.check_eq(m["from"], bob.boundjid, "sender")


@mt.test("junk instead of a stream header gets a stream error")
async def _():
    raw = await mt.RawStream.open()
    try:
        raw.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await raw.read_to_eof()
        mt.check("<stream:error" in raw.buf or raw.buf == "",
                 "unexpected answer: " + raw.buf[-500:])
        if raw.buf:
            mt.check("not-well-formed" in raw.buf or "invalid-namespace" in raw.buf
                     or "bad-format" in raw.buf, "unexpected condition: " + raw.buf[-500:])
    finally:
        raw.close()


@mt.test("junk after TLS and authentication gets not-well-formed")
async def _():
    jid, pw = mt.account("junk")
    c = await mt.client(jid, pw, presence=False)
    c.send_raw("<presence><</broken>")
    err = await c.next_stream_error()
    mt.check_eq(err["condition"], "not-well-formed", "stream error")


@mt.test("a DOCTYPE is refused with restricted-xml")
async def _():
    raw = await mt.RawStream.open()
    try:
        raw.send("<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY x 'y'>]>")
        raw.header()
        await raw.read_to_eof()
        mt.check("restricted-xml" in raw.buf or "not-well-formed" in raw.buf,
                 "unexpected answer: " + raw.buf[-500:])
    finally:
        raw.close()


mt.main()
