#!/usr/bin/python3
"""Every magpiectl command against the running server."""

import asyncio
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402


def contains(value, needle):
    """True when needle appears anywhere in a parsed JSON value."""
    return needle in json.dumps(value)


@mt.test("account add: the new account logs in; adding it again fails")
async def _():
    sb = mt.sandbox()
    jid = "%s@%s" % (mt.unique("ctladd"), sb.domain)
    sb.ctl("account", "add", jid, "first-pw")
    c = await mt.client(jid, "first-pw")
    await c.close()
    p = sb.ctl("account", "add", jid, "other", check=False)
    mt.check(p.returncode != 0, "adding an existing account succeeded")
    c = await mt.client(jid, "first-pw")


@mt.test("account add refuses an invalid JID and an unknown host")
async def _():
    sb = mt.sandbox()
    for bad in ("no-at-sign", "a@b@c", "@%s" % sb.domain, "x@not-served.example"):
        p = sb.ctl("account", "add", bad, "pw", check=False)
        mt.check(p.returncode != 0, "account add %s succeeded" % bad)


@mt.test("account passwd: the old password stops working, the new one works")
async def _():
    sb = mt.sandbox()
    jid, pw = mt.account("ctlpw")
    sb.ctl("account", "passwd", jid, "new-pw")
    cond = await mt.login_fails(jid, pw)
    mt.check_eq(cond, "not-authorized", "old password")
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        c = await mt.client(jid, "new-pw", mechanism=mech)
        await c.close()


@mt.test("account disable refuses logins and closes sessions; enable restores")
async def _():
    sb = mt.sandbox()
    jid, pw = mt.account("ctldis")
    online = await mt.client(jid, pw)
    sb.ctl("account", "disable", jid)
    try:
        await asyncio.wait_for(online.closed.wait(), mt.WAIT)
    except asyncio.TimeoutError:
        raise mt.Failure("the session of the disabled account is still open")
    cond = await mt.login_fails(jid, pw)
    mt.check(cond in ("not-authorized", "account-disabled"), "condition %r" % cond)
    sb.ctl("account", "enable", jid)
    c = await mt.client(jid, pw)
    mt.check_eq(c.boundjid.bare, jid, "login after enable")


@mt.test("account delete: the account is gone, its session closed")
async def _():
    sb = mt.sandbox()
    jid, pw = mt.account("ctldel")
    online = await mt.client(jid, pw)
    sb.ctl("account", "delete", jid)
    try:
        await asyncio.wait_for(online.closed.wait(), mt.WAIT)
    except asyncio.TimeoutError:
        raise mt.Failure("the session of the deleted account is still open")
    cond = await mt.login_fails(jid, pw)
    mt.check_eq(cond, "not-authorized", "login after delete")
    listing = sb.ctl("account", "list").stdout
    mt.check(jid not in listing, "deleted account still listed")
    p = sb.ctl("account", "delete", jid, check=False)
    mt.check(p.returncode != 0, "deleting a missing account succeeded")


@mt.test("account list, with and without host, text and --json")
async def _():
    sb = mt.sandbox()
    jid, _pw = mt.account("ctllist")
    mt.check(jid in sb.ctl("account", "list").stdout, "not in account list")
    mt.check(jid in sb.ctl("account", "list", sb.domain).stdout, "not in account list HOST")
    value = sb.ctl("account", "list", json_output=True)
    mt.check(contains(value, jid), "not in account list --json: %r" % (value,))


@mt.test("session list shows connected resources, text and --json")
async def _():
    sb = mt.sandbox()
    jid, pw = mt.account("ctlsess")
    c = await mt.client(jid, pw, resource="listed")
    out = sb.ctl("session", "list").stdout
    mt.check(jid in out, "session not listed:\n" + out)
    value = sb.ctl("session", "list", json_output=True)
    mt.check(contains(value, jid), "session not in --json: %r" % (value,))
    await c.close()


