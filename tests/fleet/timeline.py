# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Looks at a roll-out's HTML page (cpr.qemu.upgrade_timeline) as an operator would, in headless Chromium.

Usage: timeline.py PAGE.html REPORT.json

Chromium (Debian's, /usr/bin/chromium; tests/lab/provision.sh installs it)
renders the page twice with a fresh profile and everything that could reach
the network switched off: once for a screenshot, written beside the page
(PAGE.png), once for the DOM it built (--dump-dom). Then checks:

  - the page, as written and as rendered, loads nothing: no script, no
    element that fetches (img, link, iframe, ...), no src/href/... attribute,
    no url() or @import in its style, no http(s) URL anywhere in its markup
    (text the report carries, such as a reason, is not markup);
  - every result of the JSON report is on the page, once (its data-entry
    index), with its host, VM, status and pause as in the report, its name in
    its text, and its pause drawn where the report has its time;
  - the totals count each status as the report does.

Exits 0 and prints one line when all holds; otherwise exits 1 naming what
does not.
"""
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

CHROMIUM = os.environ.get("CPR_CHROMIUM", "/usr/bin/chromium")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
# Elements that fetch or run something, and attributes that name something to fetch.
FETCHING = {"script", "link", "img", "iframe", "frame", "object", "embed", "audio", "video", "source", "track",
            "picture", "base", "form", "image", "use", "portal", "applet"}
URL_ATTRS = {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "formaction", "background", "ping",
             "manifest", "codebase", "archive", "longdesc", "cite", "imagesrcset"}
# Attributes whose value is text for people (or for this test), not a reference.
TEXT_ATTRS = {"title", "alt", "aria-label", "aria-description"}
URL = re.compile(r"https?://", re.I)


class Node(object):
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def all_text(self):
        return "".join(c if isinstance(c, str) else c.all_text() for c in self.children)

    def walk(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()


class Tree(html.parser.HTMLParser):
    """The element tree of an HTML document (Chromium's serialization closes every element it opens)."""

    def __init__(self, text):
        html.parser.HTMLParser.__init__(self, convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.cur = self.root
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, [(k, v if v is not None else "") for k, v in attrs], self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, [(k, v if v is not None else "") for k, v in attrs], self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def fail(msg):
    sys.exit("timeline: %s" % msg)


def references(tree, what):
    """What in the document would load something, each as a line."""
    found = []
    for n in tree.root.walk():
        if n.tag in FETCHING:
            found.append("%s: a <%s> element" % (what, n.tag))
        if n.tag == "meta" and n.attrs.get("http-equiv", "").lower() == "refresh":
            found.append("%s: a <meta http-equiv=refresh>" % what)
        for k, v in n.attrs.items():
            if k in URL_ATTRS and not v.startswith("#"):
                found.append("%s: <%s %s=%r>" % (what, n.tag, k, v))
            elif k == "style" and re.search(r"url\s*\(|@import|image-set\s*\(", v, re.I):
                found.append("%s: <%s style=%r> fetches" % (what, n.tag, v))
            elif k not in TEXT_ATTRS and not k.startswith("data-") and URL.search(v):
                found.append("%s: <%s %s=%r> names a URL" % (what, n.tag, k, v))
        if n.tag in ("style", "script"):
            body = n.all_text()
            if re.search(r"url\s*\(|@import|image-set\s*\(", body, re.I) or URL.search(body):
                found.append("%s: its <%s> fetches or names a URL" % (what, n.tag))
    return found


def chromium(args, profile, timeout=180):
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--user-data-dir=" + profile, "--hide-scrollbars", "--force-device-scale-factor=1"]
    if os.geteuid() == 0:
        cmd.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    try:
        proc = subprocess.run(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              check=False, universal_newlines=True, errors="replace")
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %d s: %s" % (CHROMIUM, timeout, " ".join(args)))
    if proc.returncode != 0:
        fail("%s exited %d for %s:\n%s" % (CHROMIUM, proc.returncode, " ".join(args), proc.stderr[-3000:]))
    return proc.stdout


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        fail("%s is not a PNG" % path)
    return struct.unpack(">II", head[16:24])


def expected(value):
    return str(value) if value is not None else "?"


def number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_entries(tree, report):
    """Every result on the page once, as the report has it."""
    problems, seen, pauses = [], {}, []
    for n in tree.root.walk():
        if "data-entry" in n.attrs:
            index = n.attrs["data-entry"]
            if not index.isdigit() or int(index) >= len(report):
                problems.append("an element for result %r, which the report does not have" % index)
            elif int(index) in seen:
                problems.append("result %s is on the page twice" % index)
            else:
                seen[int(index)] = n
        elif "pause" in n.attrs.get("class", "").split():
            pauses.append(n.attrs.get("title", ""))
    for i, r in enumerate(report):
        where = "result %d (%s on %s)" % (i, r.get("vm"), r.get("host"))
        n = seen.get(i)
        if n is None:
            problems.append("%s is not on the page" % where)
            continue
        for key in ("host", "vm", "status"):
            if n.attrs.get("data-" + key) != expected(r.get(key)):
                problems.append("%s: the page has %s %r, the report %r" % (where, key, n.attrs.get("data-" + key), r.get(key)))
        pause, shown = number(r.get("pause_ms")), n.attrs.get("data-pause-ms")
        if pause is None and shown != "":
            problems.append("%s: the page has a pause of %r ms, the report none" % (where, shown))
        elif pause is not None:
            try:
                same = float(shown) == pause
            except (TypeError, ValueError):
                same = False
            if not same:
                problems.append("%s: the page has a pause of %r ms, the report %r" % (where, shown, pause))
            elif "%.1f ms" % pause not in n.attrs.get("title", ""):
                problems.append("%s: its details do not show its pause, %.1f ms" % (where, pause))
            elif "bar" in n.attrs.get("class", "").split() and number(r.get("paused_at")) is not None:
                mark = "%s on %s paused %.1f ms" % (expected(r.get("vm")), expected(r.get("host")), pause)
                if not any(t.startswith(mark) for t in pauses):
                    problems.append("%s: its pause is not drawn" % where)
        if expected(r.get("vm")) not in n.all_text():
            problems.append("%s: its name is not in its text %r" % (where, n.all_text()))
        if r.get("reason") and r.get("status") != "upgraded" and str(r["reason"]) not in n.attrs.get("title", ""):
            problems.append("%s: its details do not show its reason" % where)
    return problems


def check_totals(tree, report):
    counts = {}
    for r in report:
        counts[expected(r.get("status"))] = counts.get(expected(r.get("status")), 0) + 1
    shown = {}
    for n in tree.root.walk():
        if "status-total" in n.attrs.get("class", "").split():
            numbers = [c.all_text() for c in n.children if isinstance(c, Node) and "n" in c.attrs.get("class", "").split()]
            shown[n.attrs.get("data-status")] = int(numbers[0]) if numbers and numbers[0].isdigit() else numbers
    return [] if shown == counts else ["the totals show %s, the report has %s" % (shown, counts)]


def screenshot_height(tree):
    """Enough height for the whole page: its rows, lanes and lists, generously."""
    height = 320
    for n in tree.root.walk():
        classes = n.attrs.get("class", "").split()
        m = re.search(r"height:(\d+)px", n.attrs.get("style", ""))
        if "track" in classes and m:
            height += int(m.group(1)) + 4
        elif "host" in classes or "batch" in classes:
            height += 34
        elif n.tag == "li":
            height += 20
        elif "chip" in classes:
            height += 10
    return min(height, 16000)


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    page, report_path = os.path.abspath(argv[1]), argv[2]
    if not os.access(CHROMIUM, os.X_OK):
        fail("%s is missing (tests/lab/provision.sh installs Debian's chromium)" % CHROMIUM)
    with open(report_path) as f:
        report = json.load(f)
    if not isinstance(report, list):
        fail("%s is not a report (a list of results)" % report_path)
    with open(page, encoding="utf-8") as f:
        source = Tree(f.read())
    problems = references(source, "the page")

    profile = tempfile.mkdtemp(prefix="cpr-timeline-")
    try:
        dom = Tree(chromium(["--dump-dom", "file://" + page], os.path.join(profile, "dom")))
        problems += references(dom, "the rendered page")
        if not any(n.attrs.get("data-entry") is not None for n in dom.root.walk()) and report:
            problems.append("Chromium rendered no result at all")
        problems += check_entries(dom, report) + check_totals(dom, report)
        shot = os.path.splitext(page)[0] + ".png"
        if os.path.exists(shot):
            os.unlink(shot)
        chromium(["--screenshot=" + shot, "--window-size=1600,%d" % screenshot_height(dom), "file://" + page],
                 os.path.join(profile, "shot"))
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not os.path.isfile(shot) or os.path.getsize(shot) == 0:
        fail("Chromium wrote no screenshot to %s" % shot)
    width, height = png_size(shot)
    if problems:
        fail("%s does not show %s as it is:\n  %s" % (page, report_path, "\n  ".join(problems)))
    print("timeline: ok: %d results of %s on %s, nothing fetched; screenshot %s (%dx%d)"
          % (len(report), report_path, page, shot, width, height))


if __name__ == "__main__":
    main(sys.argv)
