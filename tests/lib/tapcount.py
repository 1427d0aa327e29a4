#!/usr/bin/python3
"""Turn test output into one line per test for tests/run.

    tapcount.py tap LABEL FILE EXIT_CODE
        FILE holds a TAP stream (one integration script or client).
    tapcount.py meson TESTLOG_JSON LOGDIR
        meson's testlog.json; each test's output goes to LOGDIR/<name>.log.

Output lines: "pass<TAB>label<TAB>log", "fail<TAB>...", "skip<TAB>...".
Each TAP subtest counts as one test. A program that fails without a
failing subtest (a crash, a sanitizer report at exit, missing tests from
the plan) counts as one more failed test.
"""

import json
import os
import re
import sys

OK_RE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
PLAN_RE = re.compile(r"^1\.\.(\d+)")


def parse_tap(text, label, log, exit_ok):
    out = []
    planned = None
    seen = 0
    failed_any = False
    bail = None
    for line in text.splitlines():
        line = line.rstrip("\r")
        m = PLAN_RE.match(line)
        if m and planned is None:
            planned = int(m.group(1))
            continue
        if line.startswith("Bail out!"):
            bail = line
            continue
        m = OK_RE.match(line)
        if not m:
            continue
        seen += 1
        status, _num, desc = m.groups()
        name = "%s: %s" % (label, desc.split(" # ")[0].strip() or "#%d" % seen)
        directive = desc.split(" # ", 1)[1].upper() if " # " in desc else ""
        if directive.startswith("SKIP"):
            out.append(("skip", name))
        elif status == "ok" or directive.startswith("TODO"):
            out.append(("pass", name))
        else:
            out.append(("fail", name))
            failed_any = True
    if planned is not None and seen < planned:
        out.append(("fail", "%s: only %d of %d planned tests ran" % (label, seen, planned)))
        failed_any = True
    if bail:
        out.append(("fail", "%s: %s" % (label, bail)))
        failed_any = True
    if not exit_ok and not failed_any:
        out.append(("fail", "%s: exited with an error" % label))
    if exit_ok and seen == 0 and planned is None:
        out.append(("pass", label))
    return [(s, n, log) for s, n in out]


def main():
    rows = []
    if sys.argv[1] == "tap":
        label, path, code = sys.argv[2], sys.argv[3], int(sys.argv[4])
        with open(path, errors="replace") as f:
            rows = parse_tap(f.read(), label, path, code == 0)
    elif sys.argv[1] == "meson":
        path, logdir = sys.argv[2], sys.argv[3]
        os.makedirs(logdir, exist_ok=True)
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                t = json.loads(line)
                name = t["name"]
                log = os.path.join(logdir, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".log")
                stdout = t.get("stdout") or ""
                stderr = t.get("stderr") or ""
                with open(log, "w") as lf:
                    lf.write("$ %s\n" % " ".join(t.get("command") or []))
                    lf.write(stdout)
                    if stderr:
                        lf.write("\n--- stderr ---\n" + stderr)
                result = t.get("result", "")
                if result == "SKIP":
                    rows.append(("skip", "unit: " + name, log))
                    continue
                rows += parse_tap(stdout, "unit: " + name, log,
                                  result in ("OK", "EXPECTEDFAIL"))
    else:
        sys.exit("usage: tapcount.py tap LABEL FILE CODE | meson TESTLOG LOGDIR")
    for status, name, log in rows:
        print("%s\t%s\t%s" % (status, name.replace("\t", " "), log))


if __name__ == "__main__":
    main()
