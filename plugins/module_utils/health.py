# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest health gate: after a VM's switch, whether its guest is well before the next VM is touched.

``check`` runs, within one timeout, in this order:

- **runstate**: QMP ``query-status`` on the VM's monitor (whose peer must be the VM's QEMU) must say what
  the guest was before the upgrade (``running`` by default).  A guest that was paused before and is paused
  now passes here and is asked nothing more: a paused guest cannot answer.
- **guest-agent**: where the VM's argv has a QEMU guest agent channel (a ``virtserialport`` or
  ``virtconsole`` named ``org.qemu.guest_agent.0`` on a ``-chardev socket,path=...,server=on`` that QEMU
  listens on), ``guest-sync-delimited`` then ``guest-ping`` over that UNIX socket, as qemu-ga's clients
  talk to it.  This proves the guest's kernel and its agent run.
- **tcp**: a probe the operator names, ``tcp:HOST:PORT``: a TCP connect from this host, nothing sent.  It
  proves the guest's network and a service of its own are up.  TCP is the only kind: a connect needs
  nothing of the guest but what it serves anyway, and sends nothing; reading the serial console instead
  would mean opening a file or socket the VM's user controls and matching guest-specific text.

Root runs this.  A VM's user may rename or swap the agent's socket path, so nothing is sent on it unless
the socket file found at that path is one the VM's QEMU itself listens on (/proc/PID/net/unix) and the
peer of the connection made to that very file is the VM's QEMU (SO_PEERCRED, as qmp.py checks QMP
sockets).  The path is opened once (O_PATH, not following a final symlink) and connected to through that
descriptor, so what was checked is what is connected to.

A failed check is a result (``healthy`` false, ``kind`` says which failure), never an exception;
HealthError is raised only for a probe that is not written as ``tcp:HOST:PORT`` (``parse_probe`` checks it
up front).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import random
import socket
import stat
import time

from ansible_collections.cpr.qemu.plugins.module_utils import process, qmp
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPConnection, QMPError

DEFAULT_TIMEOUT = 10.0
AGENT_PORT_NAME = "org.qemu.guest_agent.0"
# The QEMU devices that are a virtio-serial port a guest agent can listen on.
PORT_DRIVERS = ("virtserialport", "virtconsole")
SENTINEL = b"\xff"


class HealthError(Exception):
    """A check that could not be done or did not pass.  ``kind`` is a stable keyword."""

    def __init__(self, kind, message):
        super(HealthError, self).__init__(message)
        self.kind = kind
        self.message = message


class _Deadline(object):
    """One time budget for the whole check."""

    def __init__(self, timeout, clock=time.monotonic):
        self.clock = clock
        self.end = clock() + timeout

    def left(self):
        return max(self.end - self.clock(), 0.001)

    def over(self):
        return self.clock() >= self.end


def parse_probe(probe):
    """('tcp', host, port) of a probe written ``tcp:HOST:PORT`` (``tcp:[v6addr]:PORT`` for IPv6)."""
    if not isinstance(probe, str) or not probe.startswith("tcp:"):
        raise HealthError("bad-probe", "probe %r is not tcp:HOST:PORT (TCP connect is the only probe kind)"
                          % (probe,))
    host, _sep, port = probe[4:].rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HealthError("bad-probe", "probe %r is not tcp:HOST:PORT" % (probe,))
    return "tcp", host, int(port)


def agent_channel(argv):
    """The guest agent channel argv gives the VM, or None: {chardev, path (as QEMU was given it, None if
    QEMU does not listen on a UNIX socket path for it), why (when path is None)}."""
    chardevs = process.parse_argv(argv)["chardevs"]
    for _i, name, value in process.iter_options(argv):
        if name != "device" or not value:
            continue
        dev = process.option_dict(value, "driver")
        if dev.get("driver") in PORT_DRIVERS and dev.get("name") == AGENT_PORT_NAME:
            return _channel(dev.get("chardev"), chardevs.get(dev.get("chardev")))
    return None


def _channel(chardev_id, chardev):
    """The agent channel of a port on chardev ``chardev_id`` (its options ``chardev``, None if absent)."""
    found = {"chardev": chardev_id, "path": None, "why": None}
    if chardev is None:
        found["why"] = "the port's chardev %s is not on the command line" % chardev_id
    elif chardev.get("backend") != "socket" or not chardev.get("path") or process._on(chardev.get("abstract")):
        found["why"] = "chardev %s is not a UNIX socket with a path (fd= and abstract sockets are not reached)" \
            % chardev_id
    elif not process._on(chardev.get("server")):
        found["why"] = "chardev %s is a client socket: QEMU connects out, it does not listen" % chardev_id
    else:
        found["path"] = chardev["path"]
    return found


