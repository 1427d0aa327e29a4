#!/usr/bin/python3
"""c2s authentication: every mechanism over STARTTLS and direct TLS,
wrong passwords, unknown users, channel binding, accounts made in SQL."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

for _mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
    for _direct in (False, True):
        def _make(mech=_mech, direct=_direct):
            @mt.test("login with %s over %s" % (mech, "direct TLS" if direct else "STARTTLS"))
            async def _():
                jid, pw = mt.account("login")
                c = await mt.client(jid, pw, mechanism=mech, direct_tls=direct)
                mt.check_eq(c.boundjid.bare, jid, "bound bare JID")
                mt.check(c.boundjid.resource, "a resource was bound")
        _make()


# slixmpp 1.8.3 hard-codes the tls-unique channel binding, which exists
# only up to TLS 1.2: these tests force TLS 1.2 on the client. -PLUS on
# TLS 1.3 (tls-exporter) cannot be driven from slixmpp.
for _mech in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"):
    def _make_plus(mech=_mech):
        @mt.test("login with %s (tls-unique, TLS 1.2)" % mech)
        async def _():
            jid, pw = mt.account("plus")
            c = await mt.client(jid, pw, mechanism=mech, tls12=True, channel_binding=True)
            mt.check_eq(c.boundjid.bare, jid, "bound bare JID")
    _make_plus()


@mt.test("-PLUS mechanisms are offered over TLS 1.2")
async def _():
    raw = await mt.RawStream.open(direct_tls=False)
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        raw.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await raw.read_until(r"<proceed")
        import ssl
        sb = mt.sandbox()
        ctx = ssl.create_default_context(cafile=str(sb.cert))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        await raw.writer.start_tls(ctx, server_hostname=sb.domain)
        raw.buf = ""
        raw.header()
        m = await raw.read_until(r"<stream:features.*?</stream:features>")
        feats = m.group(0)
        for mech in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "PLAIN"):
            mt.check(">%s<" % mech in feats, "%s not offered: %s" % (mech, feats))
    finally:
        raw.close()


for _mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
    def _make_wrong(mech=_mech):
        @mt.test("wrong password with %s gets not-authorized" % mech)
        async def _():
            jid, pw = mt.account("wrongpw")
            cond = await mt.login_fails(jid, pw + "x", mechanism=mech)
            mt.check_eq(cond, "not-authorized", "SASL failure condition")

        @mt.test("unknown user with %s gets not-authorized" % mech)
        async def _():
            jid = "%s@%s" % (mt.unique("nobody"), mt.sandbox().domain)
            cond = await mt.login_fails(jid, "whatever", mechanism=mech)
            mt.check_eq(cond, "not-authorized", "SASL failure condition")
    _make_wrong()


@mt.test("SCRAM with the gs2 flag 'y' is refused when -PLUS is offered")
async def _():
    # The client says "I support channel binding but you did not offer
    # it" while the server did: a downgrade, RFC 5802 section 6.
    jid, pw = mt.account("downgrade")
    cond = await mt.login_fails(jid, pw, mechanism="SCRAM-SHA-256", tls12=True,
                                channel_binding=True)
    mt.check(cond in ("not-authorized", "malformed-request", "invalid-mechanism", "aborted"),
             "unexpected condition %r" % cond)


@mt.test("an account created in SQL logs in at once")
async def _():
    sb = mt.sandbox()
    jid = "%s@%s" % (mt.unique("sqluser"), sb.domain)
    sb.psql("SELECT magpie_account_create(:'p1', :'p2')", jid, "sql-pw")
    for mech in ("SCRAM-SHA-256", "PLAIN"):
        c = await mt.client(jid, "sql-pw", mechanism=mech)
        mt.check_eq(c.boundjid.bare, jid, "bound bare JID")
        await c.close()


@mt.test("a password with non-ASCII characters works with SCRAM and PLAIN")
async def _():
    jid, pw = mt.account("utf8", password="p\u00e4ss-\u20ac-\u65e5\u672c")
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        c = await mt.client(jid, pw, mechanism=mech)
        await c.close()


mt.main()
