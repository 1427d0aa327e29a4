"""Exact-XML clients for the roster and presence tests.

A RawClient is a magpietest.RawStream logged in (STARTTLS, PLAIN, bind)
whose incoming stanzas are parsed into ElementTree elements and queued,
so a test can wait for "the next stanza matching this" in any order and
check that something did NOT arrive. Nothing is answered automatically
except roster pushes (with an empty result, RFC 6121 2.1.6).
"""

import asyncio
import itertools
import xml.etree.ElementTree as ET

import magpietest as mt

NS = "jabber:client"
NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
_ids = itertools.count(1)


def q(tag, ns=NS):
    return "{%s}%s" % (ns, tag)


def esc(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


class RawClient:
    def __init__(self, rs, password):
        self.rs = rs
        self.password = password
        self.jid = rs.jid
        self.bare = rs.jid.split("/")[0]
        self.stanzas = []
        self.changed = asyncio.Event()
        self.closed = False
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.parser.feed("<stream:stream xmlns='%s' xmlns:stream='%s'>" % (NS, mt.NS_STREAM))
        self.depth = 0
        self.root = None
        self.autoack_pushes = True
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def login(cls, jid=None, password=None, resource=None, presence=True, roster=True,
                    priority=None):
        if jid is None:
            jid, password = mt.account("rc")
        rs = await mt.RawStream.logged_in(jid, password, resource or mt.unique("r"))
        mt._open_clients.append(_Closer(rs))
        self = cls(rs, password)
        if rs.buf:
            self._feed(rs.buf)
            rs.buf = ""
        if roster:
            self.roster_reply = await self.iq("get", "<query xmlns='jabber:iq:roster'/>")
        if presence:
            self.send("<presence>%s</presence>" % (
                "" if priority is None else "<priority>%d</priority>" % priority))
        await self.ping()
        return self

    def _feed(self, text):
        self.parser.feed(text)
        for ev, el in self.parser.read_events():
            if ev == "start":
                self.depth += 1
                if self.depth == 1:
                    self.root = el
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.root.remove(el)
                    self._got(el)
        self.changed.set()

    def _got(self, el):
        if (self.autoack_pushes and el.tag == q("iq") and el.get("type") == "set"
                and el.find(q("query", NS_ROSTER)) is not None):
            self.send("<iq type='result' id='%s'/>" % esc(el.get("id", "")))
        self.stanzas.append(el)

    async def _read(self):
        try:
            while True:
                chunk = await self.rs.reader.read(65536)
                if not chunk:
                    break
                self._feed(chunk.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - connection gone
            pass
        self.closed = True
        self.changed.set()

    def send(self, xml):
        self.rs.send(xml)

    async def wait(self, pred, timeout=mt.WAIT, what="stanza"):
        """The first queued stanza for which pred(el) is true (removed from
        the queue); fails after timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, el in enumerate(self.stanzas):
                if pred(el):
                    del self.stanzas[i]
                    return el
            left = deadline - loop.time()
            if left <= 0:
                raise mt.Failure("%s: no %s within %ss; queued: %s" % (
                    self.jid, what, timeout,
                    [ET.tostring(e, encoding="unicode")[:300] for e in self.stanzas]))
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def nothing(self, pred, timeout=1.0, what="stanza"):
        """Fail if a stanza matching pred arrives within timeout."""
        try:
            el = await self.wait(pred, timeout)
        except mt.Failure:
            return
        raise mt.Failure("%s: unexpected %s: %s" % (self.jid, what,
                                                    ET.tostring(el, encoding="unicode")))

    async def iq(self, type, payload, to=None, timeout=mt.WAIT):
        id = "t%d" % next(_ids)
        self.send("<iq type='%s' id='%s'%s>%s</iq>" % (
            type, id, " to='%s'" % to if to else "", payload))
        return await self.wait(lambda e: e.tag == q("iq") and e.get("id") == id
                               and e.get("type") in ("result", "error"), timeout,
                               "reply to iq %s" % id)

    async def ping(self):
        await self.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=mt.sandbox().domain)

    async def roster(self, ver=None):
        r = await self.iq("get", "<query xmlns='jabber:iq:roster'%s/>" % (
            "" if ver is None else " ver='%s'" % esc(ver)))
        mt.check_eq(r.get("type"), "result", "roster get type")
        return r

    async def roster_items(self):
        r = await self.roster()
        query = r.find(q("query", NS_ROSTER))
        return {i.get("jid"): i for i in query.findall(q("item", NS_ROSTER))}

    async def roster_set(self, item_xml):
        return await self.iq("set", "<query xmlns='jabber:iq:roster'>%s</query>" % item_xml)

    async def push(self, jid=None, timeout=mt.WAIT, **attrs):
        """Wait for a roster push (of the item for jid, with these
        attributes); returns the <item/>."""
        def pred(e):
            if e.tag != q("iq") or e.get("type") != "set":
                return False
            query = e.find(q("query", NS_ROSTER))
            if query is None:
                return False
            item = query.find(q("item", NS_ROSTER))
            if item is None or (jid and item.get("jid") != jid):
                return False
            return all(item.get(k.replace("_", "-")) == v for k, v in attrs.items())
        el = await self.wait(pred, timeout, "roster push for %s %s" % (jid, attrs))
        return el

    async def presence(self, frm=None, type=None, timeout=mt.WAIT, bare_from=False):
        def pred(e):
            if e.tag != q("presence") or e.get("type") != type:
                return False
            f = e.get("from", "")
            if bare_from:
                f = f.split("/")[0]
            return frm is None or f == frm
        return await self.wait(pred, timeout, "presence type=%s from %s" % (type, frm))

    async def no_presence(self, frm=None, type=None, timeout=1.0, bare_from=True):
        def pred(e):
            if e.tag != q("presence") or e.get("type") != type:
                return False
            f = e.get("from", "")
            if bare_from:
                f = f.split("/")[0]
            return frm is None or f == frm
        await self.nothing(pred, timeout, "presence type=%s from %s" % (type, frm))

    def subscription(self, type, to):
        self.send("<presence type='%s' to='%s'/>" % (type, to))

    def drain(self):
        self.stanzas.clear()

    async def close(self, abort=False):
        if abort:
            self.rs.writer.transport.abort()
        else:
            try:
                self.send("</stream:stream>")
            except Exception:  # noqa: BLE001
                pass
            self.rs.close()
        self.task.cancel()


class _Closer:
    """Lets magpietest's per-test cleanup close raw streams too."""

    def __init__(self, rs):
        self.rs = rs

    async def close(self):
        self.rs.close()


def error_condition(el):
    err = el.find(q("error"))
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return None


def error_type(el):
    err = el.find(q("error"))
    return None if err is None else err.get("type")