def runstate(qmp_socket, pid, timeout):
    """The VM's runstate from QMP, asked of its QEMU only (the monitor's peer must be ``pid``)."""
    try:
        with QMPConnection(qmp_socket, timeout=timeout) as conn:
            if conn.pid != pid:
                raise HealthError("not-qemu", "the QMP socket %s belongs to PID %s, not the VM's QEMU %d"
                                  % (qmp_socket, conn.pid, pid))
            return conn.execute("query-status")["status"]
    except QMPError as e:
        raise HealthError("qmp", "QMP on %s: %s" % (qmp_socket, e.message))


def socket_use(pid, path):
    """(whether QEMU ``pid`` listens on the UNIX socket file at ``path``, whether it holds an accepted
    connection on it), from QEMU's own /proc/PID/net/unix."""
    return qmp.listens_on(pid, path), qmp.monitor_has_client(pid, path)


def _open_path(path):
    """An O_PATH descriptor of the socket file at ``path`` (a final symlink is not followed)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise HealthError("missing" if e.errno == errno.ENOENT else "unreachable",
                          "the guest agent socket %s cannot be reached: %s" % (path, e.strerror or e))
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        raise HealthError("not-socket", "%s is not a UNIX socket (a symlink or another file was put there): "
                                        "nothing was sent" % path)
    return fd


def connect_agent(pid, path, timeout):
    """A UNIX stream connection to the guest agent socket at ``path`` (as seen from here), made only when
    QEMU ``pid`` itself listens on that very socket file, and whose peer is then checked to be ``pid``."""
    fd = _open_path(path)
    via = "/proc/self/fd/%d" % fd
    try:
        listening, busy = socket_use(pid, via)
        if not listening:
            raise HealthError("not-qemu", "the VM's QEMU (PID %d) does not listen on %s: nothing was sent" % (pid, path))
        if busy:
            raise HealthError("busy", "the guest agent socket %s is held by another client (QEMU serves one at a "
                                      "time): nothing was sent" % path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(via)
        except OSError as e:
            sock.close()
            raise HealthError("refused", "cannot connect to the guest agent socket %s: %s" % (path, e.strerror or e))
    finally:
        os.close(fd)
    peer = qmp.peer_pid(sock)
    if peer != pid:
        sock.close()
        raise HealthError("not-qemu", "the guest agent socket %s is served by PID %d, not the VM's QEMU %d: "
                                      "nothing was sent" % (path, peer, pid))
    return sock


def _send(sock, command, arguments=None, sentinel=False):
    msg = {"execute": command}
    if arguments:
        msg["arguments"] = arguments
    sock.sendall((SENTINEL if sentinel else b"") + json.dumps(msg).encode() + b"\n")


def _replies(sock, deadline, buf=b""):
    """Each JSON reply the agent sends, until the deadline (HealthError 'timeout') or EOF ('eof').  A
    0xFF sentinel drops what came before it (a stale, partly read reply)."""
    decoder = json.JSONDecoder()
    while True:
        if SENTINEL in buf:
            buf = buf.rsplit(SENTINEL, 1)[1]
        text = buf.decode("utf-8", "replace").lstrip()
        try:
            reply, end = decoder.raw_decode(text)
        except ValueError:
            buf += _recv(sock, deadline)
            continue
        buf = text[end:].encode()
        yield reply


def _recv(sock, deadline):
    if deadline.over():
        raise HealthError("timeout", "no answer")
    sock.settimeout(deadline.left())
    try:
        data = sock.recv(4096)
    except socket.timeout:
        raise HealthError("timeout", "no answer")
    except OSError as e:
        raise HealthError("eof", "the connection failed: %s" % (e.strerror or e))
    if not data:
        raise HealthError("eof", "QEMU closed the connection")
    return data


def agent_ping(sock, deadline):
    """guest-sync-delimited (with a fresh id, replies before its echo ignored), then guest-ping."""
    token = random.randint(1, 2 ** 62)
    _send(sock, "guest-sync-delimited", {"id": token}, sentinel=True)
    replies = _replies(sock, deadline)
    for reply in replies:
        # Anything before the echo is a stale reply to an earlier client's request.
        if isinstance(reply, dict) and reply.get("return") == token:
            break
    _send(sock, "guest-ping")
    reply = next(replies)
    if not isinstance(reply, dict) or "return" not in reply:
        raise HealthError("agent-error", "guest-ping: %s" % _error_text(reply))


def _error_text(reply):
    err = (reply.get("error") if isinstance(reply, dict) else None) or {}
    return "%s (%s)" % (err.get("desc", json.dumps(reply)), err.get("class", "no class"))


def tcp_probe(host, port, timeout):
    """A TCP connect to host:port, closed at once; nothing is sent."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.timeout:
        raise HealthError("timeout", "tcp:%s:%d did not accept a connection within %.1fs" % (host, port, timeout))
    except OSError as e:
        raise HealthError("refused", "tcp:%s:%d: %s" % (host, port, e.strerror or e))


