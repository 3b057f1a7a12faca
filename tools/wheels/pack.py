# SPDX-License-Identifier: AGPL-3.0-or-later
"""Packs the files that ``meson install`` staged into the two distributions
that OctoPrint's plugin manager installs (docs/packaging.md):

* ``native``: OctoPrint-TSD-native, one wheel per architecture with the
  extension module ``_tsd`` and ``tsd-helper`` (installed into the
  ``octoprint_tsd`` package folder, where bridge.py looks for them). Before
  ``auditwheel repair`` bundles the shared libraries it is tagged
  ``linux_<arch>``.
* ``plugin``: OctoPrint-TSD, the pure-Python plugin, as a wheel and as an
  sdist (the archive URL for the plugin manager); it requires exactly the
  native distribution of the same version.

The metadata comes from the checkout's pyproject.toml; the version from
meson.build (passed in). Both archives are reproducible: sorted entries,
the time of SOURCE_DATE_EPOCH, fixed modes and owners.
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import tomllib
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "octoprint_tsd"
PLUGIN_NAME = "OctoPrint-TSD"
NATIVE_NAME = "OctoPrint-TSD-native"
NATIVE_SUMMARY = ("The native part of OctoPrint-TSD (the C core and tsd-helper) with the "
                  "shared libraries it needs; installed by OctoPrint-TSD")
# The native module is built for one CPython ABI (it does not use the
# limited API): the wheel says which.
ZIP_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry can hold


def source_date_epoch():
    return max(int(os.environ.get("SOURCE_DATE_EPOCH", ZIP_EPOCH)), ZIP_EPOCH)


def project_table():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def normalized(name):
    """A distribution name as wheel and sdist file names spell it."""
    return name.replace("-", "_").lower()


def staged_files(package_dir):
    """(path in the archive, path on disk) of everything under package_dir."""
    found = []
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".pyc"):
                continue
            path = os.path.join(root, name)
            found.append((PACKAGE + "/" + os.path.relpath(path, package_dir).replace(os.sep, "/"), path))
    return sorted(found)


def metadata(name, version, summary, requires_python, requires, description=None):
    project = project_table()
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + name,
        "Version: " + version,
        "Summary: " + summary,
        "License: " + project["license"]["text"],
        "Requires-Python: " + requires_python,
    ]
    lines += ["Author: " + author["name"] for author in project.get("authors", [])]
    lines += ["Classifier: " + classifier for classifier in project.get("classifiers", [])]
    lines += ["Requires-Dist: " + requirement for requirement in requires]
    text = "\n".join(lines) + "\n"
    if description is not None:
        text += "Description-Content-Type: text/markdown\n\n" + description
    return text.encode("utf-8")


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "{},sha256={},{}".format(name, digest, len(data))


def write_zip(path, entries):
    """entries: (name, bytes, executable), written in the given order."""
    stamp = time.gmtime(source_date_epoch())[:6]
    with zipfile.ZipFile(path + ".part", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, executable in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = ((0o100755 if executable else 0o100644) << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    os.replace(path + ".part", path)


def write_wheel(out_dir, name, version, tag, purelib, files, meta, entry_points=None):
    """files: (name in the wheel, path on disk). Returns the wheel's path."""
    dist_info = "{}-{}.dist-info".format(normalized(name), version)
    entries = []
    for arcname, path in files:
        with open(path, "rb") as f:
            entries.append((arcname, f.read(), os.access(path, os.X_OK)))
    wheel_text = "Wheel-Version: 1.0\nGenerator: tools/wheels/pack.py\nRoot-Is-Purelib: {}\nTag: {}\n".format(
        "true" if purelib else "false", tag)
    entries.append((dist_info + "/METADATA", meta, False))
    entries.append((dist_info + "/WHEEL", wheel_text.encode(), False))
    if entry_points:
        entries.append((dist_info + "/entry_points.txt", entry_points.encode(), False))
    record = [record_line(arcname, data) for arcname, data, _ in entries]
    record.append(dist_info + "/RECORD,,")
    entries.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode(), False))
    path = os.path.join(out_dir, "{}-{}-{}.whl".format(normalized(name), version, tag))
    write_zip(path, entries)
    return path


