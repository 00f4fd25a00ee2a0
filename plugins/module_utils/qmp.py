# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""QMP transport: one synchronous client over qemu.qmp for the modules.

We open the UNIX socket ourselves, so every way a connection can fail gets its
own plain message (missing, not a socket, permission, refused, busy, not QMP),
and so the kernel can tell us the PID of the QEMU behind the socket
(SO_PEERCRED).  The socket is then handed to qemu.qmp's QMPClient, which runs
on a private event loop; every event QEMU sends is kept with QEMU's own
timestamp.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import logging
import os
import socket
import stat
import struct
import traceback

try:
    import asyncio
    from qemu.qmp import QMPClient, ConnectError, ExecuteError, ExecInterruptedError, EventListener, Runstate
    from qemu.qmp.qmp_client import GreetingError, NegotiationError
    HAS_QEMU_QMP = True
    QEMU_QMP_IMPORT_ERROR = None
except ImportError:
    HAS_QEMU_QMP = False
    QEMU_QMP_IMPORT_ERROR = traceback.format_exc()
    QMPClient = object


class _Client(QMPClient):
    """qemu.qmp's client without its message log's cost when that log is off.

    Its message hooks (documented for subclasses to override) format every message for a debug log whether
    or not anything logs at debug level: a query-qmp-schema reply is re-encoded as indented JSON each time.
    That was a third of a module's CPU time (cProfile, qemu.qmp 0.0.6, 8 VMs through qemu_cpr_upgrade).
    """

    def _cb_outbound(self, msg):
        if self.logger.isEnabledFor(logging.DEBUG):
            return super()._cb_outbound(msg)
        return msg

    def _cb_inbound(self, msg):
        if self.logger.isEnabledFor(logging.DEBUG):
            return super()._cb_inbound(msg)
        return msg


DEFAULT_TIMEOUT = 5.0

# /proc/net/unix socket states (include/uapi/linux/net.h)
# /proc/net/unix's flag of a listening socket (__SO_ACCEPTCON).
_SO_ACCEPTCON = 0x10000
_SS_CONNECTED = "03"


class QMPError(Exception):
    """A QMP failure.  ``kind`` is a stable keyword; ``str()`` is for operators; ``pid`` is the QEMU
    that holds the socket, where it is known."""

    def __init__(self, kind, message, pid=None):
        super(QMPError, self).__init__(message)
        self.kind = kind
        self.message = message
        self.pid = pid


class QMPCommandError(QMPError):
    """QEMU answered a command with an error."""

    def __init__(self, command, error_class, desc):
        super(QMPCommandError, self).__init__(
            "command", "QEMU refused %s: %s (%s)" % (command, desc, error_class))
        self.command = command
        self.error_class = error_class
        self.desc = desc


def parse_address(address, allow_tcp=False):
    """Split a QMP address into ('unix', path) or ('tcp', (host, port)).

    Accepts a plain path, ``unix:PATH`` (QEMU's own spelling, options after a
    comma ignored) and, only when allowed, ``tcp:HOST:PORT``.
    """
    if address.startswith("tcp:"):
        if not allow_tcp:
            raise QMPError(
                "tcp-refused",
                "QMP address %s is TCP: refused, because anyone who reaches the port controls the VM "
                "and nothing proves which process answers; use the VM's UNIX socket" % address)
        host, _sep, port = address[4:].split(",")[0].rpartition(":")
        if not host or not port.isdigit():
            raise QMPError("bad-address", "QMP address %s is not tcp:HOST:PORT" % address)
        return "tcp", (host.strip("[]"), int(port))
    if address.startswith("unix:"):
        address = address[5:].split(",")[0]
    if not address:
        raise QMPError("bad-address", "empty QMP socket path")
    if not address.startswith("/"):
        raise QMPError("bad-address", "QMP socket path %s is relative: give its absolute path" % address)
    return "unix", address


def peer_pid(sock):
    """PID of the process that owns the other end of a connected UNIX socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def _socket_inodes(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _bound_names(pid, proc_net_unix):
    """{name a socket of pid is bound to: [(flags, state) of each such socket]}, from the process's own
    network namespace's /proc/PID/net/unix unless another table is given."""
    owned = _socket_inodes(pid)
    proc_net_unix = proc_net_unix or "/proc/%d/net/unix" % pid
    bound = {}
    try:
        with open(proc_net_unix) as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError:
        return bound
    for row in rows:
        if len(row) >= 8 and row[6] in owned:
            bound.setdefault(row[7], []).append((int(row[3], 16), row[5]))
    return bound


