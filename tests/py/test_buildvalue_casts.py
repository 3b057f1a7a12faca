# SPDX-License-Identifier: AGPL-3.0-or-later
"""Every argument of a Py_BuildValue() in native/py is cast to the C type its
format code reads (K: unsigned long long, n: Py_ssize_t, ...).

The compiler does not check Py_BuildValue's variadic arguments. On a 64-bit
machine size_t, Py_ssize_t and unsigned long long are all 8 bytes, so a code
that does not match its argument goes unnoticed; on armv7l (the 32-bit wheel)
it shifts every later argument: the tunnel's stats() had remote_ws_open
(Py_ssize_t) under K and bulk_dropped (unsigned long long) under n, which
gave a None key there and made GET /api/plugin/tsd fail with 500 once linked
(make test-wheels ARCHES=armv7l). This reads the source, so it runs on any
machine."""

import glob
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The cast each code needs when the argument is written with one.
CAST_FOR_CODE = {
    "K": "unsigned long long",
    "k": "unsigned long",
    "L": "long long",
    "n": "Py_ssize_t",
    "I": "unsigned int",
    "i": "int",
    "d": "double",
}


def calls(text):
    """(line, format, [argument texts]) of each Py_BuildValue call."""
    for match in re.finditer(r"\bPy_BuildValue\s*\(", text):
        depth, i, start = 1, match.end(), match.end()
        while depth:
            ch = text[i]
            if ch == '"':
                i = text.index('"', i + 1)
                while text[i - 1] == "\\":
                    i = text.index('"', i + 1)
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            i += 1
        body = text[start:i - 1]
        args, depth, current = [], 0, ""
        in_string = False
        for pos, ch in enumerate(body):
            if ch == '"' and (pos == 0 or body[pos - 1] != "\\"):
                in_string = not in_string
            if not in_string and ch in "([{":
                depth += 1
            elif not in_string and ch in ")]}":
                depth -= 1
            if ch == "," and depth == 0 and not in_string:
                args.append(current.strip())
                current = ""
            else:
                current += ch
        args.append(current.strip())
        fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', args[0]))
        yield text.count("\n", 0, match.start()) + 1, fmt, args[1:]


def codes(fmt):
    """The format's codes, one per argument they read (s# and y# read two)."""
    out = []
    for code in re.findall(r"[a-zA-Z]#?", fmt):
        if code.endswith("#"):
            out += [code[0], "#"]
        else:
            out.append(code)
    return out


def test_every_buildvalue_argument_is_cast_to_what_its_code_reads():
    checked = 0
    problems = []
    for path in sorted(glob.glob(os.path.join(REPO, "native", "py", "*.c"))):
        with open(path) as f:
            text = f.read()
        for line, fmt, args in calls(text):
            where = "{}:{}".format(os.path.relpath(path, REPO), line)
            wanted = codes(fmt)
            if len(wanted) != len(args):
                problems.append("{}: {} codes in {!r} for {} arguments".format(where, len(wanted), fmt, len(args)))
                continue
            for code, arg in zip(wanted, args):
                cast = re.match(r"\(\s*((?:const\s+)?[A-Za-z_][A-Za-z_ ]*?\s*\**)\s*\)", arg)
                needed = "Py_ssize_t" if code == "#" else CAST_FOR_CODE.get(code)
                if not cast or not needed:
                    continue
                checked += 1
                if cast.group(1).strip() != needed:
                    problems.append("{}: {} read as {} ({}) but cast to ({})".format(
                        where, arg, code, needed, cast.group(1).strip()))
    assert checked > 50  # the parser found the casts
    assert not problems, "\n".join(problems)