def entry_points_text():
    groups = project_table().get("entry-points", {})
    text = ""
    for group, entries in sorted(groups.items()):
        text += "[{}]\n".format(group)
        text += "".join("{} = {}\n".format(k, v) for k, v in sorted(entries.items()))
    return text


def toml_value(value):
    # JSON strings and arrays of strings are valid TOML.
    return json.dumps(value)


def sdist_pyproject(version, requires):
    """The sdist's pyproject.toml: the checkout's [project] table, built by
    setuptools (no compiler: the package is pure Python)."""
    project = project_table()
    lines = [
        "[build-system]",
        'requires = ["setuptools>=68"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        "name = " + toml_value(PLUGIN_NAME),
        "version = " + toml_value(version),
        "description = " + toml_value(project["description"]),
        'readme = "README.md"',
        "license = {text = " + toml_value(project["license"]["text"]) + "}",
        "requires-python = " + toml_value(project["requires-python"]),
        "authors = [" + ", ".join("{name = " + toml_value(a["name"]) + "}"
                                 for a in project.get("authors", [])) + "]",
        "classifiers = " + toml_value(project.get("classifiers", [])),
        "dependencies = " + toml_value(requires),
        "",
    ]
    for group, entries in sorted(project.get("entry-points", {}).items()):
        lines.append("[project.entry-points.{}]".format(toml_value(group)))
        lines += ["{} = {}".format(k, toml_value(v)) for k, v in sorted(entries.items())]
        lines.append("")
    lines += [
        "[tool.setuptools]",
        "packages = [" + toml_value(PACKAGE) + "]",
        "",
        "[tool.setuptools.package-data]",
        PACKAGE + ' = ["**/*"]',
        "",
    ]
    return "\n".join(lines).encode()


def write_sdist(out_dir, version, files, meta, requires):
    base = "{}-{}".format(normalized(PLUGIN_NAME), version)
    entries = [(base + "/" + arcname, path) for arcname, path in files]
    with open(os.path.join(REPO, "README.md"), "rb") as f:
        readme = f.read()
    with open(os.path.join(REPO, "LICENSE"), "rb") as f:
        license_text = f.read()
    generated = [
        (base + "/PKG-INFO", meta),
        (base + "/pyproject.toml", sdist_pyproject(version, requires)),
        (base + "/README.md", readme),
        (base + "/LICENSE", license_text),
    ]
    mtime = source_date_epoch()
    path = os.path.join(out_dir, base + ".tar.gz")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        items = [(n, d, False) for n, d in generated]
        for name, disk in entries:
            with open(disk, "rb") as f:
                items.append((name, f.read(), os.access(disk, os.X_OK)))
        for name, data, executable in sorted(items):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o755 if executable else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    with open(path + ".part", "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
            gz.write(raw.getvalue())
    os.replace(path + ".part", path)
    return path


def find_package_dir(stage):
    """The octoprint_tsd folder that meson installed under the staging root."""
    found = [root for root, dirs, _ in os.walk(stage) if os.path.basename(root) == PACKAGE]
    if len(found) != 1:
        sys.exit("expected one {} folder under {}, found {}".format(PACKAGE, stage, found))
    return found[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["native", "plugin"])
    ap.add_argument("--stage", required=True, help="the meson install --destdir of this part")
    ap.add_argument("--version", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", help="native: the wheel tag, e.g. cp311-cp311-linux_x86_64")
    ap.add_argument("--requires-python", help="native: e.g. >=3.11,<3.12")
    args = ap.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    files = staged_files(find_package_dir(args.stage))
    if args.kind == "native":
        meta = metadata(NATIVE_NAME, args.version, NATIVE_SUMMARY, args.requires_python, [])
        print(write_wheel(args.out, NATIVE_NAME, args.version, args.tag, False, files, meta))
        return 0
    project = project_table()
    requires = ["{}=={}".format(NATIVE_NAME, args.version)]
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    meta = metadata(PLUGIN_NAME, args.version, project["description"],
                    project["requires-python"], requires, readme)
    print(write_wheel(args.out, PLUGIN_NAME, args.version, "py3-none-any", True, files, meta,
                      entry_points_text()))
    print(write_sdist(args.out, args.version, files, meta, requires))
    return 0


if __name__ == "__main__":
    sys.exit(main())
