#!/usr/bin/python3
"""In-Band Registration (XEP-0077): the register module.

Registration is off as shipped; tests that need it on write a conf.d file
into the sandbox and reload (mt.sandbox().conf_d), which also reloads the
module and so starts each of them with an empty rate-limit table."""

import asyncio
import os
import re
import secrets
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

NS_REGISTER = "jabber:iq:register"
NS_FEATURE = "http://jabber.org/features/iq-register"
CONF = "99-register-test.conf"
ON = "[register]\nallow-registration=true\nregistration-rate=2\n"


async def preauth_stream():
    """A raw stream after STARTTLS, before SASL; returns (stream, features)."""
    raw = await mt.RawStream.open()
    try:
        raw.header()
        await raw.read_until(r"</stream:features>")
        raw.send("<starttls xmlns='%s'/>" % mt.NS_TLS)
        await raw.read_until(r"<proceed")
        await raw.starttls()
        raw.header()
        m = await raw.read_until(r"<stream:features.*?</stream:features>")
        feats = m.group(0)
        raw.buf = raw.buf[m.end():]
    except BaseException:
        raw.close()
        raise
    return raw, feats


def query(inner=""):
    return "<query xmlns='%s'>%s</query>" % (NS_REGISTER, inner)


def creds(username, password):
    return query("<username>%s</username><password>%s</password>" % (username, password))


async def iq(raw, type_, payload, id=None, to=None):
    id = id or "r-" + secrets.token_hex(3)
    attrs = " to='%s'" % to if to else ""
    raw.send("<iq type='%s' id='%s'%s>%s</iq>" % (type_, id, attrs, payload))
    return await raw.read_iq(id)


def condition(reply):
    m = re.search(r"<error[^>]*type=['\"](\w+)['\"][^>]*>\s*<([\w-]+)", reply)
    return (m.group(1), m.group(2)) if m else None


def check_result(reply, what):
    mt.check(re.search(r"type=['\"]result['\"]", reply) is not None,
             "%s: expected a result, got %s" % (what, reply))


def check_error(reply, type_, cond, what):
    mt.check_eq(condition(reply), (type_, cond), what + " (error type, condition)")


def fresh_user():
    return mt.unique("reg")


def fresh_password():
    return "pw-" + secrets.token_hex(6)


async def register(username, password):
    raw, _ = await preauth_stream()
    try:
        return await iq(raw, "set", creds(username, password))
    finally:
        raw.close()


@mt.test("registration off: no stream feature, get and set get service-unavailable")
async def _():
    raw, feats = await preauth_stream()
    try:
        mt.check("<mechanisms" in feats, "no SASL mechanisms after TLS: " + feats)
        mt.check(NS_FEATURE not in feats, "registration offered while off: " + feats)
        r = await iq(raw, "get", query())
        check_error(r, "cancel", "service-unavailable", "get")
        user = fresh_user()
        r = await iq(raw, "set", creds(user, fresh_password()))
        check_error(r, "cancel", "service-unavailable", "set")
        mt.check("pw-" not in r, "the error echoes the password: " + r)
    finally:
        raw.close()
    rows = mt.sandbox().psql("SELECT 1 FROM accounts WHERE username = :'p1'", user)
    mt.check_eq(rows, [], "account rows")


@mt.test("registration on: the feature is gone after authentication")
async def _():
    with mt.sandbox().conf_d(CONF, ON):
        jid, pw = mt.account("regfeat")
        raw = await mt.RawStream.open()
        try:
            raw.header()
            await raw.read_until(r"</stream:features>")
            raw.send("<starttls xmlns='%s'/>" % mt.NS_TLS)
            await raw.read_until(r"<proceed")
            await raw.starttls()
            raw.header()
            await raw.read_until(r"</stream:features>")
            mt.check(NS_FEATURE in raw.buf, "not offered before authentication: " + raw.buf)
            import base64
            blob = base64.b64encode(b"\0" + jid.split("@")[0].encode() + b"\0"
                                    + pw.encode()).decode()
            raw.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (mt.NS_SASL, blob))
            await raw.read_until(r"<success")
            raw.buf = ""
            raw.header()
            m = await raw.read_until(r"<stream:features.*?</stream:features>")
            mt.check(NS_FEATURE not in m.group(0), "offered after authentication: " + m.group(0))
        finally:
            raw.close()


