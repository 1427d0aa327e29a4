#!/usr/bin/python3
"""Configuration reloads at runtime: new certificates (magpiectl reload and
SIGHUP), a second virtual host with its own certificate chosen by SNI, and
a broken configuration that must be refused while the server keeps
running. Every test puts the sandbox's configuration back as it was."""

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import magpietest as mt  # noqa: E402

SECOND = "second.test"


def make_cert(where, domain):
    """A self-signed certificate for DOMAIN and *.DOMAIN, the way
    tools/sandbox makes the sandbox's; returns (cert path, key path)."""
    where = Path(where)
    key, cert, template = where / "key.pem", where / "cert.pem", where / "cert.template"
    template.write_text('cn = "%s"\norganization = "Magpie test"\ndns_name = "%s"\n'
                        'dns_name = "*.%s"\nexpiration_days = 30\nca\ncert_signing_key\n'
                        'signing_key\nencryption_key\ntls_www_server\n'
                        % (domain, domain, domain))
    for argv in (["certtool", "--generate-privkey", "--key-type=ecdsa", "--curve=secp256r1",
                  "--outfile", str(key)],
                 ["certtool", "--generate-self-signed", "--load-privkey", str(key),
                  "--template", str(template), "--outfile", str(cert)]):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise mt.Failure("%s: %s" % (" ".join(argv), p.stderr.strip()))
    return cert, key


def file_der(cert):
    return ssl.PEM_cert_to_DER_cert(Path(cert).read_text())


async def served_der(server_name, cafile=None, timeout=mt.WAIT):
    """The DER certificate the direct-TLS port serves for SNI server_name.
    With cafile, the handshake verifies it (chain and name) against that
    file; without, anything is taken."""
    sb = mt.sandbox()
    if cafile:
        ctx = ssl.create_default_context(cafile=str(cafile))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(sb.host, sb.c2s_tls, ssl=ctx, server_hostname=server_name),
        timeout)
    try:
        return writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()


