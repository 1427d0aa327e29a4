#!/usr/bin/python3
"""Entity Time (XEP-0202): the server answers with its UTC time."""

import datetime
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

NS = "urn:xmpp:time"


@mt.test("the server's time is UTC, XEP-0082 format, and close to now")
async def _():
    alice = await mt.client()
    r = await alice.iq_get(mt.sandbox().domain, "<time xmlns='%s'/>" % NS)
    mt.check_eq(r["type"], "result", "type")
    t = r.xml.find("{%s}time" % NS)
    mt.check(t is not None, "no <time/>: %s" % r)
    mt.check_eq(t.findtext("{%s}tzo" % NS), "+00:00", "tzo")
    utc = t.findtext("{%s}utc" % NS)
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{3})Z", utc or "")
    mt.check(m, "utc is not a XEP-0082 DateTime in UTC: %r" % utc)
    when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    mt.check(skew < 5, "server time %s is %.1fs off" % (utc, skew))


@mt.test("time is advertised in disco#info")
async def _():
    alice = await mt.client()
    info = await alice["xep_0030"].get_info(jid=mt.sandbox().domain, timeout=mt.WAIT)
    mt.check(NS in info["disco_info"]["features"], "features: %r" % (info["disco_info"]["features"],))


@mt.test("time to a user's bare JID is not the server's business")
async def _():
    alice, bob = await mt.clients(2)
    r = await alice.iq_get(bob.boundjid.bare, "<time xmlns='%s'/>" % NS)
    mt.check_eq(r["type"], "error", "type")
    mt.check_eq(mt.error_condition(r), "service-unavailable", "condition")


@mt.test("a set of time is refused")
async def _():
    alice = await mt.client()
    iq = alice.Iq()
    iq["type"] = "set"
    iq["to"] = mt.sandbox().domain
    from xml.etree import ElementTree as ET
    iq.append(ET.fromstring("<time xmlns='%s'/>" % NS))
    try:
        r = await iq.send(timeout=mt.WAIT)
    except mt.IqError as e:
        r = e.iq
    mt.check_eq(r["type"], "error", "type")
    mt.diag("set answered with %s" % mt.error_condition(r))


mt.main()
