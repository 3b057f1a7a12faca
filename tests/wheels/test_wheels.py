# SPDX-License-Identifier: AGPL-3.0-or-later
"""The wheels of ``make wheels`` (dist/) installed the way users install the
plugin, on a machine that has no compiler (docs/packaging.md):

A fresh Debian bookworm minbase chroot of the architecture with only
python3, python3-venv and ca-certificates, and OctoPrint installed in a
virtualenv from a local index that stands in for PyPI (OctoPrint's wheels
are downloaded once into build/test-wheels/cache). OctoPrint's plugin manager
installs the plugin from its archive URL (its REST API, so its own pip call),
OctoPrint restarts, and the test checks that the plugin loaded, that the
native module and the helper run, that the shipped model scores a frame, and
that the plugin links to the reference server. Then OctoPrint's software
update check finds a newer version on the stand-in index and installs it.

Needs root (chroot, mount). TSD_WHEEL_ARCHES (default x86_64) chooses the
architectures; figures are printed as ``bench NAME VALUE`` lines.
"""

import contextlib
import glob
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools", "wheels"))

import helper_models as hm  # noqa: E402
import pack  # noqa: E402
from local_index import LocalIndex  # noqa: E402
from obico_refserver import ReferenceServer, make_pki  # noqa: E402
from octoprint_instance import OctoPrintInstance  # noqa: E402
from tsd_testing import ADMIN, wait_for  # noqa: E402

DIST = os.path.join(REPO, "dist")
WORK = os.path.join(REPO, "build", "test-wheels")
CACHE = os.path.join(WORK, "cache")
OCTOPRINT = "OctoPrint==1.11.8"
SETUPTOOLS = "setuptools>=68"  # the plugin's sdist builds with it (tools/wheels/pack.py)
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}
NATIVE_ARCH = os.uname().machine
VENV = "/opt/octoprint"
ARCHES = os.environ.get("TSD_WHEEL_ARCHES", "x86_64").split()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot and mount)")


def bench(name, value, unit, emulated=False):
    print("bench {} {:.3f} {}{}".format(name, value, unit, " (emulated)" if emulated else ""), flush=True)


def run(*cmd, timeout=1800, **kwargs):
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **kwargs)
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        raise AssertionError("{} failed ({}):\n{}".format(" ".join(cmd), done.returncode, output[-4000:]))
    return output


def the_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        for line in f:
            if line.strip().startswith("version:"):
                return line.split("'")[1]
    raise AssertionError("no version in meson.build")


def cached_rootfs(arch):
    """A tarball of debootstrap --variant=minbase with python3, python3-venv
    and ca-certificates; made once."""
    tarball = os.path.join(CACHE, "rootfs-{}.tar".format(arch))
    if not os.path.exists(tarball):
        tmp = tarball + ".d"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(CACHE, exist_ok=True)
        run("debootstrap", "--variant=minbase", "--arch=" + DEBIAN_ARCH[arch],
            "--include=python3,python3-venv,ca-certificates", "bookworm", tmp,
            "http://deb.debian.org/debian")
        run("chroot", tmp, "apt-get", "clean")
        run("tar", "-C", tmp, "-cf", tarball + ".part", ".")
        os.replace(tarball + ".part", tarball)
        shutil.rmtree(tmp)
    return tarball


def cached_octoprint_wheels(arch):
    """Folders of OctoPrint and its dependencies as wheels, and setuptools:
    what PyPI serves (piwheels on a Pi), downloaded once. The few that PyPI
    has only as sdists are built once: here for this machine's architecture,
    in a throwaway chroot with a compiler for another."""
    folder = os.path.join(CACHE, "pypi-" + NATIVE_ARCH)
    stamp = os.path.join(folder, ".complete")
    if not os.path.exists(stamp):
        os.makedirs(folder, exist_ok=True)
        run(sys.executable, "-m", "pip", "wheel", "-q", OCTOPRINT, SETUPTOOLS, "-w", folder)
        open(stamp, "w").close()
    if arch == NATIVE_ARCH:
        return [folder]
    # The pure wheels serve every architecture; the others again for arch.
    foreign = os.path.join(CACHE, "pypi-" + arch)
    stamp = os.path.join(foreign, ".complete")
    if not os.path.exists(stamp):
        os.makedirs(foreign, exist_ok=True)
        to_build = []
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".whl") or name.endswith("-none-any.whl"):
                continue
            requirement = "{}=={}".format(*name.split("-")[:2])
            # Every glibc a bookworm system satisfies (pip does not widen
            # a --platform by itself).
            platforms = [arg for minor in range(17, 37) for arg in ("--platform", "manylinux_2_{}_{}".format(minor, arch))]
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                 *platforms, "--python-version", "3.11",
                 "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
                 "-d", foreign, requirement],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
            if done.returncode != 0:
                to_build.append(requirement)
        if to_build:
            build_sdists_in_chroot(arch, to_build, foreign)
        open(stamp, "w").close()
    return [folder, foreign]


