#!/usr/bin/python3
"""Offline messages (modules/offline): XEP-0160 storage and delivery at
login with XEP-0203 delay stamps, quotas, durability across a magpied
kill -9 and a PostgreSQL restart, and XEP-0013 flexible retrieval.

This script kills and restarts magpied and PostgreSQL; it leaves both
running for the scripts after it."""

import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

NS_OFFLINE = "http://jabber.org/protocol/offline"
NS_DELAY = "urn:xmpp:delay"
NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"
PG_CLUSTER = str(mt.REPO / "tools" / "pg-cluster")
SANDBOX = str(mt.REPO / "tools" / "sandbox")


def parse_stamp(stamp):
    """XEP-0082 DateTime in UTC, with or without fractions."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(stamp, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    raise mt.Failure("delay stamp %r is not XEP-0082 UTC" % stamp)


def check_delay(m, since):
    d = m.xml.find("{%s}delay" % NS_DELAY)
    mt.check(d is not None, "no XEP-0203 delay in %s" % m)
    mt.check_eq(d.get("from"), mt.sandbox().domain, "delay from")
    stamp = parse_stamp(d.get("stamp"))
    now = datetime.datetime.now(datetime.timezone.utc)
    mt.check(since - datetime.timedelta(seconds=5) <= stamp <= now + datetime.timedelta(seconds=5),
             "stamp %s not between %s and %s" % (stamp, since, now))


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


async def no_message(c, seconds=1.5):
    try:
        m = await c.next_message(timeout=seconds)
    except mt.Failure:
        return
    raise mt.Failure("unexpected message: %s" % m)


async def receive_bodies(c, n, timeout=mt.WAIT):
    got = []
    for _ in range(n):
        got.append(await c.next_message(timeout=timeout))
    return got


async def iq(c, type_, to, payload_xml, timeout=mt.WAIT):
    i = c.Iq()
    i["type"] = type_
    if to:
        i["to"] = to
    i.append(ET.fromstring(payload_xml))
    try:
        return await i.send(timeout=timeout)
    except mt.IqError as e:
        return e.iq


def send_n(alice, to, prefix, n, mtype="chat"):
    for i in range(n):
        alice.send_message(mto=to, mbody="%s %d" % (prefix, i), mtype=mtype)


async def check_delivered(bob, prefix, n, since):
    msgs = await receive_bodies(bob, n)
    mt.check_eq([m["body"] for m in msgs], ["%s %d" % (prefix, i) for i in range(n)], "bodies")
    for m in msgs:
        check_delay(m, since)
    return msgs


def stored(jid):
    return int(mt.sandbox().psql(
        "SELECT count(*) FROM offline_message WHERE username || '@' || host = :'p1'", jid)[0][0])


@mt.test("messages to an offline account are delivered at login, in order, with delay stamps")
async def _():
    bob_jid, bob_pw = mt.account("off-bob")
    alice = await mt.client()
    since = utcnow()
    send_n(alice, bob_jid, "hello", 25)
    alice.send_message(mto=bob_jid + "/gone", mbody="to a full JID", mtype="normal")
    await alice.sync()
    mt.check_eq(stored(bob_jid), 26, "rows stored")
    await no_message(alice, 0.5)  # no bounce
    bob = await mt.client(bob_jid, bob_pw)
    msgs = await check_delivered(bob, "hello", 25, since)
    mt.check_eq(msgs[0]["from"], alice.boundjid, "from")
    mt.check_eq(msgs[0]["type"], "chat", "type")
    last = await bob.next_message(body="to a full JID")
    check_delay(last, since)
    await no_message(bob, 1)
    await bob.sync()
    mt.check_eq(stored(bob_jid), 0, "rows left after delivery")


@mt.test("a long backlog comes in batches, in order, and escaping survives storage", timeout=90)
async def _():
    bob_jid, bob_pw = mt.account("off-long")
    alice = await mt.client()
    since = utcnow()
    n = 230
    send_n(alice, bob_jid, "long", n)
    # send_raw() overtakes slixmpp's send queue: flush the queue first.
    await alice.sync()
    tricky = "<&>'\" \u00e9\u4e2d\U0001F600 ]]> &amp;"
    alice.send_raw("<message to='%s' type='normal'><body>%s</body><thread>t1</thread>"
                   "<x xmlns='urn:example:ext' a='1&amp;2'><y xmlns='urn:example:other'>"
                   "v</y></x></message>"
                   % (bob_jid, tricky.replace("&", "&amp;").replace("<", "&lt;")
                      .replace(">", "&gt;").replace("'", "&apos;")))
    await alice.sync()
    mt.check_eq(stored(bob_jid), n + 1, "rows stored")
    bob = await mt.client(bob_jid, bob_pw)
    await check_delivered(bob, "long", n, since)
    m = await bob.next_message()
    mt.check_eq(m["body"], tricky, "body after storage")
    mt.check_eq(m["thread"], "t1", "thread")
    x = m.xml.find("{urn:example:ext}x")
    mt.check(x is not None and x.get("a") == "1&2", "extension element kept: %s" % m)
    mt.check_eq(x.find("{urn:example:other}y").text, "v", "nested element")
    check_delay(m, since)
    await bob.sync()
    mt.check_eq(stored(bob_jid), 0, "rows left after delivery")


@mt.test("the server advertises msgoffline and the XEP-0013 feature")
async def _():
    alice = await mt.client()
    r = await alice.iq_get(mt.sandbox().domain, "<query xmlns='%s'/>" % NS_INFO)
    features = {f.get("var") for f in r.xml.iter("{%s}feature" % NS_INFO)}
    mt.check("msgoffline" in features, "msgoffline in %s" % features)
    mt.check(NS_OFFLINE in features, "%s in %s" % (NS_OFFLINE, features))


@mt.test("a negative-priority login gets nothing until a non-negative presence")
async def _():
    bob_jid, bob_pw = mt.account("off-neg")
    alice = await mt.client()
    since = utcnow()
    send_n(alice, bob_jid, "early", 3)
    await alice.sync()
    bob = await mt.client(bob_jid, bob_pw, presence=False)
    bob.send_presence(ppriority=-1)
    await bob.sync()
    # Stored too while bob is only available at a negative priority.
    alice.send_message(mto=bob_jid, mbody="early 3", mtype="chat")
    await alice.sync()
    await no_message(bob)
    mt.check_eq(stored(bob_jid), 4, "rows stored")
    bob.send_presence(ppriority=0)
    await check_delivered(bob, "early", 4, since)
    await bob.sync()
    mt.check_eq(stored(bob_jid), 0, "rows left after delivery")
    # Back and forth without anything new: nothing more arrives.
    bob.send_presence(ppriority=-5)
    bob.send_presence(ppriority=5)
    await no_message(bob, 1)


@mt.test("groupchat, headline and error messages are not stored")
async def _():
    bob_jid, bob_pw = mt.account("off-types")
    alice = await mt.client()
    alice.send_message(mto=bob_jid, mbody="gc", mtype="groupchat")
    alice.send_message(mto=bob_jid, mbody="news", mtype="headline")
    alice.send_raw("<message to='%s' type='error'><body>err</body>"
                   "<error type='cancel'><item-not-found xmlns='%s'/></error></message>"
                   % (bob_jid, mt.NS_STANZAS))
    # A chat state alone is dropped (XEP-0085 5.6), not bounced.
    alice.send_raw("<message to='%s' type='chat'><active xmlns="
                   "'http://jabber.org/protocol/chatstates'/></message>" % bob_jid)
    alice.send_message(mto=bob_jid, mbody="sentinel", mtype="chat")
    await alice.sync()
    err = await alice.next_message()
    mt.check_eq(err["type"], "error", "groupchat bounce type")
    mt.check_eq(err["body"], "gc", "bounced message")
    mt.check_eq(mt.error_condition(err), "service-unavailable", "condition")
    await no_message(alice, 0.5)
    mt.check_eq(stored(bob_jid), 1, "rows stored")
    bob = await mt.client(bob_jid, bob_pw)
    m = await bob.next_message()
    mt.check_eq(m["body"], "sentinel", "the only stored message")
    await no_message(bob, 1)


@mt.test("a message to a nonexistent account gets service-unavailable")
async def _():
    alice = await mt.client()
    ghost = "%s@%s" % (mt.unique("ghost"), mt.sandbox().domain)
    alice.send_message(mto=ghost, mbody="anyone?", mtype="chat")
    m = await alice.next_message()
    mt.check_eq(m["type"], "error", "type")
    mt.check_eq(mt.error_condition(m), "service-unavailable", "condition")
    mt.check_eq(stored(ghost), 0, "rows stored")


@mt.test("over the quota the sender gets service-unavailable", timeout=60)
async def _():
    sb = mt.sandbox()
    bob_jid, bob_pw = mt.account("off-quota")
    with sb.conf_d("99-offline-test.conf", "[offline]\nmax-messages=3\n"):
        alice = await mt.client()
        since = utcnow()
        send_n(alice, bob_jid, "q", 4)
        await alice.sync()
        err = await alice.next_message()
        mt.check_eq(err["type"], "error", "type of the answer to the 4th")
        mt.check_eq(err["body"], "q 3", "the bounced message")
        mt.check_eq(mt.error_condition(err), "service-unavailable", "condition")
        await no_message(alice, 0.5)
        bob = await mt.client(bob_jid, bob_pw)
        await check_delivered(bob, "q", 3, since)
        await no_message(bob, 1)


@mt.test("max-bytes bounds the stored bytes", timeout=60)
async def _():
    sb = mt.sandbox()
    bob_jid, bob_pw = mt.account("off-bytes")
    with sb.conf_d("99-offline-test.conf", "[offline]\nmax-bytes=2k\n"):
        alice = await mt.client()
        alice.send_message(mto=bob_jid, mbody="a" * 1200, mtype="chat")
        alice.send_message(mto=bob_jid, mbody="b" * 1200, mtype="chat")
        await alice.sync()
        err = await alice.next_message()
        mt.check_eq(mt.error_condition(err), "service-unavailable", "condition")
        mt.check_eq(err["body"], "b" * 1200, "the bounced message")
        mt.check_eq(stored(bob_jid), 1, "rows stored")


@mt.test("deleting the account deletes its offline messages")
async def _():
    bob_jid, _ = mt.account("off-del")
    alice = await mt.client()
    send_n(alice, bob_jid, "bye", 2)
    await alice.sync()
    mt.check_eq(stored(bob_jid), 2, "rows stored")
    rows = mt.sandbox().psql("SELECT jid, messages FROM magpie_offline_view WHERE jid = :'p1'",
                             bob_jid)
    mt.check_eq(rows, [[bob_jid, "2"]], "magpie_offline_view")
    mt.sandbox().ctl("account", "delete", bob_jid)
    mt.check_eq(stored(bob_jid), 0, "rows after account deletion")


@mt.test("magpie_offline_purge() deletes a user's messages")
async def _():
    bob_jid, _ = mt.account("off-purge")
    alice = await mt.client()
    send_n(alice, bob_jid, "x", 3)
    await alice.sync()
    rows = mt.sandbox().psql("SELECT magpie_offline_purge(:'p1')", bob_jid)
    mt.check_eq(rows, [["3"]], "purged")
    mt.check_eq(stored(bob_jid), 0, "rows left")


# ---------------------------------------------------------------- XEP-0013


def offline_node(m):
    item = m.xml.find("{%s}offline/{%s}item" % (NS_OFFLINE, NS_OFFLINE))
    mt.check(item is not None, "no <offline><item/></offline> in %s" % m)
    return item.get("node")


async def count(bob, to):
    r = await bob.iq_get(to, "<query xmlns='%s' node='%s'/>" % (NS_INFO, NS_OFFLINE))
    mt.check_eq(r["type"], "result", "disco#info type")
    ident = r.xml.find("{%s}query/{%s}identity" % (NS_INFO, NS_INFO))
    mt.check(ident is not None and ident.get("category") == "automation"
             and ident.get("type") == "message-list", "identity automation/message-list")
    for f in r.xml.iter("{%s}field" % NS_DATA):
        if f.get("var") == "number_of_messages":
            return int(f.find("{%s}value" % NS_DATA).text)
    raise mt.Failure("no number_of_messages in %s" % r)


@mt.test("XEP-0013: count, headers, view, remove, fetch, purge; no flood afterwards")
async def _():
    bob_jid, bob_pw = mt.account("off-flex")
    alice = await mt.client()
    since = utcnow()
    send_n(alice, bob_jid, "flex", 3)
    await alice.sync()
    bob = await mt.client(bob_jid, bob_pw, presence=False)
    mt.check_eq(await count(bob, bob_jid), 3, "number_of_messages")
    mt.check_eq(await count(bob, None), 3, "number_of_messages (no 'to')")

    r = await bob.iq_get(bob_jid, "<query xmlns='%s' node='%s'/>" % (NS_ITEMS, NS_OFFLINE))
    mt.check_eq(r["type"], "result", "disco#items type")
    items = r.xml.findall("{%s}query/{%s}item" % (NS_ITEMS, NS_ITEMS))
    mt.check_eq(len(items), 3, "items")
    for it in items:
        mt.check_eq(it.get("jid"), bob_jid, "item jid")
        mt.check_eq(it.get("name"), str(alice.boundjid), "item name (sender)")
    nodes = [it.get("node") for it in items]
    mt.check_eq(len(set(nodes)), 3, "distinct nodes")

    # view the second
    r = await iq(bob, "get", bob_jid, "<offline xmlns='%s'><item action='view' node='%s'/>"
                 "</offline>" % (NS_OFFLINE, nodes[1]))
    mt.check_eq(r["type"], "result", "view type")
    m = await bob.next_message()
    mt.check_eq(m["body"], "flex 1", "viewed message")
    mt.check_eq(offline_node(m), nodes[1], "node of the viewed message")
    check_delay(m, since)

    # remove the first; viewing it again is item-not-found
    r = await iq(bob, "set", bob_jid, "<offline xmlns='%s'><item action='remove' node='%s'/>"
                 "</offline>" % (NS_OFFLINE, nodes[0]))
    mt.check_eq(r["type"], "result", "remove type")
    r = await iq(bob, "get", bob_jid, "<offline xmlns='%s'><item action='view' node='%s'/>"
                 "</offline>" % (NS_OFFLINE, nodes[0]))
    mt.check_eq(r["type"], "error", "view of a removed node")
    mt.check_eq(mt.error_condition(r), "item-not-found", "condition")
    mt.check_eq(await count(bob, bob_jid), 2, "number_of_messages after remove")

    # fetch: the two left, nothing deleted
    r = await iq(bob, "get", None, "<offline xmlns='%s'><fetch/></offline>" % NS_OFFLINE)
    mt.check_eq(r["type"], "result", "fetch type")
    msgs = await receive_bodies(bob, 2)
    mt.check_eq([m["body"] for m in msgs], ["flex 1", "flex 2"], "fetched")
    mt.check_eq([offline_node(m) for m in msgs], nodes[1:], "fetched nodes")
    mt.check_eq(await count(bob, bob_jid), 2, "number_of_messages after fetch")

    # A flexible session is not flooded at its initial presence.
    bob.send_presence()
    await bob.sync()
    await no_message(bob, 1.5)
    mt.check_eq(await count(bob, bob_jid), 2, "number_of_messages after presence")

    r = await iq(bob, "set", bob_jid, "<offline xmlns='%s'><purge/></offline>" % NS_OFFLINE)
    mt.check_eq(r["type"], "result", "purge type")
    mt.check_eq(await count(bob, bob_jid), 0, "number_of_messages after purge")
    mt.check_eq(stored(bob_jid), 0, "rows after purge")


@mt.test("XEP-0013: bad requests and other accounts' storage")
async def _():
    bob_jid, bob_pw = mt.account("off-flex-bad")
    alice = await mt.client()
    send_n(alice, bob_jid, "secret", 1)
    await alice.sync()
    bob = await mt.client(bob_jid, bob_pw, presence=False)
    # alice may not look at bob's storage
    r = await alice.iq_get(bob_jid, "<query xmlns='%s' node='%s'/>" % (NS_INFO, NS_OFFLINE))
    mt.check_eq(r["type"], "error", "disco of someone else's node")
    mt.check_eq(mt.error_condition(r), "item-not-found", "condition")
    r = await iq(alice, "get", bob_jid, "<offline xmlns='%s'><fetch/></offline>" % NS_OFFLINE)
    mt.check_eq(r["type"], "error", "fetch of someone else's storage")
    mt.check_eq(mt.error_condition(r), "forbidden", "condition")
    r = await iq(alice, "set", bob_jid, "<offline xmlns='%s'><purge/></offline>" % NS_OFFLINE)
    mt.check_eq(mt.error_condition(r), "forbidden", "purge of someone else's storage")
    await no_message(alice, 0.5)

    for node in ["abc", "0", "007", "-1", "99999999999999999999", "1' OR '1'='1", "", "1,2"]:
        r = await iq(bob, "get", bob_jid, "<offline xmlns='%s'><item action='view' node=%s/>"
                     "</offline>" % (NS_OFFLINE, json.dumps(node)))
        mt.check_eq(r["type"], "error", "view of node %r" % node)
        mt.check_eq(mt.error_condition(r), "item-not-found", "condition for node %r" % node)
    for type_, payload in [
            ("set", "<fetch/>"), ("get", "<purge/>"), ("get", "<fetch/><purge/>"),
            ("get", ""), ("get", "<item node='1'/>"), ("get", "<item action='remove' node='1'/>"),
            ("set", "<item action='view' node='1'/>")]:
        r = await iq(bob, type_, bob_jid, "<offline xmlns='%s'>%s</offline>"
                     % (NS_OFFLINE, payload))
        mt.check_eq(r["type"], "error", "%s %s" % (type_, payload))
        mt.check_eq(mt.error_condition(r), "bad-request", "%s %s" % (type_, payload))
    many = "".join("<item action='view' node='%d'/>" % i for i in range(1, 1200))
    r = await iq(bob, "get", bob_jid, "<offline xmlns='%s'>%s</offline>" % (NS_OFFLINE, many))
    mt.check_eq(r["type"], "error", "too many nodes")
    mt.check_eq(stored(bob_jid), 1, "nothing was touched")
    await no_message(bob, 0.5)


# ---------------------------------------------------------------- durability


def magpied_pid():
    with open(mt.sandbox().dir / "magpied.pid") as f:
        return int(f.read().strip())


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def sandbox_start():
    sb = mt.sandbox()
    env = dict(os.environ)
    env["MAGPIE_BUILD_DIR"] = str(sb.build)
    p = subprocess.run([SANDBOX, "start", str(sb.dir), "--domain", sb.domain,
                        "--port-base", str(sb.c2s)], capture_output=True, text=True,
                       timeout=120, env=env)
    if p.returncode != 0:
        raise mt.Failure("sandbox start: %s%s" % (p.stdout, p.stderr))


def pg(action):
    argv = [PG_CLUSTER, action, str(mt.sandbox().dir / "pg")]
    if action == "start":
        argv += ["--db", "magpie"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise mt.Failure("pg-cluster %s: %s%s" % (action, p.stdout, p.stderr))


async def login_retry(jid, pw, seconds=40):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            return await mt.client(jid, pw)
        except (mt.LoginFailed, mt.Failure) as e:
            last = e
            await asyncio.sleep(1)
    raise mt.Failure("no login within %ss (last: %s)" % (seconds, last))


@mt.test("nothing accepted is lost when magpied is killed (kill -9)", timeout=120)
async def _():
    bob_jid, bob_pw = mt.account("off-kill")
    alice = await mt.client()
    since = utcnow()
    n = 30
    send_n(alice, bob_jid, "kill", n)
    await alice.sync()  # every message was accepted (stored) by now
    await no_message(alice, 0.3)
    pid = magpied_pid()
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not pid_alive(pid):
            break
        await asyncio.sleep(0.1)
    mt.check(not pid_alive(pid), "magpied did not die")
    # A zombie not reaped yet still passes `kill -0` in tools/sandbox,
    # which would then take the sandbox for running: the pid is stale.
    (mt.sandbox().dir / "magpied.pid").unlink(missing_ok=True)
    await alice.close()
    sandbox_start()
    mt.check(magpied_pid() != pid, "a new magpied runs")
    bob = await login_retry(bob_jid, bob_pw)
    await check_delivered(bob, "kill", n, since)
    await no_message(bob, 1)


@mt.test("nothing is lost across a PostgreSQL restart; no storage means a bounce", timeout=120)
async def _():
    bob_jid, bob_pw = mt.account("off-pg")
    alice = await mt.client()
    since = utcnow()
    n = 10
    send_n(alice, bob_jid, "pg", n)
    await alice.sync()
    await no_message(alice, 0.3)
    try:
        pg("stop")
        # Cannot be stored now: the sender must hear about it.
        alice.send_message(mto=bob_jid, mbody="during the outage", mtype="chat")
        err = await alice.next_message(timeout=20)
        mt.check_eq(err["type"], "error", "answer during the outage")
        mt.check_eq(mt.error_condition(err), "service-unavailable", "condition")
    finally:
        pg("start")
    bob = await login_retry(bob_jid, bob_pw)
    await check_delivered(bob, "pg", n, since)
    await no_message(bob, 1)


try:
    mt.main()
finally:
    # Whatever happened above, leave PostgreSQL and magpied running for
    # the next script.
    subprocess.run([PG_CLUSTER, "start", str(mt.sandbox().dir / "pg"), "--db", "magpie"],
                   capture_output=True, timeout=60)
    try:
        if not pid_alive(magpied_pid()):
            (mt.sandbox().dir / "magpied.pid").unlink(missing_ok=True)
            sandbox_start()
    except (OSError, ValueError, mt.Failure):
        try:
            sandbox_start()
        except mt.Failure as e:
            mt.diag(str(e))
