# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: upgrade_timeline
short_description: A self-contained HTML page that draws a roll-out's report as a timeline per host
version_added: 0.1.0
description:
  - Draws the fleet's report of a roll-out (the C(live_upgrade_results) of every host, as the playbook
    C(cpr.qemu.upgrade_qemu) writes them) as one HTML page an operator opens in a browser.
  - One row per host, the rows grouped by the host's batch (C(batch)), the canary batch marked (C(canary)). Each
    switched VM is a bar from C(started_at) to C(finished_at) on a time axis all hosts share, in its status's
    colour, with its pause drawn at C(paused_at), C(pause_ms) wide (at least 2 pixels, so it is seen). VMs of one
    host that switched at the same time get a lane each.
  - A VM that was not switched (no times, as for a VM skipped, already current, planned in check mode, or failed
    before its pause) is listed at the end of its host's row with its status and reason. A result with a pause but without
    C(started_at)/C(finished_at) (a report from before those fields) is drawn as its pause alone.
  - Hovering over a VM shows its result (versions, dialect, times, pause, batch, reason). Above the rows, the
    fleet's totals (results per status, with the colours' legend; the sum and the longest of the pauses; the wall
    time from the first start to the last finish) and the failed VMs with their reasons.
  - The page fetches nothing (no scripts, no external style sheets, fonts or images; a Content-Security-Policy
    forbids it), so it opens where the controller has no network. Every text of the report is escaped.
    The same report gives the same page, byte for byte. Times are shown in UTC.
  - Each VM's element carries C(data-entry) (its index in the report), C(data-host), C(data-vm),
    C(data-status) and C(data-pause-ms), for tests and tools that read the page.
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description:
      - The report, a list of results (host, vm, status, reason, version_before, version_after, dialect,
        pause_ms, paused_at, and where the playbook records them started_at, finished_at, batch and canary).
    type: list
    elements: dict
    required: true
  title:
    description: The page's title and heading.
    type: str
    default: QEMU live upgrade
"""

EXAMPLES = r"""
- name: Draw the roll-out beside its JSON report
  ansible.builtin.copy:
    content: "{{ lookup('ansible.builtin.file', 'qemu-upgrade-report.json') | from_json | cpr.qemu.upgrade_timeline }}"
    dest: qemu-upgrade-report.html
    mode: "0644"
  delegate_to: localhost

- name: A rollback's page, with its own title
  ansible.builtin.copy:
    content: "{{ results | cpr.qemu.upgrade_timeline(title='QEMU rollback') }}"
    dest: qemu-rollback-report.html
    mode: "0644"
  delegate_to: localhost
"""

RETURN = r"""
_value:
  description:
    - The HTML page, one string (UTF-8 text, a complete document with its style sheet inline and no script).
  type: str
  sample: '<!DOCTYPE html> <html lang="en"> <head> <meta charset="utf-8"> ...'
