"""A small harness for Magpie's integration tests.

Each tests/integration/*.py file is a runnable script that talks to a
running sandbox (tools/sandbox start DIR; the environment variable
MAGPIE_SANDBOX names DIR) and prints TAP:

    import magpietest as mt

    @mt.test("a message reaches the bare JID")
    async def _():
        alice, bob = await mt.clients(2)
        ...

    mt.main()

Tests run one after the other in one asyncio loop, each with a timeout.
Every client a test opened is disconnected afterwards, so tests stay
independent; each test makes fresh accounts (mt.account()).

Run with the Debian python (/usr/bin/python3): it has slixmpp 1.8.3.
"""

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import ssl
import subprocess
import sys
import traceback
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parents[2]
NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

DEFAULT_TIMEOUT = float(os.environ.get("MAGPIE_TEST_TIMEOUT", "30"))
WAIT = float(os.environ.get("MAGPIE_TEST_WAIT", "10"))
# The mechanism clients use unless a test names one (useful to point the
# harness at another server, e.g. Prosody 0.12 which has no SCRAM-SHA-256).
DEFAULT_MECH = os.environ.get("MAGPIE_TEST_MECHANISM", "SCRAM-SHA-256")

# slixmpp logs every failed login at ERROR level; the tests provoke many.
logging.basicConfig(level=os.environ.get("MAGPIE_TEST_LOG", "CRITICAL"),
                    format="# %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


class Skip(Exception):
    """Raise to mark the current test as skipped (TAP "# SKIP")."""


class Failure(AssertionError):
    pass


# --------------------------------------------------------------------------
# The sandbox


class Sandbox:
    def __init__(self, path=None):
        path = path or os.environ.get("MAGPIE_SANDBOX")
        if not path:
            raise SystemExit("MAGPIE_SANDBOX is not set: run tests/run, or set it to a "
                             "directory made by tools/sandbox start")
        self.dir = Path(path).resolve()
        with open(self.dir / "sandbox.json") as f:
            self.info = json.load(f)
        self.host = "127.0.0.1"
        self.domain = self.info["domain"]
        self.c2s = self.info["c2s"]
        self.c2s_tls = self.info["c2s_tls"]
        self.control = self.info["control"]
        self.cert = Path(self.info.get("cert", self.dir / "etc" / "cert.pem"))
        self.pghost = self.info["pghost"]
        self.log = Path(self.info["log"])
        self.build = Path(self.info.get("build", REPO / "build"))

    def ctl(self, *args, json_output=False, check=True, timeout=30):
        """Run `tools/sandbox ctl DIR ARGS...`; returns a CompletedProcess
        (text mode). With json_output, passes --json and returns the
        parsed value. With check, a non-zero exit raises Failure."""
        argv = [str(REPO / "tools" / "sandbox"), "ctl", str(self.dir)]
        if json_output:
            argv.append("--json")
        argv += [str(a) for a in args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise Failure("magpiectl %s: exit %d: %s%s" % (" ".join(map(str, args)),
                                                          p.returncode, p.stdout, p.stderr))
        if json_output and p.returncode == 0:
            return json.loads(p.stdout)
        return p

    def psql(self, sql, *params):
        """Run one SQL statement (psql variables :'p1', :'p2'... hold
        params) in the sandbox's database; returns the rows as lists of
        strings."""
        argv = ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                "-h", self.pghost, "-U", "magpie", "-d", "magpie"]
        for i, v in enumerate(params, 1):
            argv += ["-v", "p%d=%s" % (i, v)]
        p = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise Failure("psql: %s" % p.stderr.strip())
        return [line.split("\t") for line in p.stdout.splitlines() if line]

    @contextlib.contextmanager
    def conf_d(self, name, text, reload=True):
        """Write DIR/etc/conf.d/NAME and reload; on leaving, remove it and
        reload again, so the next test sees the sandbox as it was. Yields
        the file's path."""
        path = self.dir / "etc" / "conf.d" / name
        path.write_text(text)
        try:
            if reload:
                self.ctl("reload")
            yield path
        finally:
            path.unlink(missing_ok=True)
            self.ctl("reload")


_sandbox = None


def sandbox():
    global _sandbox
    if _sandbox is None:
        _sandbox = Sandbox()
    return _sandbox


def unique(prefix="u"):
    return "%s-%s" % (prefix, secrets.token_hex(4))


def account(prefix="user", password=None):
    """Create a fresh account with magpiectl; returns (jid, password)."""
    sb = sandbox()
    jid = "%s@%s" % (unique(prefix), sb.domain)
    password = password or "pw-" + secrets.token_hex(6)
    sb.ctl("account", "add", jid, password)
    return jid, password


# --------------------------------------------------------------------------
# TAP

_tests = []


def test(name, timeout=None):
    """Register an async test function."""
    def deco(fn):
        _tests.append((name, fn, timeout or DEFAULT_TIMEOUT))
        return fn
    return deco


def diag(msg):
    for line in str(msg).splitlines() or [""]:
        print("# " + line, flush=True)


def check(cond, msg="check failed"):
    if not cond:
        raise Failure(msg)


def check_eq(got, want, what="value"):
    if got != want:
        raise Failure("%s: got %r, want %r" % (what, got, want))


_open_clients = []


async def _cleanup():
    clients = list(_open_clients)
    _open_clients.clear()
    for c in clients:
        try:
            await c.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


async def _run_all(selected):
    failed = 0
    for n, (name, fn, timeout) in enumerate(selected, 1):
        try:
            await asyncio.wait_for(fn(), timeout)
        except Skip as e:
            print("ok %d - %s # SKIP %s" % (n, name, e), flush=True)
        except asyncio.TimeoutError:
            failed += 1
            print("not ok %d - %s" % (n, name), flush=True)
            diag("timed out after %ss" % timeout)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok %d - %s" % (n, name), flush=True)
            if isinstance(e, Failure):
                diag(str(e))
            else:
                diag(traceback.format_exc())
        else:
            print("ok %d - %s" % (n, name), flush=True)
        await _cleanup()
    return failed


def main():
    """Run the registered tests; an argument selects tests whose name
    contains it."""
    selected = _tests
    if len(sys.argv) > 1:
        selected = [t for t in _tests if any(a in t[0] for a in sys.argv[1:])]
    print("1..%d" % len(selected), flush=True)
    failed = asyncio.run(_run_all(selected))
    sys.exit(1 if failed else 0)


# --------------------------------------------------------------------------
# slixmpp clients


class LoginFailed(Exception):
    def __init__(self, condition, text=""):
        super().__init__("login failed: %s %s" % (condition, text))
        self.condition = condition


class Client(slixmpp.ClientXMPP):
    """A slixmpp client trusting the sandbox certificate, with queues of
    what it receives."""

    def __init__(self, jid, password, *, mechanism=None, tls12=False, channel_binding=False):
        super().__init__(jid, password)
        sb = sandbox()
        self.sb = sb
        self.ca_certs = sb.cert
        # A context of our own: tls12 forces TLS 1.2 (the only version
        # where slixmpp's hard-coded tls-unique exists).
        ctx = ssl.create_default_context(cafile=str(sb.cert))
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.ssl_context = ctx
        self.messages = asyncio.Queue()
        self.stream_errors = asyncio.Queue()
        self.presences = asyncio.Queue()
        self._outcome = None
        self.closed = asyncio.Event()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092")
        self.register_plugin("xep_0199", {"keepalive": False})
        mechs = self["feature_mechanisms"]
        if mechanism:
            mechs.use_mechs = {mechanism}
        # slixmpp sends the gs2 flag "y" ("I could bind, you did not
        # offer it") whenever TLS is up, which a server offering -PLUS
        # must refuse (RFC 5802 6). Unless a test wants channel binding,
        # present no binding data, so the flag is "n".
        if not channel_binding and not (mechanism or "").endswith("-PLUS"):
            default = mechs._default_credentials

            def creds(required, optional):
                r = default(required, optional)
                if "channel_binding" in r:
                    r["channel_binding"] = None
                return r
            mechs.sasl_callback = creds
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("stream_error", lambda e: self.stream_errors.put_nowait(e))
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("presence", lambda p: self.presences.put_nowait(p))
        self.last_failure = None

    # outcome of the login
    def _settle(self, value):
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(value)

    def _on_session_start(self, _):
        self._settle(("ok", None))

    def _on_failed_auth(self, stanza):
        self.last_failure = stanza["condition"] or "failure"

    def _on_failed_all_auth(self, _):
        self._settle(("auth", self.last_failure or "no-mechanism"))

    def _on_disconnected(self, reason):
        self.closed.set()
        self._settle(("disconnected", str(reason)))

    def _on_connection_failed(self, err):
        self.cancel_connection_attempt()
        self._settle(("connection", str(err)))

    async def login(self, direct_tls=False, timeout=WAIT, presence=True):
        sb = self.sb
        self._outcome = asyncio.get_running_loop().create_future()
        port = sb.c2s_tls if direct_tls else sb.c2s
        self.connect((sb.host, port), use_ssl=direct_tls, force_starttls=not direct_tls)
        _open_clients.append(self)
        try:
            kind, detail = await asyncio.wait_for(self._outcome, timeout)
        except asyncio.TimeoutError:
            self.cancel_connection_attempt()
            self.abort()
            raise Failure("login of %s timed out" % self.boundjid.bare)
        if kind == "auth":
            self.abort()
            raise LoginFailed(detail)
        if kind != "ok":
            self.cancel_connection_attempt()
            raise LoginFailed(kind, detail)
        if presence:
            self.send_presence()
            await self.sync()
        return self

    async def sync(self, timeout=WAIT):
        """Wait until the server has processed everything sent so far: a
        stream is handled in order, so any answer to an IQ will do (the
        ping module may be unloaded; an error reply is fine)."""
        await self.iq_get(self.sb.domain, "<ping xmlns='urn:xmpp:ping'/>", timeout=timeout)

    async def close(self):
        if self.transport:
            self.disconnect(wait=1)
            try:
                await asyncio.wait_for(self.closed.wait(), 3)
            except asyncio.TimeoutError:
                self.abort()
        self.cancel_connection_attempt()

    async def next_message(self, timeout=WAIT, body=None):
        """The next received message (skipping ones without a body unless
        body is None and the message is an error)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise Failure("%s: no message within %ss" % (self.boundjid, timeout))
            try:
                m = await asyncio.wait_for(self.messages.get(), left)
            except asyncio.TimeoutError:
                raise Failure("%s: no message within %ss" % (self.boundjid, timeout))
            if body is None or m["body"] == body:
                return m

    async def next_stream_error(self, timeout=WAIT):
        try:
            return await asyncio.wait_for(self.stream_errors.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure("%s: no stream error within %ss" % (self.boundjid, timeout))

    async def iq_get(self, to, payload_xml, timeout=WAIT):
        """Send <iq type='get'> with a raw XML payload; returns the reply
        (result or error) without raising."""
        iq = self.Iq()
        iq["type"] = "get"
        iq["to"] = to
        from xml.etree import ElementTree as ET
        iq.append(ET.fromstring(payload_xml))
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq


async def client(jid=None, password=None, *, resource=None, direct_tls=False,
                 mechanism=DEFAULT_MECH, tls12=False, channel_binding=False, presence=True):
    """A logged-in client. Without jid, a fresh account is created. The
    mechanism is fixed (default SCRAM-SHA-256) so that no failed attempt
    at another one costs a failure delay; None lets slixmpp choose."""
    if jid is None:
        jid, password = account()
    if resource:
        jid = "%s/%s" % (jid.split("/")[0], resource)
    c = Client(jid, password, mechanism=mechanism, tls12=tls12,
               channel_binding=channel_binding)
    return await c.login(direct_tls=direct_tls, presence=presence)


async def clients(n, **kw):
    return [await client(**kw) for _ in range(n)]


async def login_fails(jid, password, **kw):
    """Try to log in; returns the failure condition, fails the test when
    the login succeeds."""
    try:
        c = await client(jid, password, **kw)
    except LoginFailed as e:
        return e.condition
    await c.close()
    raise Failure("login of %s unexpectedly succeeded" % jid)


def error_condition(stanza):
    """The defined condition of a stanza error, e.g. 'service-unavailable'."""
    return stanza["error"]["condition"]


# --------------------------------------------------------------------------
# Raw XML streams, for what clients never send


class RawStream:
    """A raw TCP (optionally TLS) connection to the c2s port."""

    def __init__(self):
        self.reader = None
        self.writer = None
        self.buf = ""

    @classmethod
    async def open(cls, direct_tls=False, timeout=WAIT):
        sb = sandbox()
        self = cls()
        ctx = None
        if direct_tls:
            ctx = ssl.create_default_context(cafile=str(sb.cert))
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(sb.host, sb.c2s_tls if direct_tls else sb.c2s, ssl=ctx,
                                    server_hostname=sb.domain if ctx else None), timeout)
        return self

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)

    def header(self, to=None):
        to = to or sandbox().domain
        self.send("<?xml version='1.0'?><stream:stream to='%s' version='1.0' xml:lang='en' "
                  "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>" % to)

    async def starttls(self, timeout=WAIT):
        sb = sandbox()
        ctx = ssl.create_default_context(cafile=str(sb.cert))
        await asyncio.wait_for(self.writer.start_tls(ctx, server_hostname=sb.domain), timeout)
        self.buf = ""

    @classmethod
    async def logged_in(cls, jid=None, password=None, resource="raw", timeout=WAIT):
        """A raw stream logged in the way a minimal client does it:
        STARTTLS, SASL PLAIN, stream restart, bind (no session, no
        presence). Without jid, a fresh account is made. Sets self.jid
        (the bound full JID); self.buf is empty afterwards."""
        import base64
        if jid is None:
            jid, password = account("raw")
        self = await cls.open(timeout=timeout)
        try:
            self.header()
            await self.read_until(r"</stream:features>", timeout)
            self.send("<starttls xmlns='%s'/>" % NS_TLS)
            await self.read_until(r"<proceed", timeout)
            await self.starttls(timeout)
            self.header()
            await self.read_until(r"</stream:features>", timeout)
            blob = base64.b64encode(b"\0" + jid.split("@")[0].encode() + b"\0"
                                    + password.encode()).decode()
            self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, blob))
            await self.read_until(r"<success[^>]*(/>|</success>)", timeout)
            self.buf = ""
            self.header()
            await self.read_until(r"</stream:features>", timeout)
            self.send("<iq type='set' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                      "<resource>%s</resource></bind></iq>" % resource)
            reply = await self.read_iq("bind-1", timeout)
            j = re.search(r"<jid>([^<]+)</jid>", reply)
            if not j:
                raise Failure("bind failed: " + reply)
            self.jid = j.group(1)
            self.buf = ""
        except BaseException:
            self.close()
            raise
        return self

    async def ping(self, id="ping-1", timeout=WAIT):
        """Send a ping IQ to the server domain and wait for its answer
        (result or error); returns the reply's text."""
        self.send("<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                  % (id, sandbox().domain))
        return await self.read_iq(id, timeout)

    async def read_iq(self, id, timeout=WAIT):
        """Wait for the <iq> with this id; returns its text and drops
        everything received up to its end from self.buf."""
        m = await self.read_until(r"<iq[^>]*\sid=['\"]%s['\"][^>]*?(/>|>.*?</iq>)" % re.escape(id),
                                  timeout)
        self.buf = self.buf[m.end():]
        return m.group(0)

    async def read_until(self, pattern, timeout=WAIT):
        """Read until the received text matches the regex; returns the
        match. Raises Failure on timeout or when the server closes first."""
        rx = re.compile(pattern, re.S)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                return m
            left = deadline - loop.time()
            if left <= 0:
                raise Failure("timed out waiting for %r; received: %r" % (pattern, self.buf[-2000:]))
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError):
                chunk = b""
            if not chunk:
                m = rx.search(self.buf)
                if m:
                    return m
                raise Failure("connection closed while waiting for %r; received: %r"
                              % (pattern, self.buf[-2000:]))
            self.buf += chunk.decode("utf-8", "replace")

    async def read_to_eof(self, timeout=WAIT):
        """Read until the server closes the connection; returns all text.
        Raises Failure if it stays open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise Failure("server did not close the connection; received: %r"
                              % self.buf[-2000:])
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError):
                chunk = b""
            if not chunk:
                return self.buf
            self.buf += chunk.decode("utf-8", "replace")

    def close(self):
        if self.writer:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                pass
