#!/usr/bin/env python3
"""Build the Krew archives of kubectl-svcnet and write their sha256 into krew/svcnet.yaml.

    make krew                                     # = python3 tools/build_krew.py
    python3 tools/build_krew.py --platform linux/amd64
    python3 tools/build_krew.py --relock          # re-resolve the pinned wheels (krew/wheels.lock)

One archive per platform, dist/krew/kubectl-svcnet_<os>_<arch>.tar.gz, holding two regular files:

    kubectl-svcnet   a shiv zipapp (#!/usr/bin/env python3): this package plus every dependency, with the
                     compiled wheels (cryptography, bcrypt, pynacl, cffi, pyyaml, charset-normalizer) built
                     for that platform and for each CPython in PYTHONS, so it runs on the user's python3
                     without a virtualenv. shiv unpacks it into ~/.shiv (or $SHIV_ROOT) on first run.
    LICENSE

The wheels come from PyPI through pip (`pip download --only-binary=:all: --platform … --python-version …
--implementation cp`) and are pinned, file by file with their sha256, in krew/wheels.lock; a build fetches
exactly those files (cached in dist/krew/cache/) and touches the network only for files not cached.
`pip download` evaluates environment markers (`python_version < "3.11"`, `sys_platform == …`) against the
interpreter running pip, not the target; --relock therefore runs pip with the target's marker environment
(see _PIP_SHIM), so e.g. typing_extensions, which cryptography needs below 3.11, is not lost.

Reproducibility: the tarball has sorted entries, mtime SOURCE_DATE_EPOCH, uid/gid 0, no user names,
a gzip header with mtime 0; the zipapp is rewritten with sorted entries, fixed timestamps and
normalised modes. Given the same wheels.lock, the same shiv version (its bootstrap code is inside the
zipapp) and the same zlib (deflate output), a rebuild is byte-identical, and the manifest's sha256
lines do not change. The version lives only in kubectl_svcnet/__init__.py; the manifest's
spec.version and release URLs are rewritten from it.
"""

from __future__ import annotations

import argparse
import configparser
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "kubectl_svcnet"
BIN = "kubectl-svcnet"
MANIFEST = ROOT / "krew" / "svcnet.yaml"
LOCK = ROOT / "krew" / "wheels.lock"
OUT = ROOT / "dist" / "krew"
CACHE = OUT / "cache"
ENTRY_POINT = "kubectl_svcnet.cli:main"
SHEBANG = "/usr/bin/env python3"
# 1980-01-01T00:00:00Z: the earliest time a zip entry can carry.
SOURCE_DATE_EPOCH = 315532800

# Every CPython the archives carry compiled wheels for; the manifest's caveats say the same range.
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
# cryptography's Requires-Python excludes 3.9.0 and 3.9.1; resolving for 3.9.0 would fall back to an old release.
FULL_VERSION = {"3.9": "3.9.2"}


@dataclass(frozen=True)
class Target:
    os: str
    arch: str
    pip_platforms: Tuple[str, ...]  # --platform values; pip adds the older manylinux/macOS tags itself
    machine: str  # platform.machine() there, for environment markers

    @property
    def key(self) -> str:
        return f"{self.os}/{self.arch}"

    @property
    def archive(self) -> str:
        return f"{BIN}_{self.os}_{self.arch}.tar.gz"

    def markers(self, python: str) -> Dict[str, str]:
        full = FULL_VERSION.get(python, python + ".0")
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": {"linux": "Linux", "darwin": "Darwin"}[self.os],
            "platform_version": "",
            "python_full_version": full,
            "python_version": python,
            "sys_platform": self.os,
        }

    def pip_args(self, python: str) -> List[str]:
        args = [
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            self.markers(python)["python_full_version"],
        ]
        for tag in self.pip_platforms:
            args += ["--platform", tag]
        return args


