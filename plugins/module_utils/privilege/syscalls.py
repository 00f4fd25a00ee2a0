# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""System calls Python does not wrap, by their numbers on each machine: keyctl(2) (identity.py's launch stage
gives the new QEMU a session keyring of its own), ioprio_get(2) and ioprio_set(2) (scheduling.py: its I/O
priority). On a machine not listed a cpr-transfer is refused before the pause (identity.problems)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import os

# From each architecture's system call table (x86_64's syscall_64.tbl, asm-generic/unistd.h for aarch64 and
# riscv64, powerpc's and s390's syscall.tbl).
_GENERIC = {"keyctl": 219, "ioprio_set": 30, "ioprio_get": 31}
_POWERPC = {"keyctl": 271, "ioprio_set": 273, "ioprio_get": 274}
NUMBERS = {
    "x86_64": {"keyctl": 250, "ioprio_set": 251, "ioprio_get": 252},
    "aarch64": _GENERIC, "riscv64": _GENERIC,
    "ppc64le": _POWERPC, "ppc64": _POWERPC,
    "s390x": {"keyctl": 280, "ioprio_set": 282, "ioprio_get": 283},
}


def numbers():
    """This machine's system call numbers by name, or None where the collection does not know them. The table
    is the 64-bit ABI's: a 32-bit Python on a 64-bit kernel (which names the machine alike) numbers them
    otherwise, and gets None."""
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    return NUMBERS.get(os.uname().machine)


def call(name, *args):
    """System call NAME with integer ARGS; its result, or OSError. Only where numbers() knows this machine."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(numbers()[name], *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result
