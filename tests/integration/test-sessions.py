#!/usr/bin/python3
"""Resource binding: several resources, conflicts."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402


@mt.test("two resources of one account are both bound")
async def _():
    jid, pw = mt.account("tworesources")
    a = await mt.client(jid, pw, resource="laptop")
    b = await mt.client(jid, pw, resource="phone")
    mt.check_eq(a.boundjid.full, jid + "/laptop", "first full JID")
    mt.check_eq(b.boundjid.full, jid + "/phone", "second full JID")
    # Both work: each gets what is sent to its full JID.
    other = await mt.client()
    other.send_message(mto=a.boundjid.full, mbody="to laptop")
    other.send_message(mto=b.boundjid.full, mbody="to phone")
    await a.next_message(body="to laptop")
    await b.next_message(body="to phone")


@mt.test("a server-generated resource when none is asked for")
async def _():
    jid, pw = mt.account("noresource")
    c = mt.Client(jid, pw, mechanism=mt.DEFAULT_MECH)
    await c.login()
    mt.check(c.boundjid.resource, "no resource bound")
    d = mt.Client(jid, pw, mechanism=mt.DEFAULT_MECH)
    await d.login()
    mt.check(d.boundjid.resource != c.boundjid.resource, "generated resources collide")


@mt.test("same resource twice: the old session gets <conflict/>")
async def _():
    jid, pw = mt.account("conflict")
    old = await mt.client(jid, pw, resource="same")
    new = await mt.client(jid, pw, resource="same")
    err = await old.next_stream_error()
    mt.check_eq(err["condition"], "conflict", "stream error of the old session")
    mt.check_eq(new.boundjid.full, jid + "/same", "new session's full JID")
    # The new session is the one that gets messages now.
    other = await mt.client()
    other.send_message(mto=jid + "/same", mbody="after conflict")
    await new.next_message(body="after conflict")


@mt.test("a session survives the other resource logging out")
async def _():
    jid, pw = mt.account("logout")
    a = await mt.client(jid, pw, resource="a")
    b = await mt.client(jid, pw, resource="b")
    await a.close()
    other = await mt.client()
    other.send_message(mto=b.boundjid.full, mbody="still there")
    await b.next_message(body="still there")


mt.main()