# glibc >= 2.17 (manylinux2014) on Linux; macOS >= 10.13 on Intel (cffi 2 has no older x86_64 wheels),
# macOS >= 11 on Apple silicon.
TARGETS: Tuple[Target, ...] = (
    Target("linux", "amd64", ("manylinux2014_x86_64", "manylinux_2_17_x86_64"), "x86_64"),
    Target("linux", "arm64", ("manylinux2014_aarch64", "manylinux_2_17_aarch64"), "aarch64"),
    Target("darwin", "amd64", ("macosx_10_13_x86_64",), "x86_64"),
    Target("darwin", "arm64", ("macosx_11_0_arm64",), "arm64"),
)
BY_KEY = {t.key: t for t in TARGETS}

# pip with the target's environment markers: packaging.markers.Marker.evaluate() calls the module-level
# default_environment(), so replacing it makes pip evaluate requirement markers as on the target.
_PIP_SHIM = """
import json, os, sys
import pip._vendor.packaging.markers as markers
target = json.loads(os.environ["BUILD_KREW_MARKERS"])
if not callable(getattr(markers, "default_environment", None)):
    sys.exit("build_krew: this pip has no packaging.markers.default_environment to retarget")
markers.default_environment = lambda: dict(target)
from pip._internal.cli.main import main
sys.exit(main())
"""


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"build_krew: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- inputs


def version() -> str:
    """kubectl_svcnet.__version__, read without importing the package."""
    text = (ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not m:
        raise BuildError("no __version__ in kubectl_svcnet/__init__.py")
    return m.group(1)


def requirements() -> List[str]:
    """install_requires from setup.cfg, the one list of runtime dependencies."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    reqs = [r.strip() for r in cfg.get("options", "install_requires").splitlines() if r.strip()]
    if not reqs:
        raise BuildError("setup.cfg has no install_requires")
    return reqs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_name_version(filename: str) -> Tuple[str, str]:
    name, ver = filename.split("-")[:2]
    return re.sub(r"[-_.]+", "_", name).lower(), ver


# ---------------------------------------------------------------------------------------------- the lock


@dataclass(frozen=True, order=True)
class Locked:
    platform: str  # "linux/amd64"
    python: str  # "3.9"
    filename: str
    sha256: str


def read_lock(path: Path = LOCK) -> List[Locked]:
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4 or not parts[3].startswith("sha256:"):
            raise BuildError(f"{path}:{n}: expected 'OS/ARCH PYTHON FILE sha256:HEX'")
        entries.append(Locked(parts[0], parts[1], parts[2], parts[3][len("sha256:") :]))
    return entries


def write_lock(entries: Iterable[Locked], path: Path = LOCK) -> None:
    lines = [
        "# Wheels in the Krew archives, per platform and CPython: written by `python3 tools/build_krew.py --relock`.",
        "# A build downloads exactly these files (pip download … NAME==VERSION) and checks their sha256.",
    ]
    order = sorted(set(entries), key=lambda e: (e.platform, tuple(map(int, e.python.split("."))), e.filename))
    lines += [f"{e.platform} {e.python} {e.filename} sha256:{e.sha256}" for e in order]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


_SAVED = re.compile(r"^\s*(?:Saved|File was already downloaded) (.+\.whl)\s*$", re.M)


def _pip_download(target: Target, python: str, dest: Path, args: Sequence[str]) -> List[str]:
    """Run `pip download` for the target; the wheel file names it saved or found."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", _PIP_SHIM, "download", "--disable-pip-version-check", "--no-input",
           "-d", str(dest), *target.pip_args(python), *args]  # fmt: skip
    env = dict(os.environ, BUILD_KREW_MARKERS=json.dumps(target.markers(python)))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        raise BuildError(f"pip download for {target.key} CPython {python} failed:\n{proc.stdout[-4000:]}")
    return sorted({os.path.basename(p) for p in _SAVED.findall(proc.stdout)})


