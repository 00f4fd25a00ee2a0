# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.cpr.qemu.plugins.module_utils import process

DATA = os.path.join(os.path.dirname(__file__), "data")


def _load(name):
    with open(os.path.join(DATA, name)) as f:
        return yaml.safe_load(f)


ARGV_CASES = _load("argv.yml")


@pytest.mark.parametrize("case", ARGV_CASES, ids=[c["id"] for c in ARGV_CASES])
def test_parse_argv(case):
    facts = process.parse_argv(case["argv"])
    for key, want in case["facts"].items():
        assert facts[key] == want, key


@pytest.mark.parametrize("case", _load("mask.yml"))
def test_mask_argv(case):
    assert process.mask_argv(case["argv"]) == case["masked"]
    # What is masked is exactly what is handed to Ansible's no_log masking.
    hidden = process.secret_values(case["argv"])
    assert not any(v in " ".join(process.mask_argv(case["argv"])) for v in hidden)
    assert bool(hidden) == (case["argv"] != case["masked"])


SECRET_CASES = _load("secrets.yml")


@pytest.mark.parametrize("case", SECRET_CASES, ids=[c["id"] for c in SECRET_CASES])
def test_secret_forms_are_masked_and_handed_to_no_log(case):
    masked = process.mask_argv(case["argv"])
    assert masked == case["masked"]
    hidden = process.secret_values(case["argv"])
    assert hidden == set(case["secrets"])
    assert not any(v in " ".join(masked) for v in hidden)
    assert bool(hidden) == (case["argv"] != case["masked"])
    assert process.mask_argv(masked) == masked  # masking masked output changes nothing
    assert process.secret_values(masked) == set()


def test_mask_text_hides_argv_secrets_urls_and_rbd_keys():
    argv = ["qemu", "-object", '{"qom-type":"secret","id":"s1","data":"aHVudGVyMg=="}',
            "-spice", "port=5900,password=sp1ce pw", "-vnc", ":1,password=on"]
    log = ("qemu: -object {\"qom-type\":\"secret\",\"id\":\"s1\",\"data\":\"aHVudGVyMg==\"}: bad\n"
           "qemu: -spice port=5900,password=sp1ce pw: error\n"
           "qemu: could not open https://u:url-pw@host/x and iscsi://bob%i5@h/iqn/0\n"
           "qemu: rbd:pool/img:id=admin:key=AQC1key==:conf=/etc/ceph.conf failed; passwd=other-pw\n"
           "qemu: -vnc :1,password=on: ok")
    text = process.mask_text(log, process.secret_values(argv))
    for secret in ("aHVudGVyMg==", "sp1ce pw", "url-pw", "i5", "AQC1key==", "other-pw"):
        assert secret not in text
    assert "https://u:%s@host/x" % process.MASK in text
    assert "iscsi://bob%%%s@h/iqn/0" % process.MASK in text
    assert "key=%s:conf=/etc/ceph.conf" % process.MASK in text
    assert "password=on: ok" in text
    assert process.mask_text("no secret here, on and off", ()) == "no secret here, on and off"


def test_cpr_transfer_log_tail_is_masked(tmp_path):
    from ansible_collections.cpr.qemu.plugins.module_utils.dialects import cpr_transfer
    log = tmp_path / "new-qemu.log"
    log.write_text("x" * 1000 + "\nqemu: -object secret,id=s0,data=c2VjcmV0: Permission denied\n")
    tail = cpr_transfer._log_tail(str(log), ["qemu", "-object", "secret,id=s0,data=c2VjcmV0"])
    assert "c2VjcmV0" not in tail
    assert tail.endswith("data=%s: Permission denied" % process.MASK)
    assert len(tail) <= 400
    assert cpr_transfer._log_tail(str(tmp_path / "missing.log"), []) == ""


@pytest.mark.parametrize("text, implied, pairs", [
    ("q35,aux-ram-share=on", "type", [("type", "q35"), ("aux-ram-share", "on")]),
    ("on,spawn=deny", "enable", [("enable", "on"), ("spawn", "deny")]),
    ("a=1,,2,b", None, [("a", "1,2"), ("b", "on")]),
    ("", "type", []),
])
def test_split_options(text, implied, pairs):
    assert process.split_options(text, implied) == pairs
    if pairs and implied:
        assert process.split_options(process.join_options(pairs, implied), implied) == pairs


def _fake_proc(tmp_path, pid, argv, exe, root="/"):
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    os.symlink(exe, str(d / "exe"))
    os.symlink(root, str(d / "root"))
    return d