@mt.test("registration on: feature offered, get returns the form")
async def _():
    with mt.sandbox().conf_d(CONF, ON):
        raw, feats = await preauth_stream()
        try:
            mt.check("<register" in feats and NS_FEATURE in feats, "no feature: " + feats)
            r = await iq(raw, "get", query())
            check_result(r, "get")
            mt.check("<instructions>" in r, "no instructions: " + r)
            mt.check(re.search(r"<username\s*/>", r) is not None, "no <username/>: " + r)
            mt.check(re.search(r"<password\s*/>", r) is not None, "no <password/>: " + r)
            mt.check("<registered" not in r, "unauthenticated stream told registered: " + r)
        finally:
            raw.close()


@mt.test("registration creates an account that logs in with SCRAM-SHA-256")
async def _():
    with mt.sandbox().conf_d(CONF, ON):
        user, pw = fresh_user(), fresh_password()
        raw, _ = await preauth_stream()
        try:
            r = await iq(raw, "set", creds(user.upper(), pw), to=mt.sandbox().domain)
            check_result(r, "registration")
            # One account per stream (XEP-0077 3.1.1).
            r = await iq(raw, "set", creds(fresh_user(), pw))
            check_error(r, "wait", "not-acceptable", "second registration on the stream")
            # The client authenticates next, on the same stream.
            import base64
            blob = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
            raw.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (mt.NS_SASL, blob))
            await raw.read_until(r"<success|<failure")
            mt.check("<success" in raw.buf, "PLAIN on the registering stream: " + raw.buf)
        finally:
            raw.close()
        jid = "%s@%s" % (user, mt.sandbox().domain)  # nodeprep lowercased it
        rows = mt.sandbox().psql("SELECT mechanisms FROM magpie_accounts_view WHERE jid = :'p1'",
                                 jid)
        mt.check_eq(len(rows), 1, "account rows for " + jid)
        c = await mt.client(jid, pw, mechanism="SCRAM-SHA-256")
        mt.check_eq(c.boundjid.bare, jid, "bound JID")


@mt.test("registration errors: conflict, bad username, missing or short password")
async def _():
    with mt.sandbox().conf_d(CONF, ON):
        taken, _ = mt.account("taken")
        raw, _ = await preauth_stream()
        try:
            r = await iq(raw, "set", creds(taken.split("@")[0], fresh_password()))
            check_error(r, "cancel", "conflict", "existing username")
            mt.check("pw-" not in r, "the error echoes the password: " + r)
            r = await iq(raw, "set", creds(taken.split("@")[0].upper(), fresh_password()))
            check_error(r, "cancel", "conflict", "existing username in other case")
            for bad in ("a b", "x@y", "x/y", "a&amp;b", "x" * 1100, "&#x1F600;"):
                r = await iq(raw, "set", creds(bad, fresh_password()))
                check_error(r, "modify", "jid-malformed", "username %r" % bad[:20])
            r = await iq(raw, "set", query("<username>%s</username>" % fresh_user()))
            check_error(r, "modify", "not-acceptable", "no password")
            r = await iq(raw, "set", creds(fresh_user(), ""))
            check_error(r, "modify", "not-acceptable", "empty password")
            r = await iq(raw, "set", creds(fresh_user(), "short"))
            check_error(r, "modify", "not-acceptable", "short password")
            r = await iq(raw, "set", query("<password>%s</password>" % fresh_password()))
            check_error(r, "modify", "not-acceptable", "no username")
            r = await iq(raw, "set", creds("", fresh_password()))
            check_error(r, "modify", "not-acceptable", "empty username")
            r = await iq(raw, "set", creds(fresh_user(), "p" * 2000))
            check_error(r, "modify", "not-acceptable", "huge password")
            # SASLprep prohibits private-use characters (RFC 4013 2.3).
            r = await iq(raw, "set", creds(fresh_user(), "abc\ue000defghij"))
            check_error(r, "modify", "not-acceptable", "password SASLprep refuses")
            r = await iq(raw, "set", query("<remove/>"))
            check_error(r, "modify", "unexpected-request", "remove before authentication")
            r = await iq(raw, "set", query())
            check_error(r, "modify", "not-acceptable", "empty query")
            # None of these used a rate slot or marked the stream.
            r = await iq(raw, "set", creds(fresh_user(), fresh_password()))
            check_result(r, "a good registration after the bad ones")
            # Other IQs stay refused before authentication.
            r = await iq(raw, "get", "<query xmlns='jabber:iq:version'/>")
            check_error(r, "cancel", "service-unavailable", "version before authentication")
        finally:
            raw.close()


