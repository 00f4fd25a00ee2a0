# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Extra variables as AWX makes them from a job template's survey.

Usage: survey.py SURVEY_SPEC EXTRA_VARS ANSWERS OUT

Every question of SURVEY_SPEC (docs/awx/survey.json) is answered: from
ANSWERS (a JSON object, variable -> answer as a person types it) or with the
question's default, and typed as AWX sends it: a number for integer and float
questions, text for everything else (a textarea keeps its line breaks). The
job template's EXTRA_VARS (JSON) come first; the answers override them, as in
AWX. An answer for a variable the survey does not ask is an error, so the test
uses exactly the survey's variables.
"""
import json
import sys


def answer(question, typed):
    kind = question["type"]
    if kind == "integer":
        value = int(typed)
    elif kind == "float":
        value = float(typed)
    else:
        value = str(typed)
    if kind == "multiplechoice" and value not in question["choices"].split("\n"):
        sys.exit("survey: %r is not a choice of %s" % (value, question["variable"]))
    if kind in ("integer", "float") and not question["min"] <= value <= question["max"]:
        sys.exit("survey: %s=%r is outside %s..%s" % (question["variable"], value, question["min"], question["max"]))
    return value


def main(spec_path, extra_vars_path, answers_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)["spec"]
    with open(extra_vars_path) as f:
        extra_vars = json.load(f)
    with open(answers_path) as f:
        answers = json.load(f)
    asked = dict((q["variable"], q) for q in spec)
    unknown = sorted(set(answers) - set(asked))
    if unknown:
        sys.exit("survey: the survey does not ask for %s" % ", ".join(unknown))
    for variable, question in asked.items():
        extra_vars[variable] = answer(question, answers.get(variable, question["default"]))
    with open(out_path, "w") as f:
        json.dump(extra_vars, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
