#!/usr/bin/python3
"""The database goes away and comes back: bound sessions keep chatting,
logins fail at once with temporary-auth-failure instead of hanging, admin
commands say why they failed, and everything works again afterwards
(DESIGN.md §7, issue 2 item 9)."""

import asyncio
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

PG_CLUSTER = str(mt.REPO / "tools" / "pg-cluster")

# Accounts are made while the database is up.
ALICE = mt.account("outage-a")
BOB = mt.account("outage-b")
CAROL = mt.account("outage-c")


def pg(action):
    argv = [PG_CLUSTER, action, str(mt.sandbox().dir / "pg")]
    if action == "start":
        argv += ["--db", "magpie"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise mt.Failure("pg-cluster %s: %s%s" % (action, p.stdout, p.stderr))


@mt.test("bound sessions keep working while the database is down")
async def _():
    alice = await mt.client(*ALICE)
    bob = await mt.client(*BOB)
    pg("stop")
    alice.send_message(mto=BOB[0], mbody="no database needed", mtype="chat")
    msg = await bob.next_message(body="no database needed")
    mt.check_eq(msg["from"].bare, ALICE[0], "sender")
    r = await alice.iq_get(mt.sandbox().domain, "<query xmlns='jabber:iq:version'/>")
    mt.check_eq(r["type"], "result", "version during the outage")


@mt.test("a login during the outage fails with temporary-auth-failure, not a hang")
async def _():
    started = time.monotonic()
    condition = await mt.login_fails(*CAROL)
    elapsed = time.monotonic() - started
    mt.check_eq(condition, "temporary-auth-failure", "SASL failure condition")
    # [database] query-timeout (5 s) plus the failure delay, with margin.
    mt.check(elapsed < 10, "the failure took %.1f s" % elapsed)


@mt.test("magpiectl account add during the outage names the database")
async def _():
    p = mt.sandbox().ctl("account", "add", mt.unique("outage-d") + "@" + mt.sandbox().domain,
                         "pw", check=False)
    mt.check_eq(p.returncode, 1, "exit code")
    mt.check("database" in (p.stdout + p.stderr).lower(),
             "message names the database: %r" % (p.stdout + p.stderr))


@mt.test("logins work again once the database is back", timeout=60)
async def _():
    pg("start")
    deadline = time.monotonic() + 40
    last = None
    while time.monotonic() < deadline:
        try:
            c = await mt.client(*CAROL)
        except mt.LoginFailed as e:
            last = e.condition
            await asyncio.sleep(1)
            continue
        mt.check_eq(c.boundjid.bare, CAROL[0], "bound JID")
        return
    raise mt.Failure("no login within 40 s of the restart (last failure: %s)" % last)


try:
    mt.main()
finally:
    # Whatever happened above, leave the database running for the next
    # script.
    subprocess.run([PG_CLUSTER, "start", str(mt.sandbox().dir / "pg"), "--db", "magpie"],
                   capture_output=True, timeout=60)