def _names_path(pid, name, path):
    """Whether a socket name as pid bound it is the file at path: an absolute name is in pid's root, a relative
    one (a command line's relative path) in its working directory."""
    where = "/proc/%d/root%s" % (pid, name) if name.startswith("/") else "/proc/%d/cwd/%s" % (pid, name)
    try:
        return os.path.samefile(where, path)
    except OSError:
        return False


def monitor_has_client(pid, path, proc_net_unix=None):
    """Whether QEMU (pid) holds an accepted connection on the listening socket at ``path``.

    QEMU's QMP serves one client at a time and leaves further connections
    unaccepted.  An accepted connection is a connected socket of QEMU's that
    carries the listener's bound name; the name is as QEMU bound it, which is
    relative to QEMU's root, so each candidate name is checked through
    /proc/PID/root.
    """
    return any(_names_path(pid, name, path) and any(st == _SS_CONNECTED for _fl, st in socks)
               for name, socks in _bound_names(pid, proc_net_unix).items())


def listens_on(pid, path, proc_net_unix=None):
    """Whether process pid itself listens on the UNIX socket at ``path``."""
    return any(_names_path(pid, name, path) and any(fl & _SO_ACCEPTCON for fl, _st in socks)
               for name, socks in _bound_names(pid, proc_net_unix).items())