"""

import datetime
import math

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six import string_types

# Status -> (bar colour, text colour); the legend's order.
STATUSES = (
    ("upgraded", "#2e7d32", "#fff"),
    ("recovered", "#1565c0", "#fff"),
    ("already-current", "#9e9e9e", "#000"),
    ("planned", "#7e57c2", "#fff"),
    ("skipped", "#f9a825", "#000"),
    ("failed", "#c62828", "#fff"),
)
OTHER = ("#546e7a", "#fff")
PAUSE_COLOUR = "#000"
LANE_PX = 22
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

STYLE = """
body { font: 13px/1.4 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 16px; color: #212121; }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: #616161; margin-bottom: 10px; }
.totals { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center; }
.totals .n { font-weight: bold; }
.sw { display: inline-block; width: 12px; height: 12px; vertical-align: -2px; margin-right: 4px; border-radius: 2px; }
.sw.sw-pause { width: 4px; }
.timeline { display: grid; gap: 2px 8px; align-items: stretch; margin-top: 8px; }
.timeline > div { min-width: 0; }
.hd { font-weight: bold; color: #616161; align-self: end; }
.axis { position: relative; height: 18px; border-bottom: 1px solid #bdbdbd; }
.tick { position: absolute; bottom: 0; height: 6px; border-left: 1px solid #9e9e9e; }
.tick span { position: absolute; bottom: 6px; left: 2px; white-space: nowrap; color: #616161; font-size: 11px; }
.batch { grid-column: 1 / -1; margin-top: 8px; padding: 2px 6px; background: #eceff1; font-weight: bold;
         display: flex; gap: 12px; align-items: center; }
.batch.canary { background: #fff3e0; }
.batch .span { color: #616161; font-weight: normal; }
.host { padding: 3px 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-weight: bold; }
.badge { font-size: 10px; font-weight: bold; color: #e65100; border: 1px solid #e65100; border-radius: 3px;
         padding: 0 3px; margin-left: 4px; }
.track { position: relative; border-bottom: 1px solid #f5f5f5; }
.bar { position: absolute; height: 18px; min-width: 2px; border-radius: 2px; overflow: hidden; white-space: nowrap;
       font-size: 11px; line-height: 18px; box-sizing: border-box; padding-left: 3px; z-index: 1; }
.pause { position: absolute; height: 22px; min-width: 2px; background: """ + PAUSE_COLOUR + """; z-index: 2; }
.rest { display: flex; flex-wrap: wrap; gap: 2px 4px; align-content: flex-start; padding: 2px 0; }
.chip { border-radius: 3px; padding: 0 5px; font-size: 11px; max-width: 100%; overflow: hidden; white-space: nowrap;
        text-overflow: ellipsis; box-sizing: border-box; }
.note { color: #616161; font-style: italic; }
.failures { margin-top: 14px; }
.failures summary { font-weight: bold; font-size: 15px; cursor: pointer; }
.failures li { margin: 2px 0; }
.failures .why { white-space: pre-wrap; }
"""


def _text(value):
    """Any value as text that encodes to UTF-8 (a lone surrogate becomes '?')."""
    text = to_text(value, errors="surrogate_or_replace") if not isinstance(value, string_types) else value
    return text.encode("utf-8", "replace").decode("utf-8")


def _esc(value):
    """Text safe in an element and in a double-quoted attribute."""
    return (_text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))


def _num(value):
    """A finite number, or None (text, booleans, NaN and the like are no times)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _clock(t, fraction=True):
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return stamp.strftime("%H:%M:%S") + (".%03d" % (stamp.microsecond // 1000) if fraction else "")


def _tick(t, step):
    """A tick's label: the time of day, with tenths where the ticks are closer than a second."""
    return _clock(t)[:-2] if step < 1 else _clock(t, False)


def _day(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d")


def _duration(seconds):
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return "%d min %04.1f s" % (minutes, seconds)
    return "%d h %02d min %04.1f s" % (minutes // 60, minutes % 60, seconds)


def _ms(value):
    return "%.1f ms" % value


def _style(status):
    """The inline style of a status's bar, chip or swatch: its colours."""
    fill, text = next(((f, t) for name, f, t in STATUSES if name == status), OTHER)
    return "background:%s;color:%s" % (fill, text)


class _Entry(object):
    """One result with what the page needs of it."""

    def __init__(self, index, result):
        self.index = index
        self.r = result
        self.host = _text(result.get("host") if result.get("host") is not None else "?")
        self.vm = _text(result.get("vm") if result.get("vm") is not None else "?")
        self.status = _text(result.get("status") if result.get("status") is not None else "?")
        self.pause_ms = _num(result.get("pause_ms"))
        self.paused_at = _num(result.get("paused_at"))
        started, finished = _num(result.get("started_at")), _num(result.get("finished_at"))
        self.timed = started is not None and finished is not None
        if self.timed:
            self.start, self.end = started, max(started, finished)
        elif self.paused_at is not None and self.pause_ms is not None:
            # A report without the switch's times: its pause alone.
            self.start, self.end = self.paused_at, self.paused_at + self.pause_ms / 1000.0
        else:
            self.start = self.end = None
        self.lane = 0

    def extent(self):
        """Where on the time axis the entry reaches, its pause included."""
        lo, hi = self.start, self.end
        if self.paused_at is not None and self.pause_ms is not None:
            lo, hi = min(lo, self.paused_at), max(hi, self.paused_at + self.pause_ms / 1000.0)
        return lo, hi

    @property
    def drawn(self):
        return self.start is not None

    def attrs(self):
        pause = repr(self.pause_ms) if self.pause_ms is not None else ""
        return ('data-entry="%d" data-host="%s" data-vm="%s" data-status="%s" data-pause-ms="%s"'
                % (self.index, _esc(self.host), _esc(self.vm), _esc(self.status), _esc(pause)))

    def title(self):
        r = self.r
        lines = ["%s on %s: %s" % (self.vm, self.host, self.status)]
        before, after = r.get("version_before"), r.get("version_after")
        if before or after:
            lines.append("QEMU %s" % (before or "?") + (" -> %s" % after if after and after != before else ""))
        if r.get("dialect"):
            lines.append("dialect %s" % _text(r["dialect"]))
        if self.timed:
            lines.append("switch %s - %s UTC (%s)" % (_clock(self.start), _clock(self.end), _duration(self.end - self.start)))
        if self.pause_ms is not None:
            at = " at %s UTC" % _clock(self.paused_at) if self.paused_at is not None else ""
            lines.append("paused %s%s" % (_ms(self.pause_ms), at))
        if r.get("batch") is not None:
            lines.append("batch %s%s" % (_text(r["batch"]), " (canary)" if r.get("canary") is True else ""))
        if r.get("action"):
            lines.append("session %s%s" % (_text(r["action"]), " (interrupted at step %s)" % _text(r["step"]) if r.get("step") else ""))
        if r.get("guest"):
            lines.append("guest: %s" % _text(r["guest"]))
        if r.get("reason"):
            lines.append("reason: %s" % _text(r["reason"]))
        return "\n".join(_text(line) for line in lines)


class _Host(object):
    def __init__(self, name):
        self.name = name
        self.entries = []
        self.batch = None
        self.canary = False
        self.lanes = 1

    def add(self, entry):
        self.entries.append(entry)
        if self.batch is None and entry.r.get("batch") is not None:
            self.batch = entry.r["batch"]
        if entry.r.get("canary") is True:
            self.canary = True

    def assign_lanes(self):
        """Each drawn VM the first lane free at its start (VMs switched in parallel side by side)."""
        ends = []
        for e in sorted((e for e in self.entries if e.drawn), key=lambda e: (e.start, e.index)):
            for lane, end in enumerate(ends):
                if end <= e.start:
                    e.lane, ends[lane] = lane, e.end
                    break
            else:
                e.lane = len(ends)
                ends.append(e.end)
        self.lanes = max(1, len(ends))


def _batch_key(batch):
    number = _num(batch)
    if number is not None:
        return (0, number, "")
    return (1 if batch is not None else 2, 0, _text(batch))


class _Axis(object):
    def __init__(self, t0, t1):
        self.t0 = t0
        self.span = max(t1 - t0, 0.001)

    def pct(self, t):
        return min(100.0, max(0.0, (t - self.t0) * 100.0 / self.span))

    def width(self, seconds):
        return min(100.0, max(0.0, seconds * 100.0 / self.span))

    def ticks(self):
        step = next((s for s in TICK_STEPS if self.span / s <= 8), None) or math.ceil(self.span / 8 / 86400) * 86400
        first = math.ceil(self.t0 / step - 1e-9) * step
        ticks, k = [], 0
        while True:
            t = first + k * step
            if t > self.t0 + self.span + 1e-9:
                return ticks, step
            ticks.append(t)
            k += 1


def _bar(entry, axis):
    left, width = axis.pct(entry.start), axis.width(entry.end - entry.start)
    top = entry.lane * LANE_PX + 2
    out = ['<div class="vm bar" %s style="left:%.4f%%;width:%.4f%%;top:%dpx;%s" title="%s">%s</div>'
           % (entry.attrs(), left, width, top, _style(entry.status), _esc(entry.title()), _esc(entry.vm))]
    if entry.pause_ms is not None and entry.paused_at is not None:
        out.append('<div class="pause" style="left:%.4f%%;width:%.4f%%;top:%dpx" title="%s"></div>'
                   % (axis.pct(entry.paused_at), axis.width(entry.pause_ms / 1000.0), top - 2,
                      _esc("%s on %s paused %s at %s UTC" % (entry.vm, entry.host, _ms(entry.pause_ms), _clock(entry.paused_at)))))
    return "".join(out)


def _chip(entry):
    text = "<b>%s</b> %s" % (_esc(entry.vm), _esc(entry.status))
    if entry.r.get("reason"):
        text += ": " + _esc(entry.r["reason"])
    return '<span class="vm chip" %s style="%s" title="%s">%s</span>' % (entry.attrs(), _style(entry.status), _esc(entry.title()), text)


def _totals(entries, drawn):
    counts = {}
    for e in entries:
        counts[e.status] = counts.get(e.status, 0) + 1
    known = [s[0] for s in STATUSES]
    order = [s for s in known if s in counts] + sorted(s for s in counts if s not in known)
    items = ['<span><span class="n">%d</span> results</span>' % len(entries)]
    for status in order:
        items.append('<span class="status-total" data-status="%s"><span class="sw" style="%s"></span>%s <span class="n">%d</span></span>'
                     % (_esc(status), _style(status), _esc(status), counts[status]))
    pauses = [e for e in entries if e.pause_ms is not None]
    if pauses:
        longest = max(pauses, key=lambda e: (e.pause_ms, -e.index))
        items.append('<span><span class="sw sw-pause" style="background:%s"></span>pauses: sum <span class="n">%s</span>, '
                     'longest <span class="n">%s</span> (%s on %s)</span>'
                     % (PAUSE_COLOUR, _ms(sum(e.pause_ms for e in pauses)), _ms(longest.pause_ms), _esc(longest.vm), _esc(longest.host)))
    else:
        items.append('<span><span class="sw sw-pause" style="background:%s"></span>pauses: none</span>' % PAUSE_COLOUR)
    if drawn:
        first, last = min(e.start for e in drawn), max(e.end for e in drawn)
        items.append('<span>wall time <span class="n">%s</span> (%s - %s UTC)</span>'
                     % (_duration(last - first), _clock(first, False), _clock(last, False)))
    legend = ''.join('<span><span class="sw" style="%s"></span>%s</span>' % (_style(s), s) for s in (st[0] for st in STATUSES))
    return ('<div class="totals">%s</div>\n<div class="totals sub">colours: %s'
            '<span><span class="sw sw-pause" style="background:%s"></span>pause</span></div>' % ("".join(items), legend, PAUSE_COLOUR))


def _failures(entries):
    """The failed VMs with their reasons; folded when there are many."""
    failed = [e for e in entries if e.status == "failed"]
    if not failed:
        return ""
    rows = "".join('<li><b>%s</b> on <b>%s</b>: <span class="why">%s</span></li>'
                   % (_esc(e.vm), _esc(e.host), _esc(e.r.get("reason") or "no reason given")) for e in failed)
    return ('<details class="failures"%s><summary>Failed: %d VM%s, with the reasons</summary>\n<ul>%s</ul>\n</details>\n'
            % (" open" if len(failed) <= 10 else "", len(failed), "" if len(failed) == 1 else "s", rows))


def upgrade_timeline(results, title="QEMU live upgrade"):
    if not isinstance(results, (list, tuple)):
        raise AnsibleFilterError("upgrade_timeline expects the report of a roll-out: a list of results")
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise AnsibleFilterError("upgrade_timeline: result %d of the report is not a mapping: %r" % (i, r))
    entries = [_Entry(i, r) for i, r in enumerate(results)]
    hosts, order = {}, []
    for e in entries:
        if e.host not in hosts:
            hosts[e.host] = _Host(e.host)
            order.append(e.host)
        hosts[e.host].add(e)
    for h in hosts.values():
        h.assign_lanes()
    drawn = [e for e in entries if e.drawn]
    axis = _Axis(min(e.extent()[0] for e in drawn), max(e.extent()[1] for e in drawn)) if drawn else None

    groups = {}
    for name in order:
        groups.setdefault(_batch_key(hosts[name].batch), []).append(hosts[name])
    batched = any(h.batch is not None for h in hosts.values())

    cols = "minmax(6em,max-content) minmax(420px,1fr) minmax(12em,28em)" if axis else "minmax(6em,max-content) 1fr"
    cells = []
    style = STYLE
    if axis:
        ticks, step = axis.ticks()
        marks = "".join('<div class="tick" style="left:%.4f%%"><span>%s</span></div>' % (axis.pct(t), _tick(t, step))
                        for t in ticks if axis.pct(t) <= 94.0)
        cells.append('<div class="hd">host</div><div class="axis">%s</div><div class="hd">without switch times</div>' % marks)
        if ticks:
            # The ticks' lines down every host's track, as its background.
            style += (".track { background-image: %s; background-size: 1px 100%%; background-repeat: no-repeat; "
                      "background-position: %s; }\n"
                      % (", ".join(["linear-gradient(#e0e0e0, #e0e0e0)"] * len(ticks)),
                         ", ".join("%.4f%% 0" % axis.pct(t) for t in ticks)))
    for key in sorted(groups):
        members = groups[key]
        if batched:
            canary = any(h.canary for h in members)
            label = "batch %s" % _text(members[0].batch) if members[0].batch is not None else "no batch recorded"
            times = [e for h in members for e in h.entries if e.drawn]
            span = ""
            if times:
                first, last = min(e.start for e in times), max(e.end for e in times)
                span = '<span class="span">%s - %s UTC, %s</span>' % (_clock(first, False), _clock(last, False), _duration(last - first))
            cells.append('<div class="batch%s" data-batch="%s">%s%s<span class="span">%d host%s</span>%s</div>'
                         % (" canary" if canary else "", _esc(members[0].batch if members[0].batch is not None else ""), _esc(label),
                            '<span class="badge">canary</span>' if canary else "", len(members), "" if len(members) == 1 else "s", span))
        for h in members:
            badge = '<span class="badge">canary</span>' if h.canary else ""
            cells.append('<div class="host" data-host="%s" title="%s">%s%s</div>' % (_esc(h.name), _esc(h.name), _esc(h.name), badge))
            rest = "".join(_chip(e) for e in h.entries if not e.drawn)
            if axis:
                bars = "".join(_bar(e, axis) for e in sorted((e for e in h.entries if e.drawn), key=lambda e: (e.start, e.index)))
                cells.append('<div class="track" style="height:%dpx">%s</div>' % (h.lanes * LANE_PX + 4, bars))
            cells.append('<div class="rest">%s</div>' % rest)

    if not entries:
        body = '<p class="note">The report holds no results.</p>'
    else:
        note = "" if axis else ('<p class="note">No VM was switched (a check-mode plan, or nothing to do): '
                                'each host lists its VMs with their status and reason.</p>\n')
        body = '%s<div class="timeline" style="grid-template-columns:%s">\n%s\n</div>' % (note, cols, "\n".join(cells))
    when = ("roll-out of %s (UTC), " % _day(axis.t0)) if axis else ""
    sub = "%s%d host%s, %d result%s" % (when, len(order), "" if len(order) == 1 else "s", len(entries), "" if len(entries) == 1 else "s")
    return "".join([
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n' % (_esc(title), style),
        '<h1>%s</h1>\n<div class="sub">%s. Hover over a VM for its result.</div>\n' % (_esc(title), sub),
        _totals(entries, drawn), "\n", _failures(entries),
        '<h2>Timeline</h2>\n', body, '\n</body>\n</html>\n',
    ])


class FilterModule(object):
    def filters(self):
        return {"upgrade_timeline": upgrade_timeline}