async def wait_served(server_name, der, seconds=10):
    """Poll until the certificate served for server_name is der."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        if await served_der(server_name) == der:
            return
        if loop.time() > deadline:
            raise mt.Failure("the served certificate did not change within %ss" % seconds)
        await asyncio.sleep(0.2)


def magpied_pid():
    return int((mt.sandbox().dir / "magpied.pid").read_text().strip())


def second_host_client(jid, pw, cert):
    """mt.Client trusts the sandbox's certificate and, connecting to an IP
    address, sends no SNI (slixmpp's server name is then ''). A client of
    the second host trusts its certificate and names the host by SNI
    (an unresolvable name: slixmpp falls back to the sandbox's address)."""
    c = mt.Client(jid, pw, mechanism=mt.DEFAULT_MECH)
    c.ssl_context = ssl.create_default_context(cafile=str(cert))
    c.ca_certs = cert
    c.default_domain = jid.split("@")[1]
    return c


async def check_ping(c, what):
    r = await c.iq_get(mt.sandbox().domain, "<ping xmlns='urn:xmpp:ping'/>")
    mt.check_eq(r["type"], "result", what)


@mt.test("magpiectl reload: new connections get the new certificate, old ones keep working")
async def _():
    sb = mt.sandbox()
    original = file_der(sb.cert)
    mt.check_eq(await served_der(sb.domain, sb.cert), original, "certificate before")
    old = await mt.client()
    tmp = tempfile.mkdtemp(prefix="magpie-tls-")
    try:
        cert, key = make_cert(tmp, sb.domain)
        new = file_der(cert)
        mt.check(new != original, "certtool made the same certificate twice")
        with sb.conf_d("99-test-tls.conf", "[tls]\ncertificate=%s\nkey=%s\n" % (cert, key)):
            mt.check_eq(await served_der(sb.domain, cert), new, "certificate after reload")
            mt.check(not old.closed.is_set(), "the old client was disconnected")
            await check_ping(old, "ping on the connection made before the reload")
            # A login verifying against the new certificate works too.
            c = mt.Client(*mt.account("newcert"), mechanism=mt.DEFAULT_MECH)
            c.ssl_context = ssl.create_default_context(cafile=str(cert))
            c.ca_certs = cert
            await c.login(presence=False)
            await check_ping(c, "ping with the new certificate")
        mt.check_eq(await served_der(sb.domain, sb.cert), original, "certificate after restore")
        await check_ping(old, "ping after the restore")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@mt.test("SIGHUP reloads the certificate too")
async def _():
    sb = mt.sandbox()
    original = file_der(sb.cert)
    old = await mt.client()
    tmp = tempfile.mkdtemp(prefix="magpie-tls-")
    conf = sb.dir / "etc" / "conf.d" / "99-test-tls.conf"
    try:
        cert, key = make_cert(tmp, sb.domain)
        conf.write_text("[tls]\ncertificate=%s\nkey=%s\n" % (cert, key))
        os.kill(magpied_pid(), signal.SIGHUP)
        await wait_served(sb.domain, file_der(cert))
        mt.check_eq(await served_der(sb.domain, cert), file_der(cert), "verified new certificate")
        await check_ping(old, "ping on the connection made before SIGHUP")
        conf.unlink()
        os.kill(magpied_pid(), signal.SIGHUP)
        await wait_served(sb.domain, original)
        await check_ping(old, "ping after the second SIGHUP")
    finally:
        if conf.exists():
            conf.unlink()
            sb.ctl("reload")
        shutil.rmtree(tmp, ignore_errors=True)


@mt.test("a second virtual host with its own certificate, chosen by SNI")
async def _():
    sb = mt.sandbox()
    original = file_der(sb.cert)
    tmp = tempfile.mkdtemp(prefix="magpie-tls-")
    jid, pw = "%s@%s" % (mt.unique("second"), SECOND), "pw-second"
    try:
        cert, key = make_cert(tmp, SECOND)
        with sb.conf_d("99-test-tls-host.conf",
                       "[host %s]\ncertificate=%s\nkey=%s\n" % (SECOND, cert, key)):
            mt.check_eq(await served_der(SECOND, cert), file_der(cert), "certificate for " + SECOND)
            mt.check_eq(await served_der(sb.domain, sb.cert), original,
                        "certificate for " + sb.domain)
            sb.ctl("account", "add", jid, pw)
            try:
                c = second_host_client(jid, pw, cert)
                await c.login(presence=False)
                mt.check_eq(c.boundjid.bare, jid, "bound JID")
                r = await c.iq_get(SECOND, "<ping xmlns='urn:xmpp:ping'/>")
                mt.check_eq(r["type"], "result", "ping to " + SECOND)
                # And over direct TLS (SNI in the ClientHello).
                d = second_host_client(jid, pw, cert)
                await d.login(direct_tls=True, presence=False)
                # Both of its sessions reach each other.
                c.send_message(mto=d.boundjid.full, mbody="on the second host")
                await d.next_message(body="on the second host")
                await c.close()
                await d.close()
            finally:
                sb.ctl("account", "delete", jid)
        mt.check_eq(await served_der(SECOND), original,
                    "certificate for %s once the host is gone" % SECOND)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@mt.test("a broken configuration is refused, naming file, group and key; the server keeps running")
async def _():
    sb = mt.sandbox()
    conf = sb.dir / "etc" / "conf.d" / "99-test-broken.conf"
    old = await mt.client()
    try:
        conf.write_text("[c2s]\nmax-stanza-size=12q\n")
        p = sb.ctl("reload", check=False)
        out = p.stdout + p.stderr
        mt.check(p.returncode != 0, "reload with a broken file succeeded: " + out)
        for word in (str(conf), "[c2s]", "max-stanza-size", "12q"):
            mt.check(word in out, "message without %r: %s" % (word, out))
        await check_ping(old, "ping after the refused reload")
        await mt.client()  # a new login works
        # SIGHUP: refused the same way, reported in the log.
        size = sb.log.stat().st_size
        os.kill(magpied_pid(), signal.SIGHUP)
        for _ in range(50):
            with open(sb.log, errors="replace") as f:
                f.seek(size)
                tail = f.read()
            if "max-stanza-size" in tail:
                break
            await asyncio.sleep(0.1)
        mt.check("reload failed" in tail and str(conf) in tail,
                 "no failed reload in the log: " + tail[-1000:])
        await check_ping(old, "ping after the refused SIGHUP")
        await mt.client()
    finally:
        conf.unlink(missing_ok=True)
    sb.ctl("reload")


mt.main()
