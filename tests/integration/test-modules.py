#!/usr/bin/python3
"""Loading, unloading and reloading modules at runtime."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

VERSION = "<query xmlns='jabber:iq:version'/>"


async def version_type(c):
    r = await c.iq_get(mt.sandbox().domain, VERSION)
    if r["type"] == "error":
        return mt.error_condition(r)
    return r["type"]


@mt.test("unload, load and reload the version module while clients stay connected")
async def _():
    sb = mt.sandbox()
    alice, bob = await mt.clients(2)
    mt.check_eq(await version_type(alice), "result", "version before unload")
    try:
        sb.ctl("module", "unload", "version")
        mt.check_eq(await version_type(alice), "service-unavailable", "version after unload")
        listing = sb.ctl("module", "list").stdout
        mt.diag("module list after unload:\n" + listing)
    finally:
        sb.ctl("module", "load", "version", check=False)
    mt.check_eq(await version_type(alice), "result", "version after load")
    sb.ctl("module", "reload", "version")
    mt.check_eq(await version_type(bob), "result", "version after reload")
    # Nobody was disconnected.
    mt.check(alice.is_connected() and bob.is_connected(), "a client was disconnected")
    alice.send_message(mto=bob.boundjid.full, mbody="after reload")
    await bob.next_message(body="after reload")


@mt.test("unloading ping removes its disco feature, loading restores it")
async def _():
    sb = mt.sandbox()
    alice = await mt.client()
    try:
        sb.ctl("module", "unload", "ping")
        info = await alice["xep_0030"].get_info(jid=sb.domain, timeout=mt.WAIT)
        mt.check("urn:xmpp:ping" not in info["disco_info"]["features"],
                 "ping still advertised after unload")
    finally:
        sb.ctl("module", "load", "ping", check=False)
    info = await alice["xep_0030"].get_info(jid=sb.domain, timeout=mt.WAIT)
    mt.check("urn:xmpp:ping" in info["disco_info"]["features"], "ping not advertised after load")


@mt.test("loading an unknown module fails cleanly")
async def _():
    sb = mt.sandbox()
    p = sb.ctl("module", "load", "no-such-module", check=False)
    mt.check(p.returncode != 0, "loading a missing module succeeded")
    mt.check((p.stdout + p.stderr).strip(), "no error message")
    p = sb.ctl("module", "load", "../../etc/passwd", check=False)
    mt.check(p.returncode != 0, "a path as module name was accepted")
    alice = await mt.client()
    mt.check_eq(await version_type(alice), "result", "server still answers")


@mt.test("loading a module that is already loaded fails, unloading twice fails")
async def _():
    sb = mt.sandbox()
    p = sb.ctl("module", "load", "version", check=False)
    mt.check(p.returncode != 0, "loading version twice succeeded")
    try:
        sb.ctl("module", "unload", "version")
        p = sb.ctl("module", "unload", "version", check=False)
        mt.check(p.returncode != 0, "unloading version twice succeeded")
    finally:
        sb.ctl("module", "load", "version", check=False)


mt.main()
