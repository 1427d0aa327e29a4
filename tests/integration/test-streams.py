#!/usr/bin/python3
"""Stream restarts the way real clients write them (raw XML), and other
clients than slixmpp: go-sendxmpp (the README's example), when installed."""

import asyncio
import base64
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402


def plain_blob(jid, password):
    user = jid.split("@")[0]
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


async def raw_login(raw, jid, pw, after_auth=""):
    """SASL PLAIN then the stream restart, each header with an XML
    declaration (RFC 6120 allows one at the start of every stream)."""
    raw.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>%s"
             % (mt.NS_SASL, plain_blob(jid, pw), after_auth))
    await raw.read_until(r"<success[^>]*(/>|</success>)")
    raw.buf = ""
    raw.header()
    m = await raw.read_until(r"<stream:features.*?</stream:features>")
    mt.check("urn:ietf:params:xml:ns:xmpp-bind" in m.group(0), "no bind feature: " + m.group(0))
    raw.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<resource>raw</resource></bind></iq>")
    m = await raw.read_until(r"<iq[^>]*id=.b1.*?</iq>")
    mt.check("type='result'" in m.group(0) or 'type="result"' in m.group(0),
             "bind failed: " + m.group(0))


@mt.test("direct TLS: restarting after SASL with an XML declaration works")
async def _():
    jid, pw = mt.account("rawtls")
    raw = await mt.RawStream.open(direct_tls=True)
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        await raw_login(raw, jid, pw)
    finally:
        raw.close()


@mt.test("STARTTLS: restarts after TLS and after SASL with XML declarations work")
async def _():
    jid, pw = mt.account("rawstarttls")
    raw = await mt.RawStream.open()
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        raw.send("<starttls xmlns='%s'/>" % mt.NS_TLS)
        await raw.read_until(r"<proceed")
        await raw.starttls()
        raw.header()
        await raw.read_until(r"</stream:features>")
        await raw_login(raw, jid, pw)
    finally:
        raw.close()


@mt.test("a newline after </auth> does not break the restarted stream's XML declaration")
async def _():
    # go-xmpp (go-sendxmpp) ends every element it writes with "\n"; the
    # newline arrives before the new stream's "<?xml ...?>" and must not
    # be fed to the new parser (whitespace between elements, RFC 6120 11.7).
    jid, pw = mt.account("rawnl")
    raw = await mt.RawStream.open(direct_tls=True)
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        await raw_login(raw, jid, pw, after_auth="\n")
    finally:
        raw.close()


@mt.test("a newline after <starttls/> is not taken for injected plaintext")
async def _():
    # go-xmpp (go-sendxmpp) writes "<starttls .../>\n". Whitespace between
    # top-level elements is allowed (RFC 6120 11.7) and carries nothing.
    raw = await mt.RawStream.open()
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        raw.send("<starttls xmlns='%s'/>\n" % mt.NS_TLS)
        await raw.read_until(r"<proceed")
        await raw.starttls()
        raw.header()
        m = await raw.read_until(r"<stream:features.*?</stream:features>")
        mt.check("<mechanisms" in m.group(0), "no SASL after TLS: " + m.group(0))
    finally:
        raw.close()


async def sendxmpp(*args, stdin=None, timeout=20):
    proc = await asyncio.create_subprocess_exec(
        "go-sendxmpp", *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode, out.decode(errors="replace")


for _direct in (False, True):
    def _make(direct=_direct):
        @mt.test("go-sendxmpp sends a message over %s" % ("direct TLS" if direct else "STARTTLS"))
        async def _():
            if not shutil.which("go-sendxmpp"):
                raise mt.Skip("go-sendxmpp is not installed")
            sb = mt.sandbox()
            jid, pw = mt.account("gosend")
            bob = await mt.client()
            port = sb.c2s_tls if direct else sb.c2s
            args = ["-u", jid, "-p", pw, "-j", "%s:%d" % (sb.host, port), "-n"]
            if direct:
                args.append("-t")
            code, out = await sendxmpp(*args, bob.boundjid.bare, stdin=b"hello from go\n")
            mt.check_eq(code, 0, "go-sendxmpp exit code (output: %s)" % out.strip())
            m = await bob.next_message()
            mt.check_eq(m["body"].strip(), "hello from go", "body")
            mt.check_eq(m["from"].bare, jid, "sender")
    _make()


mt.main()