@mt.test("rate limit: the 3rd registration from one address within the window is refused")
async def _():
    with mt.sandbox().conf_d(CONF, ON):
        for i in range(2):
            r = await register(fresh_user(), fresh_password())
            check_result(r, "registration %d" % (i + 1))
        user = fresh_user()
        r = await register(user, fresh_password())
        check_error(r, "wait", "not-acceptable", "3rd registration")
        rows = mt.sandbox().psql("SELECT 1 FROM accounts WHERE username = :'p1'", user)
        mt.check_eq(rows, [], "account rows for the refused registration")


@mt.test("rate limit: a slot comes back when the window has passed")
async def _():
    conf = "[register]\nallow-registration=true\nregistration-rate=1\nregistration-window=2s\n"
    with mt.sandbox().conf_d(CONF, conf):
        r = await register(fresh_user(), fresh_password())
        check_result(r, "first registration")
        r = await register(fresh_user(), fresh_password())
        check_error(r, "wait", "not-acceptable", "second registration at once")
        await asyncio.sleep(2.2)
        r = await register(fresh_user(), fresh_password())
        check_result(r, "registration after the window")


@mt.test("pipelined registrations on one stream create one account")
async def _():
    with mt.sandbox().conf_d(CONF, ON):
        raw, _ = await preauth_stream()
        users = [fresh_user() for _ in range(3)]
        try:
            for i, u in enumerate(users):
                raw.send("<iq type='set' id='p%d'>%s</iq>" % (i, creds(u, fresh_password())))
            # Answers come in any order: the first waits for the database.
            replies = []
            for i in range(3):
                m = await raw.read_until(r"<iq[^>]*\sid='p%d'[^>]*?(/>|>.*?</iq>)" % i)
                replies.append(m.group(0))
        finally:
            raw.close()
        check_result(replies[0], "first")
        for r in replies[1:]:
            check_error(r, "wait", "not-acceptable", "pipelined")
        rows = mt.sandbox().psql("SELECT count(*) FROM accounts WHERE username = ANY"
                                 " (string_to_array(:'p1', ','))", ",".join(users))
        mt.check_eq(rows, [["1"]], "accounts created")


@mt.test("a bound user gets <registered/> with their username")
async def _():
    raw = await mt.RawStream.logged_in()
    try:
        node = raw.jid.split("@")[0]
        for to in (None, mt.sandbox().domain, raw.jid.split("/")[0]):
            r = await iq(raw, "get", query(), to=to)
            check_result(r, "get to %s" % to)
            mt.check("<registered" in r, "no <registered/>: " + r)
            mt.check("<username>%s</username>" % node in r, "no username: " + r)
            mt.check("<password>" not in r, "password in the answer: " + r)
        other, _ = mt.account("other")
        r = await iq(raw, "get", query(), to=other)
        check_error(r, "cancel", "service-unavailable", "get to another account")
    finally:
        raw.close()


