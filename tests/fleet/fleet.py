# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Several QEMU "hosts" on one machine, each reached by Ansible over real SSH.

A host is a network namespace (its own address on a veth pair) whose sshd runs
in its own PID and mount namespaces: processes started there over SSH (QEMU
VMs) are invisible to the other hosts' discovery, and die with that sshd, which
is the namespace's PID 1.  The addresses are this run's own, inside namespaces
it made.  ``up`` writes an inventory and a state file; ``down`` stops each
sshd by the host PID recorded at ``up`` and deletes the namespaces.

A "package host" (``up DIR N PYTHON PKGROOT``, host N+1) is one more such
host whose SSH sessions are chrooted into an overlay of PKGROOT, a Debian root
with its own QEMU and apt: Ansible installs packages there as on a real host,
and the overlay (in DIR) keeps the cached root unchanged.  The lab's scripts,
guest kernel and DIR are bound into it at their paths; the qemu.qmp library
is not there until the role installs it (live_upgrade_install_requirements,
from the root's local repository).

Each host has a private /run/cpr-qemu (the VMs' lock directories), as
separate machines have.  ``interrupt`` presses Ctrl-C on an ansible-playbook
while one of its switches runs (see interrupt()).

Usage: fleet.py up DIR N PYTHON [PKGROOT]  |  fleet.py down DIR  |  fleet.py interrupt DIR PLAYBOOK_PID
"""

import json
import os
import signal
import subprocess
import sys
import time

SSHD = "/usr/sbin/sshd"
NET = "10.213.%d.%d"  # host side .1, namespace side .2, one /30 per host


def _run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.join(os.path.dirname(HERE), "lab")
GUEST = os.path.join(os.environ.get("CPR_LAB_CACHE", "/var/cache/cpr-qemu-lab"), "guest")

# Runs as PID 1 of the package host's PID namespace, in its own mount
# namespace: the overlay and binds die with it.
ROOTED_SSHD = r"""
set -e
lower=$1 dir=$2; shift 2
root=$dir/root
mkdir -p "$root" "$dir/upper" "$dir/work"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
for d in "$@"; do mkdir -p "$root$d"; mount --bind "$d" "$root$d"; done
exec /usr/sbin/sshd -f "$dir/sshd.conf" -D -e
"""


# Runs as PID 1 of a host's PID namespace, in its own mount namespace: a
# private /run/cpr-qemu (the package host has its root's own).
PRIVATE_LOCKS = r"""
set -e
mkdir -p -m 0700 /run/cpr-qemu
mount -t tmpfs -o mode=0700,size=16m cpr-qemu-locks /run/cpr-qemu
exec "$@"
"""


def up(workdir, count, python, pkgroot=None):
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    key = os.path.join(workdir, "id_ed25519")
    if not os.path.exists(key):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(workdir, "host_key"))
    with open(key + ".pub") as f, open(os.path.join(workdir, "authorized_keys"), "w") as out:
        out.write(f.read())
    os.chmod(os.path.join(workdir, "authorized_keys"), 0o600)
    tag = os.path.basename(workdir.rstrip("/"))[-6:]
    state = {"hosts": []}
    for n in range(1, count + 1 + (1 if pkgroot else 0)):
        rooted = pkgroot and n == count + 1
        ns, veth = "cprlab-%s-h%d" % (tag, n), "cpr%sh%d" % (tag[-4:], n)
        host_ip, ns_ip = NET % (n, 1), NET % (n, 2)
        _run("ip", "netns", "add", ns)
        state["hosts"].append({"name": "h%d" % n, "netns": ns, "veth": veth, "address": ns_ip})
        _save(workdir, state)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p")
        _run("ip", "link", "set", veth + "p", "netns", ns)
        _run("ip", "addr", "add", host_ip + "/30", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", ns_ip + "/30", "dev", veth + "p")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", veth + "p", "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        host_dir = os.path.join(workdir, "h%d" % n)
        os.makedirs(host_dir, mode=0o700, exist_ok=True)
        config = os.path.join(host_dir, "sshd.conf")
        with open(config, "w") as f:
            f.write("ListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPidFile none\n"
                    "StrictModes no\nSubsystem sftp internal-sftp\nAcceptEnv CPR_LAB_*\n"
                    % (ns_ip, os.path.join(workdir, "host_key"), os.path.join(workdir, "authorized_keys")))
            if rooted:
                f.write("ChrootDirectory %s\n" % os.path.join(host_dir, "root"))
        if rooted:
            server = ["sh", "-c", ROOTED_SSHD, "sh", pkgroot, host_dir, LAB, GUEST, workdir]
            state["hosts"][-1]["package_host"] = True
        else:
            # Each host has its own lock directories, as separate machines do: the
            # lab's hosts share this machine's /run, and qemu_cpr_recover settles
            # every session of "its" host.
            server = ["sh", "-c", PRIVATE_LOCKS, "sh", SSHD, "-f", config, "-D", "-e"]
        log = open(os.path.join(host_dir, "sshd.log"), "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--pid", "--mount", "--fork",
                                 "--mount-proc", "--propagation", "private"] + server,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        state["hosts"][-1]["pid"] = proc.pid
        _save(workdir, state)
    inventory = {"qemu_hosts": {"hosts": {}, "vars": {
        "ansible_user": "root", "ansible_ssh_private_key_file": key, "ansible_python_interpreter": python,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"}}}
    for h in state["hosts"]:
        inventory["qemu_hosts"]["hosts"][h["name"]] = {"ansible_host": h["address"]}
        if h.get("package_host"):
            inventory["qemu_hosts"]["hosts"][h["name"]]["ansible_python_interpreter"] = "/usr/bin/python3"
    with open(os.path.join(workdir, "inventory.json"), "w") as f:
        json.dump(inventory, f, indent=1)
    for h in state["hosts"]:
        _wait_ssh(workdir, h)
    return state


def ssh(workdir, host, *command):
    return ["ssh", "-i", os.path.join(workdir, "id_ed25519"), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "root@" + host["address"]] + list(command)


def _wait_ssh(workdir, host, timeout=30):
    deadline = time.monotonic() + timeout
    while subprocess.run(ssh(workdir, host, "true"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("sshd of %s did not answer" % host["name"])
        time.sleep(0.2)


def _save(workdir, state):
    with open(os.path.join(workdir, "fleet.json"), "w") as f:
        json.dump(state, f)


def down(workdir):
    try:
        with open(os.path.join(workdir, "fleet.json")) as f:
            state = json.load(f)
    except OSError:
        return
    for h in state["hosts"]:
        # The recorded PID is `ip netns exec`, which exec'd unshare; unshare's
        # child is sshd, PID 1 of the host's PID namespace: killing it ends
        # every process of that host.
        if h.get("pid"):
            for child in _children(h["pid"]) + [h["pid"]]:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    time.sleep(0.5)
    for h in state["hosts"]:
        # Either may be gone already (the veth goes with its namespace).
        subprocess.run(["ip", "netns", "del", h["netns"]], stderr=subprocess.DEVNULL, check=False)
        subprocess.run(["ip", "link", "del", h["veth"]], stderr=subprocess.DEVNULL, check=False)
    os.unlink(os.path.join(workdir, "fleet.json"))


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _namespaces(workdir):
    """The PID namespaces of the hosts (of their sshd, PID 1 there)."""
    with open(os.path.join(workdir, "fleet.json")) as f:
        state = json.load(f)
    out = set()
    for h in state["hosts"]:
        for pid in _children(h["pid"]):
            try:
                out.add(os.readlink("/proc/%d/ns/pid" % pid))
            except OSError:
                pass
    return out


def processes(workdir):
    """(PID, argv) of every process of the hosts."""
    spaces, out = _namespaces(workdir), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/ns/pid" % name) not in spaces:
                continue
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        out.append((int(name), argv))
    return out


def qemus(workdir, host, vm):
    """PIDs of the QEMU processes of one VM (its run directory is in their argv)."""
    run_dir = os.path.join(workdir, "vms-" + host, vm) + "/"
    return [pid for pid, argv in processes(workdir)
            if argv and "qemu-system" in argv[0] and any(run_dir in a for a in argv)]


def interrupt(workdir, playbook_pid, timeout=600):
    """Ctrl-C an ansible-playbook (SIGINT) while a switch runs on a host, then SIGKILL its SSH processes.

    "A switch runs" is seen from outside: a new QEMU waiting for its guest (-incoming) on a host. Its SSH
    processes (ControlPersist masters included) are this run's: they use the run's own key. Returns the
    switching VM's argv, after the module processes on the hosts (and the switches they detached) ended.
    """
    deadline = time.monotonic() + timeout
    switching = None
    while switching is None:
        if time.monotonic() > deadline or not os.path.exists("/proc/%d" % playbook_pid):
            raise RuntimeError("no switch was seen while ansible-playbook (PID %d) ran" % playbook_pid)
        switching = next((argv for _pid, argv in processes(workdir)
                          if argv and "qemu-system" in argv[0] and "-incoming" in argv), None)
        time.sleep(0.02)
    os.kill(playbook_pid, signal.SIGINT)
    time.sleep(1)
    # The run's key is in the clients' argv; a ControlPersist master names its control socket, in the run's
    # own directory (run.sh sets ANSIBLE_SSH_CONTROL_PATH_DIR).
    marks = (os.path.join(workdir, "id_ed25519").encode(), os.path.join(workdir, "cp").encode() + b"/")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = [a for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and argv[0].split(b" ")[0] in (b"ssh", b"ssh:", b"/usr/bin/ssh") \
                and any(m in a for m in marks for a in argv):
            try:
                os.kill(int(name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    # What the modules left running finishes (the switch is detached from the module); wait for it.
    while any(any("AnsiballZ_" in a for a in argv) for _pid, argv in processes(workdir)):
        if time.monotonic() > deadline:
            raise RuntimeError("module processes still run on the hosts")
        time.sleep(0.2)
    return switching


if __name__ == "__main__":
    if sys.argv[1] == "up":
        up(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
    elif sys.argv[1] == "interrupt":
        print(json.dumps(interrupt(sys.argv[2], int(sys.argv[3]))))
    else:
        down(sys.argv[2])