def relock(targets: Sequence[Target], cache: Path = CACHE, path: Path = LOCK) -> List[Locked]:
    """Resolve install_requires for every target and CPython; pin the result in krew/wheels.lock.

    Each target is resolved for the oldest CPython first; its versions then constrain the others, so one
    site-packages can hold a single version of each project (plus one compiled build per CPython)."""
    reqs = requirements()
    kept = [e for e in (read_lock(path) if path.exists() else []) if e.platform not in {t.key for t in targets}]
    new: List[Locked] = []
    for target in targets:
        wheels = cache / target.os / target.arch
        pins: Optional[Path] = None
        with tempfile.TemporaryDirectory() as tmp:
            for python in PYTHONS:
                log(f"resolving {target.key} CPython {python}")
                extra = ["-c", str(pins)] if pins else []
                names = _pip_download(target, python, wheels, [*extra, *reqs])
                if not names:
                    raise BuildError(f"pip download for {target.key} CPython {python} reported no wheels")
                new += [Locked(target.key, python, n, sha256_file(wheels / n)) for n in names]
                if pins is None:
                    pins = Path(tmp) / "pins.txt"
                    pins.write_text("".join("{}=={}\n".format(*wheel_name_version(n)) for n in names), encoding="utf-8")
    new = drop_superseded_abi3(new)
    write_lock(kept + new, path)
    return sorted(kept + new)


def _abi3_python(filename: str) -> Optional[int]:
    """39 for 'cryptography-50.0.2-cp39-abi3-….whl', None unless the wheel is a CPython abi3 wheel."""
    m = re.match(r"^[^-]+-[^-]+-cp3(\d+)-abi3-", filename)
    return int(m.group(1)) if m else None


def drop_superseded_abi3(entries: Iterable[Locked]) -> List[Locked]:
    """Keep one abi3 build per project, version and platform: the one for the oldest CPython runs on all newer
    ones (cryptography ships cp39-abi3 and cp311-abi3 wheels with the same file names inside)."""
    entries = list(entries)
    oldest: Dict[Tuple[str, str, str], int] = {}
    for e in entries:
        py = _abi3_python(e.filename)
        if py is not None:
            key = (e.platform, *wheel_name_version(e.filename))
            oldest[key] = min(py, oldest.get(key, py))
    return [
        e
        for e in entries
        if _abi3_python(e.filename) is None
        or _abi3_python(e.filename) == oldest[(e.platform, *wheel_name_version(e.filename))]
    ]


def fetch(target: Target, lock: Sequence[Locked], cache: Path = CACHE) -> List[Path]:
    """The locked wheels of one target, from the cache or PyPI; each checked against its sha256."""
    wheels = cache / target.os / target.arch
    entries = [e for e in lock if e.platform == target.key]
    if not entries:
        raise BuildError(f"krew/wheels.lock has no wheels for {target.key}; run with --relock")
    missing: Dict[str, List[Locked]] = {}
    for e in entries:
        f = wheels / e.filename
        if not (f.is_file() and sha256_file(f) == e.sha256):
            missing.setdefault(e.python, []).append(e)
    for python, es in sorted(missing.items()):
        log(f"downloading {len(es)} wheel(s) for {target.key} CPython {python}")
        for e in es:
            (wheels / e.filename).unlink(missing_ok=True)
        _pip_download(
            target, python, wheels, ["--no-deps", *("{}=={}".format(*wheel_name_version(e.filename)) for e in es)]
        )
    paths = []
    for e in entries:
        f = wheels / e.filename
        if not f.is_file():
            raise BuildError(f"pip did not fetch {e.filename} for {target.key}; run with --relock")
        if sha256_file(f) != e.sha256:
            raise BuildError(f"{f}: sha256 differs from krew/wheels.lock")
        paths.append(f)
    return sorted(set(paths))


# ---------------------------------------------------------------------------------------------- site-packages


def _merge_wheel_metadata(old: bytes, new: bytes) -> bytes:
    """WHEEL files of one project built for several CPythons: keep the first, add the other Tag lines."""
    lines = old.decode().splitlines()
    for line in new.decode().splitlines():
        if line.startswith("Tag:") and line not in lines:
            lines.append(line)
    return ("\n".join(lines) + "\n").encode()


def _merge_record(old: bytes, new: bytes) -> bytes:
    rows = {tuple(r) for r in csv.reader(io.StringIO(old.decode())) if r}
    rows |= {tuple(r) for r in csv.reader(io.StringIO(new.decode())) if r}
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(sorted(rows))
    return out.getvalue().encode()


