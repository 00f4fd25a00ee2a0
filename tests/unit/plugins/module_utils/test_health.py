# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest health gate against a fake QMP monitor and a fake guest agent on UNIX sockets of this process
(so their listener's PID is the "QEMU" PID, os.getpid()), and one served by a child process (not QEMU)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import socket
import threading
import time

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import health
from ansible_collections.cpr.qemu.tests.unit.plugins.module_utils import qmp_server


def _serve(path, answer, accept_one=False):
    """A listening UNIX socket at path; each accepted client is served by ``answer(conn)`` in a thread."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)

    def loop():
        while True:
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()
            if accept_one:
                return
    threading.Thread(target=loop, daemon=True).start()
    return listener


def _lines(conn):
    buf = b""
    while True:
        data = conn.recv(4096)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line.lstrip(b"\xff"))


def qmp_answer(status):
    def reply_to(cmd):
        return [{"return": {"status": status, "running": status == "running"} if cmd == "query-status" else {}}]
    return lambda conn: qmp_server.serve(conn, reply_to)


def agent_answer(stale=False, silent=False, ping_error=False, seen=None):
    """A guest agent: guest-sync-delimited echoed after 0xFF (a stale reply first if asked), guest-ping."""
    def answer(conn):
        for msg in _lines(conn):
            if seen is not None:
                seen.append(msg)
            if silent:
                continue
            if msg["execute"] == "guest-sync-delimited":
                out = b'{"return": {}}\n' if stale else b""
                conn.sendall(out + b"\xff" + json.dumps({"return": msg["arguments"]["id"]}).encode() + b"\n")
            elif msg["execute"] == "guest-ping":
                reply = {"error": {"class": "GenericError", "desc": "blocked"}} if ping_error else {"return": {}}
                conn.sendall(json.dumps(reply).encode() + b"\n")
    return answer


@pytest.fixture
def vm(tmp_path):
    """Start a fake VM: {qmp, agent, argv, servers}; its listeners closed at the end."""
    listeners = []

    def start(status="running", agent=None):
        qmp_path, agent_path = str(tmp_path / "qmp.sock"), str(tmp_path / "qga.sock")
        listeners.append(_serve(qmp_path, qmp_answer(status)))
        argv = ["qemu-system-x86_64", "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
        if agent is not None:
            listeners.append(_serve(agent_path, agent))
            argv += ["-chardev", "socket,id=qga0,path=%s,server=on,wait=off" % agent_path,
                     "-device", "virtio-serial-pci,id=vser0",
                     "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"]
        return {"qmp": qmp_path, "agent": agent_path, "argv": argv}
    yield start
    for listener in listeners:
        listener.close()


# --- the channel on the command line --------------------------------------------------------------

LIBVIRT = ["qemu", "-chardev", "socket,id=charchannel0,path=/run/ch/org.qemu.guest_agent.0,server=on,wait=off",
           "-device", '{"driver":"virtio-serial-pci","id":"virtio-serial0","bus":"pci.2","addr":"0x0"}',
           "-device", '{"driver":"virtserialport","bus":"virtio-serial0.0","nr":1,"chardev":"charchannel0",'
                      '"id":"channel0","name":"org.qemu.guest_agent.0"}']
PROXMOX = ["qemu", "-chardev", "socket,path=/var/run/qemu-server/100.qga,server=on,wait=off,id=qga0",
           "-device", "virtio-serial,id=qga0", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]


@pytest.mark.parametrize("argv,want", [
    (LIBVIRT, {"chardev": "charchannel0", "path": "/run/ch/org.qemu.guest_agent.0", "why": None}),
    (PROXMOX, {"chardev": "qga0", "path": "/var/run/qemu-server/100.qga", "why": None}),
    (["qemu", "-chardev", "socket,id=c,path=rel.sock,server", "-device", "virtconsole,chardev=c,name=org.qemu.guest_agent.0"],
     {"chardev": "c", "path": "rel.sock", "why": None}),
], ids=["libvirt-json", "proxmox", "virtconsole-relative"])
def test_agent_channel_forms(argv, want):
    assert health.agent_channel(argv) == want


@pytest.mark.parametrize("argv,why", [
    (["qemu", "-chardev", "socket,id=c,path=/x.sock", "-device", "virtserialport,chardev=c,name=org.qemu.guest_agent.0"],
     "client socket"),
    (["qemu", "-chardev", "socket,id=c,fd=33,server=on,wait=off",
      "-device", "virtserialport,chardev=c,name=org.qemu.guest_agent.0"], "not a UNIX socket with a path"),
    (["qemu", "-chardev", "pty,id=c", "-device", "virtserialport,chardev=c,name=org.qemu.guest_agent.0"],
     "not a UNIX socket with a path"),
    (["qemu", "-chardev", "socket,id=c,path=qga,abstract=on,server=on",
      "-device", "virtserialport,chardev=c,name=org.qemu.guest_agent.0"], "not a UNIX socket with a path"),
    (["qemu", "-device", "virtserialport,chardev=c,name=org.qemu.guest_agent.0"], "not on the command line"),
], ids=["client", "fd", "pty", "abstract", "missing-chardev"])
def test_agent_channel_qemu_does_not_listen_on(argv, why):
    found = health.agent_channel(argv)
    assert found["path"] is None and why in found["why"]


def test_no_agent_channel():
    assert health.agent_channel(["qemu", "-chardev", "socket,id=c,path=/x,server=on",
                                 "-device", "virtserialport,chardev=c,name=com.example.other"]) is None
    assert health.agent_channel(["qemu", "-m", "1G"]) is None


@pytest.mark.parametrize("probe,want", [
    ("tcp:10.0.0.5:22", ("tcp", "10.0.0.5", 22)),
    ("tcp:guest.example:443", ("tcp", "guest.example", 443)),
    ("tcp:[fd00::5]:80", ("tcp", "fd00::5", 80)),
])
def test_parse_probe(probe, want):
    assert health.parse_probe(probe) == want


@pytest.mark.parametrize("probe", ["tcp:host", "tcp::22", "tcp:h:0", "tcp:h:70000", "console:login:", "udp:h:53", 22])
def test_bad_probes_are_refused_up_front(probe):
    with pytest.raises(health.HealthError) as e:
        health.parse_probe(probe)
    assert e.value.kind == "bad-probe"


# --- the whole check ------------------------------------------------------------------------------

def test_a_pinging_agent_is_healthy(vm):
    v = vm(agent=agent_answer())
    result = health.check(v["qmp"], os.getpid(), v["argv"], timeout=5)
    assert result == {"healthy": True, "how": "guest-agent", "kind": None, "checks": ["runstate", "guest-agent"],
                      "detail": "the guest is running; the guest agent on %s answered guest-ping" % v["agent"]}


def test_stale_replies_before_the_sync_echo_are_skipped(vm):
    seen = []
    v = vm(agent=agent_answer(stale=True, seen=seen))
    assert health.check(v["qmp"], os.getpid(), v["argv"], timeout=5)["healthy"]
    assert [m["execute"] for m in seen] == ["guest-sync-delimited", "guest-ping"]


def test_a_silent_agent_fails_within_the_timeout(vm):
    v = vm(agent=agent_answer(silent=True))
    started = time.monotonic()
    result = health.check(v["qmp"], os.getpid(), v["argv"], timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert (result["healthy"], result["how"], result["kind"]) == (False, "guest-agent", "timeout")
    assert "did not answer guest-ping within 0.5s" in result["detail"]


def test_an_agent_error_to_guest_ping_fails(vm):
    v = vm(agent=agent_answer(ping_error=True))
    result = health.check(v["qmp"], os.getpid(), v["argv"], timeout=5)
    assert (result["healthy"], result["kind"]) == (False, "agent-error")
    assert "blocked (GenericError)" in result["detail"]


def test_a_paused_guest_is_unhealthy_when_it_ran_before(vm):
    v = vm(status="paused", agent=agent_answer())
    result = health.check(v["qmp"], os.getpid(), v["argv"], timeout=5)
    assert (result["healthy"], result["how"], result["kind"]) == (False, "runstate", "runstate")
    assert result["checks"] == ["runstate"]
    assert result["detail"] == "the guest is paused, it was running before the upgrade"


def test_a_guest_paused_before_is_asked_nothing_more(vm):
    seen = []
    v = vm(status="paused", agent=agent_answer(seen=seen))
    result = health.check(v["qmp"], os.getpid(), v["argv"], expected_runstate="paused", probe="tcp:127.0.0.1:9", timeout=5)
    assert (result["healthy"], result["how"], result["checks"]) == (True, "runstate", ["runstate"])
    assert seen == []


def test_without_a_channel_the_runstate_decides(vm):
    v = vm()
    result = health.check(v["qmp"], os.getpid(), v["argv"], timeout=5)
    assert (result["healthy"], result["how"], result["checks"]) == (True, "runstate", ["runstate"])


def test_a_channel_qemu_does_not_listen_on_is_not_asked(vm):
    v = vm()
    argv = v["argv"] + ["-chardev", "pty,id=c", "-device", "virtserialport,chardev=c,name=org.qemu.guest_agent.0"]
    result = health.check(v["qmp"], os.getpid(), argv, timeout=5)
    assert (result["healthy"], result["how"]) == (True, "runstate")
    assert "the guest agent channel was not asked: chardev c is not a UNIX socket" in result["detail"]


def test_use_agent_false_skips_the_agent(vm):
    v = vm(agent=agent_answer(silent=True))
    result = health.check(v["qmp"], os.getpid(), v["argv"], timeout=5, use_agent=False)
    assert (result["healthy"], result["checks"]) == (True, ["runstate"])


def test_tcp_probe_accepted_and_refused(vm):
    v = vm()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        result = health.check(v["qmp"], os.getpid(), v["argv"], probe="tcp:127.0.0.1:%d" % port, timeout=5)
        assert (result["healthy"], result["how"], result["checks"]) == (True, "tcp", ["runstate", "tcp"])
    finally:
        server.close()
    result = health.check(v["qmp"], os.getpid(), v["argv"], probe="tcp:127.0.0.1:%d" % port, timeout=5)
    assert (result["healthy"], result["how"], result["kind"]) == (False, "tcp", "refused")


def test_agent_and_probe_both_run(vm):
    v = vm(agent=agent_answer())
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        result = health.check(v["qmp"], os.getpid(), v["argv"], probe="tcp:127.0.0.1:%d" % server.getsockname()[1], timeout=5)
    finally:
        server.close()
    assert (result["healthy"], result["how"], result["checks"]) == (True, "guest-agent", ["runstate", "guest-agent", "tcp"])


def test_a_qmp_socket_of_another_process_is_not_the_vm(vm):
    v = vm(agent=agent_answer())
    result = health.check(v["qmp"], os.getpid() + 100000, v["argv"], timeout=5)
    assert (result["healthy"], result["how"], result["kind"]) == (False, "runstate", "not-qemu")


def test_an_unreachable_monitor_is_unhealthy(tmp_path):
    result = health.check(str(tmp_path / "gone.sock"), os.getpid(), ["qemu"], timeout=1)
    assert (result["healthy"], result["how"], result["kind"]) == (False, "runstate", "qmp")


def test_a_bad_probe_raises(vm):
    v = vm()
    with pytest.raises(health.HealthError):
        health.check(v["qmp"], os.getpid(), v["argv"], probe="icmp:10.0.0.1")


# --- who listens on the agent's socket ------------------------------------------------------------

def _child_listener(path):
    """A listener at path in a child process (not "QEMU"): (pid, read end of a pipe that gets whatever a
    client sends it)."""
    ready_r, ready_w = os.pipe()
    got_r, got_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(10)  # never outlive a test that failed
            os.write(ready_w, b"x")
            conn = listener.accept()[0]
            conn.settimeout(1)
            try:
                os.write(got_w, conn.recv(4096) or b"")
            except OSError:
                pass
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(got_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    return pid, got_r


def _reap(pid, got_r):
    os.waitpid(pid, 0)
    data = os.read(got_r, 4096)
    os.close(got_r)
    return data


def test_a_socket_qemu_does_not_listen_on_is_refused_unconnected(tmp_path):
    path = str(tmp_path / "qga.sock")
    pid, got_r = _child_listener(path)
    try:
        with pytest.raises(health.HealthError) as e:
            health.connect_agent(os.getpid(), path, 1)
        assert e.value.kind == "not-qemu" and "does not listen on" in e.value.message
    finally:
        # Nothing connected: let the child's accept return.
        socket.socket(socket.AF_UNIX).connect(path)
        assert _reap(pid, got_r) == b""


def test_a_listener_swapped_in_after_the_check_is_refused_by_its_peer_pid(tmp_path, monkeypatch):
    """Were the path swapped between the listener check and the connect, the peer PID tells: nothing is sent."""
    path = str(tmp_path / "qga.sock")
    pid, got_r = _child_listener(path)
    monkeypatch.setattr(health, "socket_use", lambda _pid, _path: (True, False))
    try:
        with pytest.raises(health.HealthError) as e:
            health.connect_agent(os.getpid(), path, 1)
        assert e.value.kind == "not-qemu" and "served by PID %d" % pid in e.value.message
    finally:
        assert _reap(pid, got_r) == b""


def test_a_socket_qemu_bound_by_a_relative_path(tmp_path, monkeypatch):
    """A command line's relative path is bound relative to QEMU's working directory."""
    monkeypatch.chdir(tmp_path)
    listener = _serve("qga.sock", agent_answer())
    try:
        assert health.socket_use(os.getpid(), str(tmp_path / "qga.sock")) == (True, False)
        sock = health.connect_agent(os.getpid(), str(tmp_path / "qga.sock"), 1)
        sock.close()
    finally:
        listener.close()


def test_a_symlink_at_the_path_is_not_followed(tmp_path, vm):
    v = vm(agent=agent_answer())
    link = str(tmp_path / "link.sock")
    os.symlink(v["agent"], link)
    with pytest.raises(health.HealthError) as e:
        health.connect_agent(os.getpid(), link, 1)
    assert e.value.kind == "not-socket"


def test_a_file_at_the_path_is_not_a_socket(tmp_path):
    path = tmp_path / "qga.sock"
    path.write_text("")
    with pytest.raises(health.HealthError) as e:
        health.connect_agent(os.getpid(), str(path), 1)
    assert e.value.kind == "not-socket"


def test_a_missing_socket(tmp_path):
    with pytest.raises(health.HealthError) as e:
        health.connect_agent(os.getpid(), str(tmp_path / "none.sock"), 1)
    assert e.value.kind == "missing"


def test_an_agent_socket_held_by_another_client_is_busy(vm):
    held = threading.Event()
    v = vm(agent=lambda conn: (held.wait(5), conn.close()))
    other = socket.socket(socket.AF_UNIX)
    other.connect(v["agent"])
    deadline = time.monotonic() + 5
    while not health.qmp.monitor_has_client(os.getpid(), v["agent"]) and time.monotonic() < deadline:
        time.sleep(0.01)  # the fake's accept runs in a thread
    try:
        result = health.check(v["qmp"], os.getpid(), v["argv"], timeout=2)
    finally:
        held.set()
        other.close()
    assert (result["healthy"], result["how"], result["kind"]) == (False, "guest-agent", "busy")