def build_sdists_in_chroot(arch, requirements, out):
    """Wheels of sdist-only packages for arch, built with gcc in a throwaway
    chroot (as piwheels builds them for a Pi); never the test's chroot."""
    with Chroot(arch, "builder") as builder:
        shutil.copy("/etc/resolv.conf", builder.path("/etc/resolv.conf"))
        # This machine's CA certificates (a proxy may stand between it and
        # PyPI), and pip told to use the system's store.
        for cert in glob.glob("/usr/local/share/ca-certificates/*.crt"):
            shutil.copy(cert, builder.path("/usr/local/share/ca-certificates/"))
        builder.run("update-ca-certificates")
        with open(builder.path("/etc/pip.conf"), "w") as f:
            f.write("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        builder.run("apt-get", "update", "-q")
        builder.run("apt-get", "install", "-y", "-q", "--no-install-recommends", "gcc", "libc6-dev",
                    "python3-dev", "libffi-dev")  # cffi's own sources need ffi.h
        builder.run("python3", "-m", "venv", "/build")
        builder.run("/build/bin/pip", "install", "-q", "wheel")  # for sdists without a pyproject.toml
        builder.run("/build/bin/pip", "wheel", "-q", "--no-deps", "-w", "/wheels", *requirements)
        for name in os.listdir(builder.path("/wheels")):
            shutil.copy(builder.path("/wheels/" + name), out)


def mounted_under(root):
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(root + "/")]


class Chroot:
    """A fresh root file system of the cached tarball, /proc mounted. Host
    paths under the root work inside it too (a link from the root's own path
    to /), so OctoPrintInstance can be given host paths."""

    def __init__(self, arch, name="root"):
        self.arch = arch
        self.root = os.path.join(WORK, arch, name)

    def __enter__(self):
        self._remove()
        os.makedirs(self.root)
        run("tar", "-C", self.root, "-xf", cached_rootfs(self.arch))
        inside = self.root + self.root
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        os.symlink("/", inside)
        # What every installed system has and debootstrap leaves out; the
        # reference server's certificate is for localhost.
        with open(os.path.join(self.root, "etc", "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
        run("mount", "-t", "proc", "proc", os.path.join(self.root, "proc"))
        return self

    def __exit__(self, *exc):
        for mount in reversed(mounted_under(self.root)):
            subprocess.run(["umount", "-l", mount], check=False)

    def _remove(self):
        for mount in reversed(mounted_under(self.root)):
            run("umount", "-l", mount)
        if mounted_under(self.root):
            raise AssertionError("still mounted under {}".format(self.root))
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, inside):
        return self.root + inside

    def run(self, *cmd, timeout=1800):
        return run("chroot", self.root, "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8",
                   "PATH={}/bin:/usr/sbin:/usr/bin:/sbin:/bin".format(VENV), *cmd, timeout=timeout)

    def python_wrapper(self):
        """A host executable that runs the venv's python inside the chroot."""
        wrapper = os.path.join(WORK, self.arch, "chroot-python")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec chroot {} /usr/bin/env -i HOME=/root LANG=C.UTF-8 "
                    "PATH={}/bin:/usr/bin:/bin {}/bin/python \"$@\"\n".format(self.root, VENV, VENV))
        os.chmod(wrapper, 0o755)
        return wrapper


def next_release(wheel, version, out_dir):
    """The same wheel as the next version (a stand-in release for the update
    check): new dist-info name, Version and pinned requirements, new RECORD."""
    with zipfile.ZipFile(wheel) as archive:
        entries = [(info.filename, archive.read(info), bool((info.external_attr >> 16) & stat.S_IXUSR))
                   for info in archive.infolist() if not info.is_dir()]
    old_info = next(n for n, _, _ in entries if n.endswith(".dist-info/METADATA")).split("/")[0]
    old_version = old_info[: -len(".dist-info")].rsplit("-", 1)[1]
    new_info = old_info.replace(old_version, version)
    renamed = []
    for name, data, executable in entries:
        if name.startswith(old_info + "/RECORD"):
            continue
        if name == old_info + "/METADATA":
            data = data.decode().replace("Version: " + old_version, "Version: " + version).replace(
                "==" + old_version, "==" + version).encode()
        renamed.append((name.replace(old_info, new_info), data, executable))
    record = [pack.record_line(name, data) for name, data, _ in renamed] + [new_info + "/RECORD,,"]
    renamed.append((new_info + "/RECORD", ("\n".join(record) + "\n").encode(), False))
    path = os.path.join(out_dir, os.path.basename(wheel).replace("-" + old_version + "-", "-" + version + "-"))
    pack.write_zip(path, renamed)
    return path