class QMPConnection:
    """A synchronous QMP session.  Use as a context manager or call close()."""

    def __init__(self, address, timeout=DEFAULT_TIMEOUT, allow_tcp=False):
        self.address = address
        self.timeout = timeout
        self.family, self.target = parse_address(address, allow_tcp)
        self.pid = None
        self.greeting = None
        self._loop = None
        self._client = None
        self._listener = None
        self._pending = []

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self):
        if not HAS_QEMU_QMP:
            raise QMPError("missing-library", "the Python library qemu.qmp is not installed")
        sock = self._open_socket()
        self._loop = asyncio.new_event_loop()
        self._client = _Client(os.path.basename(str(self.target)))
        self._listener = EventListener()
        self._client.register_listener(self._listener)
        try:
            sock.setblocking(False)
            self._run(self._client.connect(sock), self.timeout)
        except asyncio.TimeoutError:
            self.close()
            if self.family == "unix" and self.pid and monitor_has_client(self.pid, self.target):
                raise QMPError(
                    "busy",
                    "QMP socket %s (QEMU PID %d) is in use by another client; QMP serves one client "
                    "at a time: close the other client (another run, libvirt, a qmp-shell) and retry"
                    % (self.target, self.pid), pid=self.pid)
            raise QMPError(
                "no-greeting",
                "QMP socket %s accepted the connection but sent no greeting within %ss: "
                "QEMU (PID %s) is not answering its monitor" % (self.target, self.timeout, self.pid))
        except ConnectError as e:
            self.close()
            cause = e.exc
            if isinstance(cause, (GreetingError, NegotiationError)):
                raise QMPError(
                    "not-qmp",
                    "%s answered, but not as a QMP monitor (%s): is it an HMP monitor or another "
                    "chardev?" % (self.target, cause))
            if isinstance(cause, EOFError):
                raise QMPError(
                    "not-qmp", "%s closed the connection before sending a QMP greeting" % (self.target,))
            raise QMPError("connect", "cannot talk QMP on %s: %s" % (self.target, cause))
        self.greeting = self._client.greeting._raw if self._client.greeting else None
        return self

    def _open_socket(self):
        if self.family == "tcp":
            try:
                return socket.create_connection(self.target, timeout=self.timeout)
            except OSError as e:
                raise QMPError("refused", "cannot connect to QMP at %s:%s: %s"
                               % (self.target[0], self.target[1], e.strerror or e))
        path = self.target
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise QMPError("missing", "no QMP socket at %s: is the VM running, is the path right?" % path)
        except PermissionError:
            raise QMPError("permission", "permission denied reaching %s: run as root (become: true)" % path)
        if not stat.S_ISSOCK(st.st_mode):
            raise QMPError("not-socket", "%s exists but is not a UNIX socket" % path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            if e.errno == errno.ECONNREFUSED:
                raise QMPError(
                    "refused",
                    "connection refused on %s: nothing listens there (a stale socket of a QEMU that "
                    "has exited?)" % path)
            if e.errno in (errno.EACCES, errno.EPERM):
                raise QMPError("permission", "permission denied connecting to %s: run as root (become: true)" % path)
            if e.errno == errno.ENOENT:
                raise QMPError("missing", "no QMP socket at %s: is the VM running, is the path right?" % path)
            if isinstance(e, socket.timeout):
                raise QMPError("timeout", "connecting to %s timed out after %ss" % (path, self.timeout))
            raise QMPError("connect", "cannot connect to %s: %s" % (path, e.strerror or e))
        self.pid = peer_pid(sock)
        return sock

    def _run(self, coro, timeout):
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def execute(self, command, arguments=None, timeout=None):
        """Run one QMP command and return its result; raise QMPError on any failure."""
        if self._client is None:
            raise QMPError("closed", "QMP connection to %s is not open" % (self.target,))
        timeout = self.timeout if timeout is None else timeout
        try:
            return self._run(self._client.execute(command, arguments), timeout)
        except ExecuteError as e:
            raise QMPCommandError(command, e.error_class, str(e))
        except asyncio.TimeoutError:
            raise QMPError("timeout", "QEMU did not answer %s within %ss" % (command, timeout))
        except (ExecInterruptedError, EOFError, OSError) as e:
            raise QMPError("disconnected", "QEMU closed the QMP connection during %s (%s)"
                           % (command, e or type(e).__name__))

    def events(self):
        """Every event received and not yet returned, oldest first."""
        if self._listener is not None:
            # Give QEMU's already sent messages a moment to be read and dispatched.
            self._loop.run_until_complete(asyncio.sleep(0.01))
            self._pending.extend(dict(ev) for ev in self._listener.clear())
        found, self._pending = self._pending, []
        return found

    def wait_event(self, names, timeout):
        """The next event named in ``names``, or None on timeout or when QEMU hangs up.

        Other events stay for events().  Events QEMU sent before hanging up are
        still returned (after an exec, QEMU's last words are in the socket).
        """
        names = set([names] if isinstance(names, str) else names)
        deadline = self._loop.time() + timeout
        while True:
            self._pending.extend(dict(ev) for ev in self._listener.clear())
            for i, ev in enumerate(self._pending):
                if ev.get("event") in names:
                    return self._pending.pop(i)
            left = deadline - self._loop.time()
            if left <= 0 or not self.connected:
                return None
            self._loop.run_until_complete(self._arrival(left))

    async def _arrival(self, timeout):
        """Wait until an event arrives (kept in _pending), QEMU hangs up, or timeout."""
        get = asyncio.ensure_future(self._listener.get())
        hangup = asyncio.ensure_future(self._hangup())
        done, _pending = await asyncio.wait([get, hangup], timeout=timeout,
                                            return_when=asyncio.FIRST_COMPLETED)
        for task in (get, hangup):
            if task not in done:
                task.cancel()
        if get in done:
            self._pending.append(dict(get.result()))

    async def _hangup(self):
        while self._client.runstate == Runstate.RUNNING:
            await self._client.runstate_changed()

    @property
    def connected(self):
        """False once QEMU closed the connection (it quit, or exec'd a new binary)."""
        return self._client is not None and self._client.runstate == Runstate.RUNNING

    def wait_hangup(self, timeout):
        """Wait until QEMU closes the connection; True if it did within ``timeout``."""
        try:
            self._run(self._hangup(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def close(self):
        if self._client is not None:
            try:
                self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), self.timeout))
            except Exception:  # pylint: disable=broad-except
                # disconnect() re-raises whatever ended the session (EOF after
                # QEMU quit or exec'd); the session is over either way.
                pass
            self._client = None
            self._listener = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None


def event_time(event):
    """QEMU's timestamp of an event, in seconds since the epoch."""
    ts = event.get("timestamp") or {}
    return ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