def install_wheels(wheels: Sequence[Path], site: Path) -> None:
    """Unpack wheels into one site-packages: purelib/platlib only (no scripts, headers, data).

    The same project may come once per CPython (cffi-2.0.0-cp39-…, cffi-2.0.0-cp310-…): the extension
    modules differ by file name (_cffi_backend.cpython-39-….so), everything else must be identical."""
    versions: Dict[str, str] = {}
    files: Dict[str, bytes] = {}
    for whl in sorted(wheels, key=lambda p: p.name):
        name, ver = wheel_name_version(whl.name)
        if versions.setdefault(name, ver) != ver:
            raise BuildError(f"two versions of {name} in one archive: {versions[name]} and {ver}; run with --relock")
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                parts = info.filename.split("/")
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                rel = "/".join(parts)
                data = z.read(info)
                if rel in files and files[rel] != data:
                    if rel.endswith(".dist-info/WHEEL"):
                        data = _merge_wheel_metadata(files[rel], data)
                    elif rel.endswith(".dist-info/RECORD"):
                        data = _merge_record(files[rel], data)
                    else:
                        raise BuildError(f"{whl.name}: {rel} differs from the copy installed by another wheel")
                files[rel] = data
    for rel, data in files.items():
        dest = site / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def install_project(site: Path, src: Path = ROOT / PACKAGE) -> None:
    """This package's sources (from src) and a minimal dist-info, as a wheel install would leave them."""
    ver = version()
    for f in sorted(src.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        dest = site / PACKAGE / f.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    info = site / f"{PACKAGE}-{ver}.dist-info"
    info.mkdir()
    meta = ["Metadata-Version: 2.1", f"Name: {BIN}", f"Version: {ver}", "Requires-Python: >=3.9", "License: Apache-2.0"]
    meta += [f"Requires-Dist: {r}" for r in requirements()]
    (info / "METADATA").write_text("\n".join(meta) + "\n", encoding="utf-8")
    (info / "top_level.txt").write_text(PACKAGE + "\n", encoding="utf-8")
    (info / "INSTALLER").write_text("build_krew\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- packing


def _normalise_zipapp(path: Path) -> None:
    """Rewrite shiv's (uncompressed) zip deflated, with sorted entries, fixed timestamps and 0644/0755 modes."""
    raw = path.read_bytes()
    shebang = raw[: raw.index(b"\n") + 1]
    if not shebang.startswith(b"#!"):
        raise BuildError(f"{path}: no shebang line")
    with zipfile.ZipFile(io.BytesIO(raw)) as zin:
        entries = [(i, zin.read(i)) for i in zin.infolist()]
    stamp = tuple(time.gmtime(SOURCE_DATE_EPOCH)[:6])
    out = io.BytesIO()
    out.write(shebang)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info, data in sorted(entries, key=lambda e: e[0].filename):
            zi = zipfile.ZipInfo(info.filename, date_time=stamp)  # type: ignore[arg-type]
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3  # Unix, so external_attr carries the mode
            mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
            zi.external_attr = (0o100000 | mode) << 16
            zout.writestr(zi, data)
    path.write_bytes(out.getvalue())
    path.chmod(0o755)


def make_zipapp(site: Path, out: Path) -> None:
    for p in site.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    cmd = [sys.executable, "-m", "shiv", "--site-packages", str(site), "-e", ENTRY_POINT, "-p", SHEBANG,
           "-o", str(out), "--reproducible", "--uncompressed"]  # fmt: skip
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        raise BuildError(f"shiv failed (is it installed? pip install -e '.[krew]'):\n{proc.stdout[-4000:]}")
    _normalise_zipapp(out)


def make_tarball(members: Sequence[Tuple[str, Path, int]], out: Path) -> None:
    """A .tar.gz of regular files only (krew extracts nothing else), sorted, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, path, mode in sorted(members):
            data = path.read_bytes()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, SOURCE_DATE_EPOCH
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            tar.addfile(ti, io.BytesIO(data))
    with open(out, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())


def build_platform(
    target: Target, lock: Sequence[Locked], out_dir: Path = OUT, cache: Path = CACHE, package: Path = ROOT / PACKAGE
) -> Path:
    wheels = fetch(target, lock, cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-krew-") as tmp:
        site = Path(tmp) / "site-packages"
        install_wheels(wheels, site)
        install_project(site, package)
        app = Path(tmp) / BIN
        make_zipapp(site, app)
        archive = out_dir / target.archive
        make_tarball([(BIN, app, 0o755), ("LICENSE", ROOT / "LICENSE", 0o644)], archive)
    log(f"{archive} sha256 {sha256_file(archive)}")
    return archive


# ---------------------------------------------------------------------------------------------- the manifest

_URI = re.compile(r"^(\s*uri:\s*\S*/releases/download/)v[^/\s]+(/" + re.escape(BIN) + r"_(\w+)_(\w+)\.tar\.gz)\s*$")
_SHA = re.compile(r"^(\s*sha256:\s*)\S*(\s*)$")
_VERSION = re.compile(r"^(  version:\s*)\S+(\s*)$")


def update_manifest(path: Path, ver: str, digests: Dict[str, str]) -> str:
    """Rewrite spec.version, the release URLs' version and the sha256 of the built platforms; nothing else.

    Each platform item's `uri:` must come before its `sha256:` (the uri names the os/arch)."""
    out, current, seen = [], None, set()
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        body = line.rstrip("\n")
        if re.match(r"^\s*-\s+selector:", body):
            current = None
        elif _VERSION.match(body):
            m = _VERSION.match(body)
            line = f"{m.group(1)}v{ver}{m.group(2)}\n"
        elif _URI.match(body):
            m = _URI.match(body)
            current = f"{m.group(3)}/{m.group(4)}"
            line = f"{m.group(1)}v{ver}{m.group(2)}\n"
        elif _SHA.match(body) and current in digests:
            m = _SHA.match(body)
            line = f"{m.group(1)}{digests[current]}{m.group(2)}\n"
            seen.add(current)
        out.append(line)
    if set(digests) - seen:
        raise BuildError(f"{path}: no `uri:` + `sha256:` for {sorted(set(digests) - seen)}")
    text = "".join(out)
    path.write_text(text, encoding="utf-8")
    return text


def build(
    platforms: Sequence[str],
    out_dir: Path = OUT,
    cache: Path = CACHE,
    manifest: Optional[Path] = MANIFEST,
    lock_path: Path = LOCK,
    package: Path = ROOT / PACKAGE,
) -> Dict[str, Path]:
    """Build the archives of the given platforms ("linux/amd64", …) and write their sha256 into manifest."""
    targets = [BY_KEY[p] for p in platforms]
    if not lock_path.exists():
        relock(TARGETS, cache, lock_path)
    lock = read_lock(lock_path)
    # zlib and the subprocesses release the GIL: the platforms build side by side.
    with ThreadPoolExecutor(max_workers=max(1, min(len(targets), os.cpu_count() or 1))) as pool:
        futures = {t.key: pool.submit(build_platform, t, lock, out_dir, cache, package) for t in targets}
        archives = {k: f.result() for k, f in futures.items()}
    if manifest is not None:
        update_manifest(manifest, version(), {k: sha256_file(a) for k, a in archives.items()})
    return archives


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platform", action="append", choices=sorted(BY_KEY), help="OS/ARCH to build (default: all)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the archives go (default: dist/krew)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="wheel cache (default: dist/krew/cache)")
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help="manifest to update (default: krew/svcnet.yaml)")
    ap.add_argument("--no-manifest", action="store_true", help="do not touch the manifest")
    ap.add_argument("--relock", action="store_true", help="re-resolve the dependencies into krew/wheels.lock first")
    args = ap.parse_args(argv)
    platforms = args.platform or [t.key for t in TARGETS]
    try:
        if args.relock:
            relock([BY_KEY[p] for p in platforms], args.cache)
        build(platforms, args.out, args.cache, None if args.no_manifest else args.manifest)
    except BuildError as e:
        print(f"build_krew: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