@mt.test("session kick closes the session")
async def _():
    sb = mt.sandbox()
    jid, pw = mt.account("ctlkick")
    c = await mt.client(jid, pw, resource="kicked")
    sb.ctl("session", "kick", c.boundjid.full)
    try:
        await asyncio.wait_for(c.closed.wait(), mt.WAIT)
    except asyncio.TimeoutError:
        raise mt.Failure("kicked session still open")
    p = sb.ctl("session", "kick", jid + "/not-online", check=False)
    mt.check(p.returncode != 0, "kicking a missing session succeeded")


@mt.test("module list shows the shipped modules, text and --json")
async def _():
    sb = mt.sandbox()
    out = sb.ctl("module", "list").stdout
    for name in ("disco", "ping", "version"):
        mt.check(name in out, "%s not in module list:\n%s" % (name, out))
    value = sb.ctl("module", "list", json_output=True)
    mt.check(contains(value, "version"), "module list --json: %r" % (value,))


@mt.test("module unload/load/reload via magpiectl")
async def _():
    sb = mt.sandbox()
    alice = await mt.client()
    try:
        sb.ctl("module", "unload", "ping")
        r = await alice.iq_get(sb.domain, "<ping xmlns='urn:xmpp:ping'/>")
        mt.check_eq(r["type"], "error", "ping while unloaded")
    finally:
        sb.ctl("module", "load", "ping")
    sb.ctl("module", "reload", "ping")
    r = await alice.iq_get(sb.domain, "<ping xmlns='urn:xmpp:ping'/>")
    mt.check_eq(r["type"], "result", "ping after reload")


@mt.test("reload keeps clients connected")
async def _():
    sb = mt.sandbox()
    alice, bob = await mt.clients(2)
    sb.ctl("reload")
    await asyncio.sleep(0.5)
    mt.check(alice.is_connected() and bob.is_connected(), "a client was disconnected")
    alice.send_message(mto=bob.boundjid.full, mbody="after config reload")
    await bob.next_message(body="after config reload")
    c = await mt.client()
    mt.check(c.is_connected(), "no new login after reload")


@mt.test("stats, text and --json")
async def _():
    sb = mt.sandbox()
    c = await mt.client()
    out = sb.ctl("stats").stdout
    mt.check(out.strip(), "empty stats")
    value = sb.ctl("stats", json_output=True)
    mt.check(isinstance(value, (dict, list)), "stats --json is %r" % (value,))
    await c.close()


@mt.test("help lists the commands")
async def _():
    out = mt.sandbox().ctl("help").stdout
    for word in ("account", "session", "module", "reload", "stats"):
        mt.check(word in out, "%s not in help:\n%s" % (word, out))


@mt.test("an unknown command exits non-zero with a message")
async def _():
    sb = mt.sandbox()
    for argv in (("frobnicate",), ("account", "frobnicate"), ("account", "add")):
        p = sb.ctl(*argv, check=False)
        mt.check(p.returncode != 0, "%s exited 0" % " ".join(argv))
        mt.check((p.stdout + p.stderr).strip(), "%s printed nothing" % " ".join(argv))
    p = sb.ctl("frobnicate", json_output=False, check=False)
    mt.check(p.returncode != 0, "exit code")


@mt.test("--json output parses for every read command")
async def _():
    sb = mt.sandbox()
    for argv in (("account", "list"), ("session", "list"), ("module", "list"), ("stats",),
                 ("help",)):
        p = sb.ctl("--json", *argv, check=False)
        mt.check_eq(p.returncode, 0, "exit code of --json %s" % " ".join(argv))
        try:
            json.loads(p.stdout)
        except ValueError as e:
            raise mt.Failure("--json %s is not JSON (%s): %r" % (" ".join(argv), e, p.stdout))


@mt.test("magpiectl without a server fails with a message")
async def _():
    sb = mt.sandbox()
    ctl = sb.build / "tools" / "magpiectl"
    p = subprocess.run([str(ctl), "-s", str(sb.dir / "no-such.sock"), "stats"],
                       capture_output=True, text=True, timeout=30)
    mt.check(p.returncode != 0, "exit 0 without a server")
    mt.check(p.stderr.strip(), "no message on stderr")


mt.main()