def test_discover_finds_every_qmp_monitor_whatever_the_process_is_called(tmp_path):
    _fake_proc(tmp_path, 10, ["/usr/bin/qemu-system-x86_64", "-qmp", "unix:/run/a.sock,server=on"],
               "/usr/bin/qemu-system-x86_64")
    _fake_proc(tmp_path, 11, ["/usr/bin/qemu-system-x86_64", "-nodefaults"], "/usr/bin/qemu-system-x86_64")
    # RHEL's name, libvirt's monitor: an option without a value (-no-user-config) before it changes nothing.
    _fake_proc(tmp_path, 12, ["/usr/libexec/qemu-kvm", "-no-user-config", "-chardev",
                              "socket,id=charmonitor,path=/run/b.sock,server=on,wait=off", "-mon",
                              "chardev=charmonitor,id=monitor,mode=control"], "/usr/libexec/qemu-kvm")
    # Replaced on disk: exe reads "(deleted)", argv[0] renamed by the process; 11.1's monitor object.
    _fake_proc(tmp_path, 13, ["qemu-kvm-worker", "-async-teardown", "-chardev", "socket,id=m,path=/run/c.sock",
                              "-object", '{"qom-type":"monitor-qmp","id":"mon0","chardev":"m"}'],
               "/usr/bin/qemu-system-x86_64 (deleted)")
    # Whether it is QEMU is for its QMP socket to say (vm_facts.inspect_discovered).
    _fake_proc(tmp_path, 14, ["/usr/bin/python3", "-qmp", "unix:/run/d.sock"], "/usr/bin/python3.11")
    (tmp_path / "self").mkdir()
    found = process.discover(str(tmp_path))
    assert [(d["pid"], d["qmp_socket"]) for d in found] == [
        (10, "/run/a.sock"), (12, "/run/b.sock"), (13, "/run/c.sock"), (14, "/run/d.sock")]


def test_discover_reaches_sockets_of_chrooted_qemu_through_its_root(tmp_path):
    _fake_proc(tmp_path, 20, ["/usr/bin/qemu-system-x86_64", "-qmp", "unix:/run/cpr/qmp.sock,server=on"],
               "/srv/root/usr/bin/qemu-system-x86_64", root="/srv/root")
    found = process.discover(str(tmp_path))
    assert found[0]["qmp_socket"] == "%s/20/root/run/cpr/qmp.sock" % tmp_path
    assert found[0]["qmp_socket_as_given"] == "/run/cpr/qmp.sock"


def test_binary_facts_give_the_path_inside_the_root_and_the_file_identity(tmp_path):
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    real = root / "usr" / "bin" / "qemu-system-x86_64"
    real.write_bytes(b"x")
    d = tmp_path / "30"
    d.mkdir()
    os.symlink(str(real), str(d / "exe"))
    os.symlink(str(root), str(d / "root"))
    facts = process.binary_facts(30, str(tmp_path))
    assert facts["path"] == "/usr/bin/qemu-system-x86_64"
    assert facts["root"] == str(root)
    assert facts["replaced_on_disk"] is False
    assert facts["file_id"] == [os.stat(str(real)).st_dev, os.stat(str(real)).st_ino]


def test_an_option_no_binary_was_asked_about_is_taken_to_need_a_value_and_named():
    argv = ["q", "-cpr-test-flag", "disk.img", "-qmp", "unix:/run/a.sock", "-S"]
    assert process.parse_argv(argv)["qmp_sockets"] == ["/run/a.sock"]
    assert process.unknown_options(argv) == ["cpr-test-flag"]
    # Without an answer, what follows decides: here the image reads as the option's value.
    assert [v for _i, n, v in process.iter_options(argv) if n == "cpr-test-flag"] == ["disk.img"]
    assert process.parse_argv(["q", "-cpr-test-other", "-qmp", "unix:/run/b.sock"])["qmp_sockets"] == ["/run/b.sock"]
    # Discovery reads QMP monitors without knowing: the word after each monitor option.
    assert process.qmp_socket_candidates(argv) == ["/run/a.sock"]
    process.learn_options({"cpr-test-flag": False})
    assert [v for _i, n, v in process.iter_options(argv) if n == "cpr-test-flag"] == [None]
    assert process.unknown_options(argv) == []


def test_option_words_are_what_could_be_option_names():
    assert process.option_words(["q", "-m", "--enable-kvm", "-1x", "-append", "-rd.break x", "-", "/x"]) == \
        set(["m", "enable-kvm", "1x", "append"])