def a_frame_jpeg(path):
    """A webcam-like frame: a bed, a part on it, some texture."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (40, 40, 48))
    draw = ImageDraw.Draw(image)
    draw.rectangle((80, 300, 560, 460), fill=(150, 150, 150))
    draw.rectangle((260, 220, 380, 330), fill=(210, 60, 40))
    for i in range(0, 640, 16):
        draw.line((i, 0, 640 - i, 480), fill=(60 + i % 90, 70, 80))
    image.save(path, "JPEG", quality=90)


def check_bench(arch, emulated, scored):
    """tsd-helper --bench of the installed helper on the same frame with the
    shipped model: the per-frame figure, also where serving cannot run."""
    run = scored["bench"]
    assert run["returncode"] == 0 and "summary" in run, run
    reply, summary = run["reply"], run["summary"]
    assert reply["w"] == 640 and reply["h"] == 480, reply
    assert summary["frames"] == run["repeat"] and 0 < summary["median_ms"] <= summary["max_ms"], summary
    assert summary["top_score"] > 0, summary  # the shipped model scored it
    if "refused" in scored:
        # No seccomp here: --bench says so and runs on its local file only.
        assert "running UNSANDBOXED" in run["stderr"], run["stderr"]
        assert summary["sandbox"] == "none (cannot be locked here)", summary
    else:
        assert summary["sandbox"] == "seccomp", summary
        assert hm.reply_without_timing(reply) == hm.reply_without_timing(scored["reply"]), (reply, scored["reply"])
    label = "emulated " + arch if emulated else arch
    print("helper per-frame ({}): {:.0f} ms (median of {} frames, max {:.0f} ms; model loaded in {:.0f} ms; "
          "top score {:.3f}, {} detections; sandbox {})".format(
              label, summary["median_ms"], summary["frames"], summary["max_ms"], summary["start_ms"],
              summary["top_score"], summary["detections"], summary["sandbox"]), flush=True)
    bench("helper_bench_start_s_" + arch, summary["start_ms"] / 1000, "s", emulated)
    bench("helper_bench_frame_median_ms_" + arch, summary["median_ms"], "ms", emulated)
    bench("helper_bench_frame_max_ms_" + arch, summary["max_ms"], "ms", emulated)


@pytest.mark.parametrize("arch", ARCHES)
def test_the_plugin_manager_installs_the_wheels_on_a_machine_without_a_compiler(arch, tmp_path):
    version = the_version()
    emulated = arch != NATIVE_ARCH
    native_wheels = glob.glob(os.path.join(DIST, "octoprint_tsd_native-{}-*_{}.whl".format(version, arch)))
    sdist = os.path.join(DIST, "octoprint_tsd-{}.tar.gz".format(version))
    plugin_wheel = os.path.join(DIST, "octoprint_tsd-{}-py3-none-any.whl".format(version))
    assert len(native_wheels) == 1 and os.path.exists(sdist) and os.path.exists(plugin_wheel), \
        "run make wheels first (dist/ has {})".format(os.listdir(DIST) if os.path.isdir(DIST) else "nothing")
    bench("wheel_size_mb_" + arch, os.path.getsize(native_wheels[0]) / 1e6, "MB")

    # The release of this checkout, and a next one for the update check.
    releases = tmp_path / "releases"
    releases.mkdir()
    for path in native_wheels + [sdist, plugin_wheel]:
        shutil.copy(path, releases)
    updates = tmp_path / "updates"
    updates.mkdir()
    next_version = version + ".post1"

    index = LocalIndex([str(releases), str(updates)] + cached_octoprint_wheels(arch)).start()
    pki = make_pki(str(tmp_path / "pki"))
    server = ReferenceServer([], pki=pki).start()
    try:
        with Chroot(arch) as chroot:
            packages = chroot.run("dpkg-query", "-W", "-f", "${Package}\\n").split()
            assert not [p for p in packages if p.endswith("-dev") or p in ("gcc", "g++", "cpp", "clang")], packages
            for compiler in ("cc", "gcc", "c++", "g++", "clang"):
                assert not os.path.exists(chroot.path("/usr/bin/" + compiler)), compiler
            with open(chroot.path("/etc/pip.conf"), "w") as f:
                f.write("[global]\nindex-url = {}\ndisable-pip-version-check = true\n".format(index.simple_url))
            started = time.monotonic()
            chroot.run("python3", "-m", "venv", VENV)
            chroot.run(VENV + "/bin/pip", "install", "-q", OCTOPRINT)
            bench("octoprint_install_s_" + arch, time.monotonic() - started, "s", emulated)

            ca_file = chroot.path("/etc/tsd-test-ca.pem")
            shutil.copy(pki["ca"], ca_file)
            instance = OctoPrintInstance(chroot.path("/root/octoprint"), python=chroot.python_wrapper())
            instance.prepare(users=[ADMIN + (True,)],
                             extra_plugin_settings={"tsd": {"ca_file": ca_file,
                                                            "server_url": server.endpoint_prefix}})
            with contextlib.ExitStack() as stack:
                instance.start(timeout=600 if emulated else 120)
                stack.callback(instance.stop)
                api_key = instance.create_api_key(*ADMIN)
                headers = {"X-Api-Key": api_key}

                # The plugin manager's install from URL: it downloads the
                # archive and runs its pip caller on it.
                started = time.monotonic()
                response = requests.post(instance.url + "/api/plugin/pluginmanager", headers=headers,
                                         json={"command": "install", "url": index.file_url(os.path.basename(sdist))},
                                         timeout=1800)
                assert response.status_code == 200, response.text
                console = os.path.join(instance.basedir, "logs", "plugin_pluginmanager_console.log")

                def install_finished():
                    if not os.path.exists(console):
                        return None
                    with open(console, encoding="utf-8", errors="replace") as f:
                        text = f.read()
                    return text if ("Successfully installed" in text or "ERROR" in text) else None

                log = wait_for(install_finished, 1800 if emulated else 300, interval=1)
                assert log and "Successfully installed" in log, log
                assert "octoprint-tsd-native-{}".format(version).lower() in log.lower(), log
                bench("plugin_install_s_" + arch, time.monotonic() - started, "s", emulated)
                instance.stop()
                instance.start(timeout=600 if emulated else 120)

                status = requests.get(instance.url + "/api/plugin/tsd", headers=headers, timeout=30)
                assert status.status_code == 200, status.text
                body = status.json()
                assert body["native"]["loaded"] is True, body["native"]
                assert body["native"]["version"] == version

                # The plugin links to the reference server and connects.
                code = server.issue_code(user="alice", printer_name="Pi")
                linked = requests.post(instance.url + "/api/plugin/tsd", headers=headers,
                                       json={"command": "link", "code": code}, timeout=60)
                assert linked.status_code == 200, linked.text
                (token,) = [t for t in server.tokens if server.owner_of(t) == "alice"]
                assert wait_for(lambda: server.live(token) == 1, 60)
                assert wait_for(lambda: requests.get(instance.url + "/api/plugin/tsd", headers=headers,
                                                     timeout=30).json()["remote"]["state"] == "connected", 60)
            # The installed native module and helper score a frame with the
            # shipped model (OctoPrint stopped: the figures are the helper's).
            a_frame_jpeg(chroot.path("/tmp/frame.jpg"))
            shutil.copy(os.path.join(HERE, "in_chroot.py"), chroot.path("/tmp/in_chroot.py"))
            scored = json.loads(chroot.run(VENV + "/bin/python", "/tmp/in_chroot.py", "frame", "/tmp/frame.jpg")
                                .strip().splitlines()[-1])
            bench("helper_version_s_" + arch, scored["helper_version_s"], "s", emulated)
            if emulated and "refused" in scored:
                # qemu-user has no seccomp: the helper refuses to serve
                # without its sandbox, as it must (docs/packaging.md).
                assert "cannot lock the sandbox" in scored["refused"] + str(scored["stderr"]), scored
            else:
                assert scored["reply"]["w"] == 640 and scored["reply"]["h"] == 480, scored
                assert isinstance(scored["reply"]["detections"], list) and scored["p"] >= 0
                bench("helper_start_s_" + arch, scored["helper_start_s"], "s", emulated)
                bench("helper_frame_ms_" + arch, scored["per_frame_s"] * 1000, "ms", emulated)
            check_bench(arch, emulated, scored)

            # The software update: the check finds the next version on the
            # stand-in index and OctoPrint's pip updater installs it, with
            # the native wheel of the same version.
            for path in native_wheels + [plugin_wheel]:
                next_release(path, next_version, str(updates))
            updated = json.loads(chroot.run(VENV + "/bin/python", "/tmp/in_chroot.py", "update",
                                            index.simple_url).strip().splitlines()[-1])
            assert updated["before"] == version and updated["is_current"] is False, updated
            assert updated["information"]["remote"]["value"] == next_version, updated
            versions = chroot.run(VENV + "/bin/python", "-c",
                                  "import importlib.metadata as m; print(m.version('OctoPrint-TSD'), "
                                  "m.version('OctoPrint-TSD-native'))").split()
            assert versions == [next_version, next_version], (versions, updated)
    finally:
        server.stop()
        index.stop()
