# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from html.parser import HTMLParser

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.cpr.qemu.plugins.filter.upgrade_timeline import upgrade_timeline

T0 = 1795910400.0  # 2026-11-29T00:00:00Z
HOSTILE = '<script>alert("x")</script> & \'quoted\' "double" </div><b>'


class Page(HTMLParser):
    """Every element of the page: (tag, attributes, text directly inside it)."""

    def __init__(self, text):
        HTMLParser.__init__(self, convert_charrefs=True)
        self.elements, self.stack = [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        element = [tag, dict((k, v if v is not None else "") for k, v in attrs), ""]
        self.elements.append(element)
        if tag not in ("meta", "br", "img", "link", "input", "hr"):
            self.stack.append(element)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        for element in self.stack:
            element[2] += data

    def find(self, cls=None, **attrs):
        return [e for e in self.elements
                if (cls is None or cls in e[1].get("class", "").split())
                and all(e[1].get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def entry(self, index):
        found = self.find(data_entry=str(index))
        assert len(found) == 1, "result %d is on the page %d times" % (index, len(found))
        return found[0]

    def tags(self, tag):
        return [e for e in self.elements if e[0] == tag]


def result(host, vm, status="upgraded", start=None, took=5.0, pause=None, paused_after=3.0, batch=None, canary=None,
           reason="", **more):
    r = {"host": host, "vm": vm, "qmp_socket": "/run/vm/%s/qmp.sock" % vm, "status": status, "reason": reason,
         "version_before": "10.0.2", "version_after": "11.1.3" if status == "upgraded" else None,
         "dialect": "cpr-transfer" if start is not None else None, "pause_ms": pause,
         "paused_at": T0 + start + paused_after if start is not None and pause is not None else None,
         "started_at": T0 + start if start is not None else None,
         "finished_at": T0 + start + took if start is not None else None}
    if batch is not None:
        r.update(batch=batch, canary=canary if canary is not None else batch == 1)
    r.update(more)
    return r


ROLLOUT = [
    result("hv1", "web1", start=0, pause=12.5, batch=1),
    result("hv1", "db1", "skipped", batch=1, reason="not ready: cpr-transfer: guest RAM is not shared"),
    result("hv2", "web2", start=10, pause=20.0, batch=2),
    result("hv2", "web3", "failed", start=16, took=4, pause=1500.25, paused_after=2.0, batch=2,
           reason="rolled back: the new QEMU died", guest="old QEMU, PID 100, running", recovered=True),
    result("hv3", "app1", "already-current", batch=2, reason="QEMU 11.1.3 already"),
    result("hv3", "app2", start=12, took=8, pause=7.75, batch=2),
    result("hv3", "app3", "failed", batch=2, reason="lock held by another run"),
]


def page(report, **kwargs):
    return Page(upgrade_timeline(report, **kwargs))


def left(element):
    return float(re.search(r"left:([0-9.]+)%", element[1]["style"]).group(1))


def width(element):
    return float(re.search(r"width:([0-9.]+)%", element[1]["style"]).group(1))


def test_every_result_is_on_the_page_with_its_status_and_pause():
    p = page(ROLLOUT)
    for i, r in enumerate(ROLLOUT):
        tag, attrs, text = p.entry(i)
        assert (attrs["data-host"], attrs["data-vm"], attrs["data-status"]) == (r["host"], r["vm"], r["status"])
        assert attrs["data-pause-ms"] == (repr(r["pause_ms"]) if r["pause_ms"] is not None else "")
        assert r["vm"] in text
        assert r["status"] in attrs["title"]
        if r["reason"]:
            assert r["reason"] in attrs["title"]
    assert len([e for e in p.elements if "data-entry" in e[1]]) == len(ROLLOUT)


def test_switched_vms_are_bars_on_one_axis_and_the_others_are_listed_at_the_end_of_their_row():
    p = page(ROLLOUT)
    bars = dict((e[1]["data-vm"], e) for e in p.find("bar"))
    chips = dict((e[1]["data-vm"], e) for e in p.find("chip"))
    assert sorted(bars) == ["app2", "web1", "web2", "web3"]
    assert sorted(chips) == ["app1", "app3", "db1"]
    # The axis runs from the first start (web1, 0 s) to the last finish (web3, 20 s).
    assert left(bars["web1"]) == 0.0 and width(bars["web1"]) == 25.0
    assert left(bars["web2"]) == 50.0 and width(bars["web2"]) == 25.0
    assert left(bars["web3"]) + width(bars["web3"]) == 100.0
    assert left(bars["app2"]) == 60.0 and width(bars["app2"]) == 40.0
    # A skip's reason is in its listing, not only on hover.
    assert "guest RAM is not shared" in chips["db1"][2]
    # Each host's row: its label, its track, its list, in that order.
    order = [e[1].get("data-host") or e[1]["class"] for e in p.elements
             if e[1].get("class") in ("host", "track", "rest") or ("data-host" in e[1] and e[1].get("class") == "host")]
    assert order == ["hv1", "track", "rest", "hv2", "track", "rest", "hv3", "track", "rest"]


def test_pauses_are_marked_where_and_as_long_as_they_were_at_least_visible():
    p = page(ROLLOUT)
    marks = p.find("pause")
    assert len(marks) == 4
    by_vm = dict((m[1]["title"].split(" ")[0], m) for m in marks)
    assert left(by_vm["web1"]) == 15.0  # paused 3 s after its start, of a 20 s axis
    assert width(by_vm["web3"]) == pytest.approx(1500.25 / 1000 / 20 * 100, abs=1e-4)
    assert "web3 on hv2 paused 1500.2 ms at 00:00:18.000 UTC" == by_vm["web3"][1]["title"]
    # A pause of a few milliseconds is far narrower than a pixel: the style sheet keeps it visible.
    assert width(by_vm["app2"]) < 0.1
    # A pause that outlasts its switch's recorded end still fits on the axis.
    late = page([result("hv1", "a", start=0, took=10, pause=4000.0, paused_after=8.0)])
    assert left(late.find("pause")[0]) + width(late.find("pause")[0]) == 100.0
    assert width(late.find("bar")[0]) == pytest.approx(10 / 12.0 * 100, abs=1e-4)
    assert re.search(r"\.pause \{[^}]*min-width: 2px", upgrade_timeline(ROLLOUT))


def test_batches_in_order_the_canary_marked():
    report = [result("hv9", "late", start=30, pause=5.0, batch=3)] + ROLLOUT
    p = page(report)
    batches = p.find("batch")
    assert [b[1]["data-batch"] for b in batches] == ["1", "2", "3"]
    assert "canary" in batches[0][1]["class"].split() and "canary" in batches[0][2]
    assert not any("canary" in b[1]["class"].split() for b in batches[1:])
    assert "1 host" in batches[0][2] and "2 hosts" in batches[1][2]
    hosts = [e[1]["data-host"] for e in p.find("host")]
    assert hosts == ["hv1", "hv2", "hv3", "hv9"]
    assert "canary" in p.find("host", data_host="hv1")[0][2]
    assert "canary" not in p.find("host", data_host="hv2")[0][2]
    # The batch's span on the clock.
    assert "00:00:10 - 00:00:20 UTC, 10.0 s" in batches[1][2]


def test_totals_statuses_pauses_and_wall_time():
    text = upgrade_timeline(ROLLOUT)
    p = Page(text)
    totals = dict((e[1]["data-status"], e[2]) for e in p.find("status-total"))
    assert totals == {"upgraded": "upgraded 3", "already-current": "already-current 1", "skipped": "skipped 1",
                      "failed": "failed 2"}
    assert list(totals) == ["upgraded", "already-current", "skipped", "failed"]
    assert "pauses: sum 1540.5 ms, longest 1500.2 ms (web3 on hv2)" in re.sub(r"<[^>]+>", "", text)
    assert "wall time 20.0 s (00:00:00 - 00:00:20 UTC)" in re.sub(r"<[^>]+>", "", text)
    assert "roll-out of 2026-11-29 (UTC), 3 hosts, 7 results" in text


def test_status_colours_and_legend():
    p = page(ROLLOUT)
    colour = dict((e[1]["data-vm"], re.search(r"background:(#[0-9a-f]+)", e[1]["style"]).group(1))
                  for e in p.elements if "data-vm" in e[1] and "data-entry" in e[1])
    assert colour["web1"] == colour["web2"] == colour["app2"]
    assert len(set([colour["web1"], colour["web3"], colour["db1"], colour["app1"]])) == 4
    assert colour["web3"] == colour["app3"]  # failed, switched or not
    legend = [e[2] for e in p.find("sub") if e[2].startswith("colours:")]
    statuses = ("upgraded", "skipped", "failed", "already-current", "recovered", "planned", "pause")
    assert legend and all(s in legend[0] for s in statuses)


def test_failures_listed_with_their_reasons():
    p = page(ROLLOUT)
    failures = p.find("failures")
    assert len(failures) == 1 and "open" in failures[0][1]
    assert "Failed: 2 VMs" in failures[0][2]
    assert "web3 on hv2: rolled back: the new QEMU died" in failures[0][2]
    assert "app3 on hv3: lock held by another run" in failures[0][2]
    assert "guest: old QEMU, PID 100, running" in p.entry(3)[1]["title"]
    many = [result("hv1", "vm%d" % i, "failed", reason="no") for i in range(11)]
    assert "open" not in page(many).find("failures")[0][1]
    assert page(ROLLOUT[:3]).find("failures") == []


def test_hostile_text_is_escaped_everywhere():
    report = [result(HOSTILE, HOSTILE, start=0, pause=3.0, batch=HOSTILE, reason=HOSTILE, dialect=HOSTILE,
                     version_after=HOSTILE),
              result("hv1", "x\" onmouseover=\"alert(1)", "failed", reason=HOSTILE, status_extra=HOSTILE),
              result("hv1", "y", HOSTILE, reason=HOSTILE)]
    text = upgrade_timeline(report, title=HOSTILE)
    assert "<script" not in text.lower()
    assert "onmouseover=" not in text.replace("onmouseover=&quot;", "")
    p = Page(text)
    assert not p.tags("script")
    assert p.tags("title")[0][2] == HOSTILE
    first = p.entry(0)[1]
    assert (first["data-host"], first["data-vm"]) == (HOSTILE, HOSTILE)
    assert HOSTILE in first["title"] and "dialect " + HOSTILE in first["title"]
    assert p.entry(1)[1]["data-vm"] == "x\" onmouseover=\"alert(1)"
    assert "onmouseover" not in p.entry(1)[1]
    # An unknown status gets no class or colour of its own, and its text is kept.
    assert p.entry(2)[1]["data-status"] == HOSTILE
    assert [e for e in p.find("batch") if e[1]["data-batch"] == HOSTILE]
    # Every element the page has is one the filter writes: nothing came from the report.
    written = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "div", "span", "b", "p", "details", "summary",
               "ul", "li"}
    assert set(e[0] for e in p.elements) <= written


def test_the_page_fetches_nothing():
    text = upgrade_timeline(ROLLOUT + [result("hv1", "u", "failed", reason="E: Failed to fetch https://mirror.invalid/x")])
    p = Page(text)
    assert not [e for e in p.elements if e[0] in ("script", "link", "img", "iframe", "object", "embed")]
    assert not [e for e in p.elements if set(e[1]) & {"src", "href", "srcset", "action"}]
    assert "url(" not in text and "@import" not in text
    # The only http(s) text is the report's own, escaped: its title, its listing, the failures.
    assert text.count("https://") == 3 and "http://" not in text
    csp = [e for e in p.tags("meta") if e[1].get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0][1]["content"]


def test_check_mode_plan_without_times():
    plan = [result("hv1", "web1", "planned", batch=1, reason="would upgrade 10.0.2 -> 11.1.3 by cpr-transfer"),
            result("hv2", "web2", "planned", batch=2, reason=""),
            result("hv2", "db2", "skipped", batch=2, reason="not ready")]
    text = upgrade_timeline(plan)
    p = Page(text)
    assert not p.find("bar") and not p.find("pause") and not p.find("track") and not p.find("axis")
    assert [e[1]["data-vm"] for e in p.find("chip")] == ["web1", "web2", "db2"]
    assert "would upgrade 10.0.2 -&gt; 11.1.3" in text
    assert "No VM was switched" in text
    assert "pauses: none" in re.sub(r"<[^>]+>", "", text) and "wall time" not in text
    assert "canary" in p.find("batch")[0][1]["class"]
    assert [e[2] for e in p.find("status-total")] == ["planned 2", "skipped 1"]


def test_empty_report():
    text = upgrade_timeline([])
    p = Page(text)
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n")
    assert "The report holds no results." in text
    assert "0 hosts, 0 results" in text
    assert not p.find("host") and not p.find("status-total") and not p.find("failures")


def test_without_the_playbooks_times_and_batches():
    """A report from before started_at, finished_at, batch and canary: pauses alone, hosts in the report's order."""
    old = [dict((k, v) for k, v in r.items() if k not in ("started_at", "finished_at", "batch", "canary")) for r in ROLLOUT]
    p = page(old)
    assert not p.find("batch")
    assert [e[1]["data-host"] for e in p.find("host")] == ["hv1", "hv2", "hv3"]
    bars = dict((e[1]["data-vm"], e) for e in p.find("bar"))
    assert sorted(bars) == ["app2", "web1", "web2", "web3"]  # each drawn as its pause
    assert "switch " not in bars["web1"][1]["title"] and "paused 12.5 ms at 00:00:03.000 UTC" in bars["web1"][1]["title"]
    assert len(p.find("pause")) == 4


def test_vms_switched_side_by_side_get_a_lane_each():
    report = [result("hv1", "a", start=0, took=10, pause=1.0), result("hv1", "b", start=2, took=4, pause=1.0),
              result("hv1", "c", start=7, took=5, pause=1.0), result("hv1", "d", start=12, took=1, pause=1.0)]
    p = page(report)
    tops = dict((e[1]["data-vm"], re.search(r"top:(\d+)px", e[1]["style"]).group(1)) for e in p.find("bar"))
    assert tops["a"] == tops["d"] and tops["b"] == tops["c"] and tops["a"] != tops["b"]
    assert "height:48px" in p.find("track")[0][1]["style"]


def test_odd_values_are_no_times():
    report = [result("hv1", "a", start=0, pause=2.0),
              dict(result("hv1", "b"), started_at="yesterday", finished_at=T0 + 3, pause_ms=float("nan")),
              dict(result("hv1", "c"), started_at=True, finished_at=T0 + 3, paused_at=float("inf"), pause_ms=3.0),
              {"vm": "d", "status": None},
              dict(result("hv1", "e"), reason=u"lone \udcff surrogate")]
    text = upgrade_timeline(report)
    text.encode("utf-8")
    p = Page(text)
    assert [e[1]["data-vm"] for e in p.find("bar")] == ["a"]
    assert p.entry(1)[1]["data-pause-ms"] == ""
    assert p.entry(2)[1]["data-pause-ms"] == "3.0" and "paused 3.0 ms" in p.entry(2)[1]["title"]
    assert (p.entry(3)[1]["data-host"], p.entry(3)[1]["data-status"]) == ("?", "?")


def test_the_same_report_gives_the_same_page():
    assert upgrade_timeline(ROLLOUT) == upgrade_timeline([dict(r) for r in ROLLOUT])
    assert "QEMU rollback" in page(ROLLOUT, title="QEMU rollback").tags("h1")[0][2]


@pytest.mark.parametrize("report, message", [
    ({"hv1": []}, "a list of results"),
    ("[]", "a list of results"),
    ([ROLLOUT[0], "web1"], "result 1 of the report is not a mapping"),
])
def test_not_a_report(report, message):
    with pytest.raises(AnsibleFilterError, match=message):
        upgrade_timeline(report)