@mt.test("disco#info of the server lists jabber:iq:register")
async def _():
    c = await mt.client()
    r = await c.iq_get(mt.sandbox().domain,
                       "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    feats = [f for f in r["disco_info"]["features"]]
    mt.check(NS_REGISTER in feats, "features: %r" % feats)


@mt.test("password change: the old password fails, the new one works")
async def _():
    jid, old = mt.account("chpw")
    new = fresh_password()
    raw = await mt.RawStream.logged_in(jid, old)
    try:
        node = jid.split("@")[0]
        r = await iq(raw, "set", creds("someone-else", new))
        check_error(r, "auth", "forbidden", "another username")
        r = await iq(raw, "set", creds(node, "short"))
        check_error(r, "modify", "not-acceptable", "short password")
        r = await iq(raw, "set", creds(node, ""))
        check_error(r, "modify", "not-acceptable", "empty password")
        r = await iq(raw, "set", query("<username>%s</username>" % node))
        check_error(r, "modify", "bad-request", "no password")
        r = await iq(raw, "set", creds(node, "abc\ue000defghij"))
        check_error(r, "modify", "not-acceptable", "password SASLprep refuses")
        r = await iq(raw, "set", query())
        check_error(r, "modify", "bad-request", "empty query")
        r = await iq(raw, "set", creds(node, new), to=mt.sandbox().domain)
        check_result(r, "password change")
        mt.check(new not in r, "the answer echoes the password")
        # The core closes the account's sessions after a password change.
        await raw.read_until(r"</stream:stream>|<stream:error")
        mt.diag("then: " + raw.buf[-200:])
    finally:
        raw.close()
    cond = await mt.login_fails(jid, old)
    mt.check_eq(cond, "not-authorized", "login with the old password")
    c = await mt.client(jid, new)
    mt.check_eq(c.boundjid.bare, jid, "bound JID")


@mt.test("password change with the bare JID as username, to the own bare JID")
async def _():
    jid, old = mt.account("chpw2")
    new = fresh_password()
    raw = await mt.RawStream.logged_in(jid, old)
    try:
        r = await iq(raw, "set", creds(jid, new), to=jid)
        check_result(r, "password change")
    finally:
        raw.close()
    c = await mt.client(jid, new)
    mt.check_eq(c.boundjid.bare, jid, "bound JID")


@mt.test("password change from slixmpp's XEP-0077 plugin")
async def _():
    jid, old = mt.account("slixpw")
    new = fresh_password()
    c = await mt.client(jid, old, presence=False)
    c.register_plugin("xep_0077")
    r = await c["xep_0077"].change_password(new, jid=mt.sandbox().domain)
    mt.check_eq(r["type"], "result", "answer type")
    err = await c.next_stream_error()
    mt.check_eq(err["condition"], "reset", "stream error after the change")
    await c.close()
    c = await mt.client(jid, new)
    mt.check_eq(c.boundjid.bare, jid, "bound JID")


@mt.test("password change refused when allow-password-change=false")
async def _():
    with mt.sandbox().conf_d(CONF, "[register]\nallow-password-change=false\n"):
        jid, old = mt.account("nochpw")
        raw = await mt.RawStream.logged_in(jid, old)
        try:
            r = await iq(raw, "set", creds(jid.split("@")[0], fresh_password()))
            check_error(r, "cancel", "not-allowed", "password change")
        finally:
            raw.close()
        c = await mt.client(jid, old)
        mt.check_eq(c.boundjid.bare, jid, "old password still works")


@mt.test("account removal: result, then the session closes and login fails")
async def _():
    jid, pw = mt.account("rm")
    other = await mt.client(jid, pw, resource="other")
    raw = await mt.RawStream.logged_in(jid, pw)
    try:
        r = await iq(raw, "set", query("<remove/><username>x</username>"))
        check_error(r, "modify", "bad-request", "remove with other children")
        r = await iq(raw, "set", query("<remove/>"))
        check_result(r, "removal")
        await raw.read_until(r"<stream:error>.*?</stream:error>")
        mt.check("not-authorized" in raw.buf, "stream error: " + raw.buf[-300:])
    finally:
        raw.close()
    err = await other.next_stream_error()
    mt.check_eq(err["condition"], "not-authorized", "the other session's stream error")
    rows = mt.sandbox().psql("SELECT 1 FROM magpie_accounts_view WHERE jid = :'p1'", jid)
    mt.check_eq(rows, [], "account rows")
    cond = await mt.login_fails(jid, pw)
    mt.check_eq(cond, "not-authorized", "login after removal")


@mt.test("account removal refused when allow-remove=false")
async def _():
    with mt.sandbox().conf_d(CONF, "[register]\nallow-remove=false\n"):
        jid, pw = mt.account("normv")
        raw = await mt.RawStream.logged_in(jid, pw)
        try:
            r = await iq(raw, "set", query("<remove/>"))
            check_error(r, "cancel", "not-allowed", "removal")
            r = await raw.ping()
            check_result(r, "the stream still works")
        finally:
            raw.close()
        rows = mt.sandbox().psql("SELECT 1 FROM magpie_accounts_view WHERE jid = :'p1'", jid)
        mt.check_eq(rows, [["1"]], "account rows")


mt.main()