def _result(checks, healthy, how, detail, kind=None):
    return {"healthy": healthy, "how": how, "detail": detail, "kind": kind, "checks": checks}


def _agent_check(pid, channel, deadline, timeout):
    """(healthy, detail, kind) of the guest agent behind ``channel``."""
    try:
        sock = connect_agent(pid, process.host_path(pid, channel["path"]), deadline.left())
    except HealthError as e:
        return False, e.message, e.kind
    except OSError as e:  # QEMU's /proc entry went away
        return False, "QEMU PID %d cannot be read: %s" % (pid, e.strerror or e), "process"
    try:
        agent_ping(sock, deadline)
    except HealthError as e:
        if e.kind == "timeout":
            return False, ("the guest agent on %s (chardev %s) did not answer guest-ping within %.1fs"
                           % (channel["path"], channel["chardev"], timeout)), "timeout"
        return False, "the guest agent on %s: %s" % (channel["path"], e.message), e.kind
    finally:
        sock.close()
    return True, "the guest agent on %s answered guest-ping" % channel["path"], None


def check(qmp_socket, pid, argv=None, expected_runstate="running", probe=None, timeout=DEFAULT_TIMEOUT,
          use_agent=True):
    """Whether the guest of the VM behind ``qmp_socket`` (its QEMU: ``pid``) is well, within ``timeout`` seconds.

    ``argv`` is the QEMU's command line (read from /proc/PID/cmdline when None); ``expected_runstate`` what
    the guest was before the upgrade; ``probe`` None or ``tcp:HOST:PORT``; ``use_agent`` False skips the
    guest agent even where the VM has one.  Returns {healthy, how, detail, kind, checks}: ``how`` is
    'runstate', 'guest-agent' or 'tcp', the check that failed, or when all passed the strongest one done
    (guest-agent, then tcp, then runstate); ``kind`` None or the failure's keyword; ``checks`` the checks
    done, in order.
    """
    target = parse_probe(probe) if probe else None
    deadline = _Deadline(timeout)
    checks = ["runstate"]
    try:
        state = runstate(qmp_socket, pid, deadline.left())
    except HealthError as e:
        return _result(checks, False, "runstate", e.message, e.kind)
    if state != expected_runstate:
        return _result(checks, False, "runstate", "the guest is %s, it was %s before the upgrade"
                       % (state, expected_runstate), "runstate")
    if state != "running":
        return _result(checks, True, "runstate", "the guest is %s as it was before the upgrade; nothing else "
                       "was asked (a guest that does not run cannot answer)" % state)
    details = ["the guest is running"]
    try:
        channel = agent_channel(process.read_argv(pid) if argv is None else argv) if use_agent else None
    except OSError as e:
        return _result(checks, False, "runstate", "QEMU PID %d cannot be read: %s" % (pid, e.strerror or e), "process")
    if channel and channel["path"]:
        checks.append("guest-agent")
        healthy, detail, kind = _agent_check(pid, channel, deadline, timeout)
        if not healthy:
            return _result(checks, False, "guest-agent", detail, kind)
        details.append(detail)
    elif channel:
        details.append("the guest agent channel was not asked: %s" % channel["why"])
    if target:
        checks.append("tcp")
        try:
            tcp_probe(target[1], target[2], deadline.left())
        except HealthError as e:
            return _result(checks, False, "tcp", e.message, e.kind)
        details.append("tcp:%s:%d accepted a connection" % target[1:])
    # The strongest evidence names the result: the agent's answer, else the probe's, else the runstate.
    how = next(c for c in ("guest-agent", "tcp", "runstate") if c in checks)
    return _result(checks, True, how, "; ".join(details))
