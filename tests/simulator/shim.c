/* SPDX-FileCopyrightText: 2026 cpr.qemu contributors
 * SPDX-License-Identifier: GPL-3.0-or-later */
/* The live-update SIMULATOR's executable: embeds Python and runs the simulator
 * script with QEMU's command line, so that /proc/PID/exe, the exec target of
 * cprexec and the file the cpr.qemu modules check are one ELF binary, as a
 * real QEMU build would be.  SIM_SCRIPT and SIM_SERIES are set when
 * provision.sh builds it: one build per version of the series, as each real
 * build carries one, so that one binary always shows one QMP schema. */
#include <Python.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    char **args = calloc(argc + 5, sizeof(char *));
    int i;

    if (!args)
        return 1;
    args[0] = argv[0];
    args[1] = "-I"; /* isolated: no user site, no PYTHON* variables */
    args[2] = SIM_SCRIPT;
    args[3] = "-simulate-series";
    args[4] = SIM_SERIES;
    for (i = 1; i < argc; i++)
        args[i + 4] = argv[i];
    return Py_BytesMain(argc + 4, args);
}
