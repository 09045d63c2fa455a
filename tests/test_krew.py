"""Krew: the manifest passes krew-index's checks, the archives hold the right wheels, and an install works.

The manifest checks mirror sigs.k8s.io/krew (cited per rule below):
  internal/index/validation/validate.go   ValidatePlugin, validatePlatform, validateFiles, validateSelector
  cmd/validate-krew-manifest/main.go      file name = plugin name, every platform matches a supported
                                          <os,arch>, no <os,arch> matched twice, install each platform,
                                          a LICENSE file is among the installed files, line lengths
  internal/installation/install.go, move.go, platform.go, internal/download/downloader.go
                                          what `kubectl krew install --manifest=M --archive=A` does

The install test builds the linux/amd64 archive (wheels cached in dist/krew/cache/; the first run downloads
them from PyPI), installs it as krew would into a temporary KREW_ROOT, and runs `kubectl svcnet …` through
/usr/bin/kubectl's plugin discovery with a python3 that has none of the project's dependencies.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_krew  # noqa: E402

from kubectl_svcnet import __version__  # noqa: E402

MANIFEST = ROOT / "krew" / "svcnet.yaml"
KUBECTL = "/usr/bin/kubectl"

# ------------------------------------------------------------------------------------------------ krew's rules

# pkg/constants/constants.go
CURRENT_API_VERSION = "krew.googlecontainertools.github.com/v1alpha2"
PLUGIN_KIND = "Plugin"
MANIFEST_EXTENSION = ".yaml"
# validate.go: safePluginRegexp, sha256Pattern, windowsForbidden
SAFE_PLUGIN_NAME = re.compile(r"^[\w-]+$")
SHA256 = re.compile(r"^[a-f0-9]{64}$")
WINDOWS_FORBIDDEN = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
# k8s.io/apimachinery/pkg/util/version ParseSemantic (via internal/installation/semver.Parse, which also
# demands the leading "v"): three numeric components without leading zeros, optional -pre and +build.
_NUM = r"(0|[1-9][0-9]*)"
SEMVER = re.compile(
    rf"^v{_NUM}\.{_NUM}\.{_NUM}(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
# main.go allPlatforms(): every <os,arch> krew supports.
ALL_PLATFORMS = [("windows", "386"), ("windows", "amd64"), ("windows", "arm64"), ("linux", "386"), ("linux", "amd64"),
                 ("linux", "arm"), ("linux", "arm64"), ("linux", "ppc64le"), ("darwin", "386"), ("darwin", "amd64"),
                 ("darwin", "arm64")]  # fmt: skip
# main.go licenseFiles
LICENSE_FILES = {"license", "license.txt", "license.md", "licenses", "licenses.txt", "licenses.md", "copying",
                 "copying.txt"}  # fmt: skip


class Invalid(Exception):
    pass


def selector_matches(sel: dict, os_: str, arch: str) -> bool:
    """metav1.LabelSelectorAsSelector(sel).Matches({"os": os_, "arch": arch})."""
    labels = {"os": os_, "arch": arch}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in sel.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op in ("In", "NotIn") and not values:
            raise Invalid(f"matchExpressions {key}: {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise Invalid(f"matchExpressions {key}: {op} takes no values")
        if op == "In":
            ok = labels.get(key) in values
        elif op == "NotIn":
            ok = labels.get(key) not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise Invalid(f"matchExpressions {key}: unknown operator {op!r}")
        if not ok:
            return False
    return True


def validate_selector(sel) -> None:
    """validate.go validateSelector."""
    if sel is None:
        raise Invalid("nil selector is not supported")
    if sel.get("matchLabels") is None and not sel.get("matchExpressions"):
        raise Invalid("empty selector is not supported")
    keys = list(sel.get("matchLabels") or {}) + [e.get("key") for e in sel.get("matchExpressions") or []]
    for key in keys:
        if key not in ("os", "arch"):
            raise Invalid(f"key {key!r} not supported")
    if sel.get("matchLabels") is not None and len(sel["matchLabels"]) == 0:
        raise Invalid("`matchLabels` specified but empty")
    if sel.get("matchExpressions") is not None and len(sel["matchExpressions"]) == 0:
        raise Invalid("`matchExpressions` specified but empty")


def validate_platform(p: dict) -> None:
    """validate.go validatePlatform + validateFiles."""
    if not p.get("uri"):
        raise Invalid("`uri` has to be set")
    if not p.get("sha256"):
        raise Invalid("`sha256` sum has to be set")
    if not SHA256.match(str(p["sha256"])):
        raise Invalid(f"`sha256` value {p['sha256']} is not valid, must match pattern {SHA256.pattern}")
    if not p.get("bin"):
        raise Invalid("`bin` has to be set")
    files = p.get("files")
    if files is not None:
        if len(files) == 0:
            raise Invalid("`files` has to be unspecified or non-empty")
        for op in files:
            if not op.get("from"):
                raise Invalid("`from` field has to be set")
            if not op.get("to"):
                raise Invalid("`to` field has to be set")
    validate_selector(p.get("selector"))


def validate_plugin(name: str, p: dict) -> None:
    """validate.go ValidatePlugin."""
    if p.get("apiVersion") != CURRENT_API_VERSION:
        raise Invalid(f"plugin manifest has apiVersion={p.get('apiVersion')!r}, not supported")
    if p.get("kind") != PLUGIN_KIND:
        raise Invalid(f"plugin manifest has kind={p.get('kind')!r}, but only {PLUGIN_KIND!r} is supported")
    if not SAFE_PLUGIN_NAME.match(name) or name.upper() in WINDOWS_FORBIDDEN:
        raise Invalid(f"the plugin name {name!r} is not allowed")
    if (p.get("metadata") or {}).get("name") != name:
        raise Invalid(f"plugin should be named {name!r}, not {(p.get('metadata') or {}).get('name')!r}")
    spec = p.get("spec") or {}
    if not spec.get("shortDescription"):
        raise Invalid("should have a short description")
    if re.search(r"[\r\n]", spec["shortDescription"]):
        raise Invalid("should not have line breaks in short description")
    if not spec.get("platforms"):
        raise Invalid("should have a platform specified")
    if not spec.get("version"):
        raise Invalid("should have a version specified")
    if not SEMVER.match(str(spec["version"])):
        raise Invalid(f"failed to parse plugin version {spec['version']!r}")
    for pl in spec["platforms"]:
        validate_platform(pl)


def long_lines(s: str, max_len: int) -> List[str]:
    """main.go validateLineLength (krew warns; we keep the manifest clean of the warnings)."""
    return [line for line in (s or "").split("\n") if len(line) > max_len and " " in line.strip()]


def validate_manifest_file(path: Path) -> dict:
    """validate-krew-manifest main.go validateManifestFile, up to (not including) the install step."""
    if path.suffix != MANIFEST_EXTENSION:
        raise Invalid(f"expected manifest extension {MANIFEST_EXTENSION!r} but found {path.suffix!r}")
    p = yaml.safe_load(path.read_text(encoding="utf-8"))
    validate_plugin(path.stem, p)
    spec = p["spec"]
    for field, max_len in (("description", 80), ("shortDescription", 70), ("caveats", 80)):
        if long_lines(spec.get(field, ""), max_len):
            raise Invalid(f"line length in `{field}` exceeds {max_len} characters")
    for i, pl in enumerate(spec["platforms"]):
        if not any(selector_matches(pl["selector"], o, a) for o, a in ALL_PLATFORMS):
            raise Invalid(f"spec.platform[{i}]'s selector doesn't match any supported platforms")
    for o, a in ALL_PLATFORMS:  # isOverlappingPlatformSelectors
        idx = [i for i, pl in enumerate(spec["platforms"]) if selector_matches(pl["selector"], o, a)]
        if len(idx) > 1:
            raise Invalid(f"multiple spec.platforms (at indexes {idx}) have overlapping selectors that select {o}/{a}")
    return p


# ------------------------------------------------------------------------------------------------ krew install


def _suspicious(name: str) -> None:
    # downloader.go suspiciousPath
    if ".." in name or name.startswith(("/", "\\")):
        raise Invalid(f"refusing to unpack archive with suspicious entry {name!r}")


def extract_archive(data: bytes, dest: Path) -> None:
    """downloader.go extractArchive: zip or tar.gz by content; tar: only directories and regular files."""
    if data[:2] == b"\x1f\x8b":
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar.getmembers():
                if m.name == "pax_global_header":
                    continue
                _suspicious(m.name)
                path = dest / m.name
                if m.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                elif m.isreg():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(tar.extractfile(m).read())
                    path.chmod(m.mode & 0o7777)
                else:
                    raise Invalid(f"unable to handle file type {m.type!r} for {m.name!r} in tar")
    elif data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                _suspicious(info.filename)
                path = dest / info.filename
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(z.read(info))
                path.chmod((info.external_attr >> 16) & 0o7777 or 0o644)
    else:
        raise Invalid("mime type of archive file is not a supported archive format")


def _sub_path(base: Path, p: Path) -> bool:
    try:
        p.resolve().relative_to(base.resolve())
        return True
    except ValueError:
        return False


def move_files(src: Path, dst: Path, fo: dict) -> None:
    """move.go findMoveTargets/moveFiles: a direct move if `from` names a file, else a glob."""
    to = fo["to"]
    if os.path.normpath(to) != to:
        raise Invalid(f"the provided path is not clean, {to!r} should be {os.path.normpath(to)!r}")
    direct = src / fo["from"]
    if direct.exists():
        target = dst / (direct.name if to == "." else to)
        moves = [(direct, target)]
    else:
        matches = sorted(glob.glob(str(src / fo["from"])))
        if not matches:
            raise Invalid(f"no files in the plugin archive matched the glob pattern={fo['from']}")
        moves = [(Path(m), dst / to / Path(m).name) for m in matches]
    for f, t in moves:
        if not (_sub_path(src, f) and _sub_path(dst, t)):
            raise Invalid(f"can't move, move target {f} -> {t} is out of bounds")
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f), str(t))


def krew_install(manifest: Path, archive: Path, krew_root: Path, os_: str, arch: str) -> Path:
    """`KREW_ROOT=krew_root KREW_OS=os_ KREW_ARCH=arch kubectl krew install --manifest=… --archive=…`.

    Returns the link in krew_root/bin; raises Invalid where krew would fail."""
    p = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    name = p["metadata"]["name"]
    validate_plugin(name, p)  # indexscanner.ReadPluginFromFile validates on load
    platform = next((pl for pl in p["spec"]["platforms"] if selector_matches(pl["selector"], os_, arch)), None)
    if platform is None:  # platform.go GetMatchingPlatform: the first match wins
        raise Invalid(f"plugin {name!r} does not offer installation for this platform")
    data = archive.read_bytes()
    if hashlib.sha256(data).hexdigest() != platform["sha256"]:  # verifier.go
        raise Invalid("checksum does not match")
    staging = krew_root / "tmp" / "krew-downloads"
    staging.mkdir(parents=True)
    extract_archive(data, staging)
    files = platform.get("files") or [{"from": "*", "to": "."}]  # install.go applyDefaults
    moving = krew_root / "tmp" / "krew-temp-move"
    moving.mkdir(parents=True)
    for fo in files:
        move_files(staging, moving, fo)
    install_dir = krew_root / "store" / name / p["spec"]["version"]
    install_dir.parent.mkdir(parents=True)
    moving.rename(install_dir)
    binary = install_dir / platform["bin"]
    if not _sub_path(install_dir, binary):
        raise Invalid(f"the fullPath {binary} does not extend the sub-fullPath {install_dir}")
    if not binary.exists():
        raise Invalid(f"can't create symbolic link, source binary ({binary}) cannot be found in extracted archive")
    bin_dir = krew_root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / ("kubectl-" + name.replace("-", "_"))  # install.go pluginNameToBin
    link.symlink_to(binary)
    receipts = krew_root / "receipts"
    receipts.mkdir(exist_ok=True)
    (receipts / f"{name}.yaml").write_text(manifest.read_text(encoding="utf-8"), encoding="utf-8")
    installed = [f.name for f in install_dir.rglob("*") if f.is_file()]
    if not any(f.lower() in LICENSE_FILES for f in installed):  # main.go validateLicenseFileExists
        raise Invalid(f"could not find license file among {installed}")
    shutil.rmtree(krew_root / "tmp")
    return link


# ------------------------------------------------------------------------------------------------ fixtures

ALL = [t.key for t in build_krew.TARGETS]


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> Path:
    """A snapshot of kubectl_svcnet/, so that every build in this session packs the same sources."""
    dest = tmp_path_factory.mktemp("src") / "kubectl_svcnet"
    shutil.copytree(ROOT / "kubectl_svcnet", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="session")
def built(tmp_path_factory, package) -> Tuple[Path, Dict[str, Path]]:
    """All four archives, built with the cached wheels, and a copy of the manifest with their sha256."""
    out = tmp_path_factory.mktemp("krew-dist")
    manifest = out / "svcnet.yaml"
    shutil.copyfile(MANIFEST, manifest)
    archives = build_krew.build(ALL, out_dir=out, manifest=manifest, package=package)
    return manifest, archives


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory) -> Path:
    manifest, archives = built
    root = tmp_path_factory.mktemp("krew-root")
    return krew_install(manifest, archives["linux/amd64"], root, "linux", "amd64")


def bare_venv(python: str, where: Path) -> Path:
    """A venv with no pip and no site-packages but its own (empty) one; returns its bin directory."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(where)], check=True)
    return where / "bin"


def clean_env(path: List[Path], home: Path) -> Dict[str, str]:
    home.mkdir(exist_ok=True)
    return {"PATH": os.pathsep.join([*map(str, path), "/usr/bin", "/bin"]), "HOME": str(home),
            "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8", "KUBECONFIG": str(home / "no-kubeconfig")}  # fmt: skip


# ------------------------------------------------------------------------------------------------ the manifest


def test_manifest_passes_krew_validation():
    p = validate_manifest_file(MANIFEST)
    spec = p["spec"]
    assert spec["version"] == "v" + __version__
    keys = set()
    for pl in spec["platforms"]:
        sel = pl["selector"]["matchLabels"]
        keys.add(f"{sel['os']}/{sel['arch']}")
        assert pl["uri"].endswith(f"/releases/download/v{__version__}/kubectl-svcnet_{sel['os']}_{sel['arch']}.tar.gz")
        assert pl["bin"] == "kubectl-svcnet"
        assert {"from": "LICENSE", "to": "."} in pl["files"]
    assert keys == set(ALL)
    assert "python3" in spec["caveats"] and "3.9" in spec["caveats"]


OS_IN_LINUX_DARWIN = {"matchExpressions": [{"key": "os", "operator": "In", "values": ["linux", "darwin"]}]}


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda p: p["metadata"].update(name="other"), "should be named"),
        (lambda p: p["spec"].update(version=__version__), "version"),
        (lambda p: p["spec"].update(version="v1.02.0"), "version"),
        (lambda p: p["spec"]["platforms"][0].update(sha256="A" * 64), "sha256"),
        (lambda p: p["spec"]["platforms"][0].pop("bin"), "`bin`"),
        (lambda p: p["spec"]["platforms"][0].update(files=[]), "non-empty"),
        (lambda p: p["spec"]["platforms"][0]["selector"]["matchLabels"].update(distro="debian"), "not supported"),
        (lambda p: p["spec"]["platforms"][1].update(selector={"matchLabels": {"os": "linux"}}), "overlapping"),
        (lambda p: p["spec"]["platforms"][0].update(selector=OS_IN_LINUX_DARWIN), "overlapping"),
        (lambda p: p["spec"]["platforms"][0].update(selector={"matchLabels": {"os": "plan9"}}), "doesn't match"),
        (lambda p: p["spec"].update(shortDescription="two\nlines"), "line breaks"),
        (lambda p: p.update(apiVersion="krew.googlecontainertools.github.com/v1alpha1"), "apiVersion"),
    ],
)
def test_validation_rejects_what_krew_rejects(tmp_path, mutate, error):
    p = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    mutate(p)
    bad = tmp_path / "svcnet.yaml"
    bad.write_text(yaml.safe_dump(p), encoding="utf-8")
    with pytest.raises(Invalid, match=error):
        validate_manifest_file(bad)


def test_manifest_name_must_match_file(tmp_path):
    other = tmp_path / "svc-net.yaml"
    shutil.copyfile(MANIFEST, other)
    with pytest.raises(Invalid, match="should be named"):
        validate_manifest_file(other)


def test_build_rewrites_only_the_sha256_lines(built):
    manifest, archives = built
    before = MANIFEST.read_text(encoding="utf-8").splitlines()
    after = manifest.read_text(encoding="utf-8").splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert all(a.strip().startswith("sha256:") and b.strip().startswith("sha256:") for a, b in changed)
    p = validate_manifest_file(manifest)
    for pl in p["spec"]["platforms"]:
        sel = pl["selector"]["matchLabels"]
        assert pl["sha256"] == build_krew.sha256_file(archives[f"{sel['os']}/{sel['arch']}"])


def test_rebuild_is_byte_identical(built, package, tmp_path):
    _, archives = built
    again = build_krew.build(["linux/amd64"], out_dir=tmp_path, manifest=None, package=package)
    assert again["linux/amd64"].read_bytes() == archives["linux/amd64"].read_bytes()


def test_every_platform_installs_like_krew(built, tmp_path):
    """validate-krew-manifest's install step for each platform: checksum, extract, files, bin, LICENSE."""
    manifest, archives = built
    for key, archive in archives.items():
        os_, arch = key.split("/")
        link = krew_install(manifest, archive, tmp_path / os_ / arch, os_, arch)
        assert link.name == "kubectl-svcnet" and os.access(link, os.X_OK)
        assert sorted(f.name for f in link.resolve().parent.iterdir()) == ["LICENSE", "kubectl-svcnet"]
    with pytest.raises(Invalid, match="checksum"):
        krew_install(manifest, archives["linux/arm64"], tmp_path / "wrong", "linux", "amd64")
    with pytest.raises(Invalid, match="does not offer"):
        krew_install(manifest, archives["linux/amd64"], tmp_path / "win", "windows", "amd64")


# ------------------------------------------------------------------------------------------------ the archives

# What a compiled module must be, per platform: ELF e_machine, or Mach-O CPU type (thin or in a fat binary).
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
MACHO_CPU = {"amd64": 0x01000007, "arm64": 0x0100000C}
WHEEL_PLATFORM = {"linux/amd64": r"manylinux.*_x86_64", "linux/arm64": r"manylinux.*_aarch64",
                  "darwin/amd64": r"macosx_\d+_\d+_(x86_64|universal2|intel)",
                  "darwin/arm64": r"macosx_\d+_\d+_(arm64|universal2)"}  # fmt: skip
SO_SUFFIX = {"linux/amd64": "x86_64-linux-gnu.so", "linux/arm64": "aarch64-linux-gnu.so",
             "darwin/amd64": "darwin.so", "darwin/arm64": "darwin.so"}  # fmt: skip


def binary_arches(data: bytes) -> Tuple[str, set]:
    """("elf"|"macho", {arch, …}) of a shared object."""
    if data[:4] == b"\x7fELF":
        machine = int.from_bytes(data[18:20], "little")
        return "elf", {a for a, m in ELF_MACHINE.items() if m == machine}
    if data[:4] == b"\xcf\xfa\xed\xfe":  # MH_MAGIC_64, little-endian
        cpu = int.from_bytes(data[4:8], "little")
        return "macho", {a for a, c in MACHO_CPU.items() if c == cpu}
    if data[:4] == b"\xca\xfe\xba\xbe":  # FAT_MAGIC, big-endian header
        n = int.from_bytes(data[4:8], "big")
        cpus = {int.from_bytes(data[8 + 20 * i : 12 + 20 * i], "big") for i in range(n)}
        return "macho", {a for a, c in MACHO_CPU.items() if c in cpus}
    return "unknown", set()


def zipapp_of(archive: Path) -> Tuple[tarfile.TarFile, zipfile.ZipFile]:
    tar = tarfile.open(archive, "r:gz")
    app = zipfile.ZipFile(io.BytesIO(tar.extractfile("kubectl-svcnet").read()))
    return tar, app


@pytest.mark.parametrize("key", ALL)
def test_archive_carries_wheels_for_its_platform(built, key):
    _, archives = built
    tar, app = zipapp_of(archives[key])
    members = tar.getmembers()
    assert sorted(m.name for m in members) == ["LICENSE", "kubectl-svcnet"]
    assert all(m.isreg() and m.uid == 0 and m.mtime == build_krew.SOURCE_DATE_EPOCH for m in members)
    assert tar.getmember("kubectl-svcnet").mode == 0o755
    assert tar.extractfile("LICENSE").read() == (ROOT / "LICENSE").read_bytes()

    names = app.namelist()
    assert names == sorted(names)
    sp = "site-packages/"
    assert f"{sp}kubectl_svcnet/cli.py" in names and f"{sp}kubectl_svcnet-{__version__}.dist-info/METADATA" in names
    # The compiled dependencies, by the tags in their dist-info/WHEEL.
    tags: Dict[str, List[str]] = {}
    for n in names:
        m = re.match(rf"^{sp}([^/]+)-[^-/]+\.dist-info/WHEEL$", n)
        if m:
            tags[m.group(1).lower()] = re.findall(r"^Tag: (\S+)$", app.read(n).decode(), re.M)
    for project in ("cryptography", "bcrypt", "pynacl", "cffi", "pyyaml"):
        assert project in tags, f"{project} missing from {key}"
        assert any(re.search(WHEEL_PLATFORM[key], t) for t in tags[project]), (project, tags[project])
    # cffi's extension module once per CPython, for this platform.
    for py in build_krew.PYTHONS:
        cp = "cpython-3" + py.split(".")[1]
        assert f"{sp}_cffi_backend.{cp}-{SO_SUFFIX[key]}" in names, (key, py)
        assert any(re.match(rf"^cp3{py.split('.')[1]}-cp3", t) for t in tags["cffi"])
    # Every shared object in the zipapp is built for this OS and CPU: no wheel for another platform slipped in.
    os_, arch = key.split("/")
    sos = [n for n in names if n.endswith(".so") or ".so." in n.rsplit("/", 1)[-1] or n.endswith(".dylib")]
    assert len(sos) >= 3 * len(build_krew.PYTHONS) + 3  # cffi, pyyaml, charset-normalizer per CPython; abi3 ones
    for n in sos:
        fmt, arches = binary_arches(app.read(n))
        assert fmt == {"linux": "elf", "darwin": "macho"}[os_], n
        assert arch in arches, (n, arches)


# ------------------------------------------------------------------------------------------------ a real install


def test_kubectl_runs_the_installed_plugin(installed, tmp_path):
    """kubectl → PATH → krew's bin link → zipapp → a python3 with no site-packages of ours."""
    venv_bin = bare_venv(sys.executable, tmp_path / "venv")
    env = clean_env([installed.parent, venv_bin], tmp_path / "home")
    cwd = tmp_path / "work"  # not the repository: nothing of ours importable from the current directory
    cwd.mkdir()
    (cwd / "examples").symlink_to(ROOT / "examples")

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=120, **kw)

    probe = run("python3", "-c", "import sys; print(sys.prefix)")
    assert probe.stdout.strip() == str(tmp_path / "venv")
    for module in ("click", "kubectl_svcnet", "kubernetes", "yaml"):
        r = run("python3", "-c", f"import {module}")
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, module
    assert run("sh", "-c", "command -v kubectl-svcnet").stdout.strip() == str(installed)

    listed = run(KUBECTL, "plugin", "list")
    assert str(installed) in listed.stdout, listed.stdout + listed.stderr

    version = run(KUBECTL, "svcnet", "version")
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout

    trace = run(KUBECTL, "svcnet", "trace", "db-service", "--snapshot", "examples/seed-cluster")
    assert trace.returncode == 0, trace.stderr
    assert "db-service" in trace.stdout
    # The same answer as the development install gives.
    dev = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "trace", "db-service", "--snapshot",
                          "examples/seed-cluster"], cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert trace.stdout == dev.stdout
    assert (tmp_path / "home" / ".shiv").is_dir()  # where the zipapp unpacked itself, as the caveats say


@functools.cache
def _cpythons() -> Dict[str, str]:
    """CPython interpreters on this machine, by "3.X", from PATH and pyenv; at least the running one."""
    found = {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    candidates = [shutil.which(f"python{py}") for py in build_krew.PYTHONS]
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", "3.*", "bin", "python3")))
    for exe in filter(None, candidates):
        try:
            r = subprocess.run([exe, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        except OSError:
            continue
        v = r.stdout.strip()
        if r.returncode == 0 and v in build_krew.PYTHONS:
            found.setdefault(v, exe)
    return found


CHECK = """
import bcrypt, nacl.bindings, paramiko, yaml, kubernetes.client, charset_normalizer
import cryptography.hazmat.bindings._rust, _cffi_backend
assert yaml.__with_libyaml__, "pyyaml's compiled _yaml was not loaded"
print("ok")
"""


@pytest.mark.parametrize("py", build_krew.PYTHONS)
def test_zipapp_imports_its_compiled_wheels_on_each_cpython(installed, tmp_path, tmp_path_factory, py):
    exe = _cpythons().get(py)
    if exe is None:
        pytest.skip(f"no CPython {py} on this machine")
    venv_bin = bare_venv(exe, tmp_path / "venv")
    # One SHIV_ROOT for all interpreters: the zipapp unpacks once (the unpacked tree serves every CPython).
    env = dict(clean_env([venv_bin], tmp_path / "home"), SHIV_ROOT=str(tmp_path_factory.getbasetemp() / "shiv"))
    app = str(installed.resolve())
    r = subprocess.run([str(venv_bin / "python3"), app, "version"], env=env, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0 and __version__ in r.stdout, r.stderr
    r = subprocess.run([str(venv_bin / "python3"), app, "-c", CHECK], env=dict(env, SHIV_INTERPRETER="1"),
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_lock_pins_one_version_per_project():
    lock = build_krew.read_lock()
    for key in ALL:
        versions: Dict[str, set] = {}
        pythons = set()
        for e in lock:
            if e.platform == key:
                name, ver = build_krew.wheel_name_version(e.filename)
                versions.setdefault(name, set()).add(ver)
                pythons.add(e.python)
                assert fnmatch.fnmatch(e.filename, "*.whl") and SHA256.match(e.sha256)
        assert {n for n, v in versions.items() if len(v) > 1} == set(), key
        assert pythons <= set(build_krew.PYTHONS)
        assert {"cryptography", "bcrypt", "pynacl", "paramiko", "kubernetes", "click", "tabulate"} <= set(versions)


def test_manifest_update_is_line_preserving(tmp_path):
    m = tmp_path / "svcnet.yaml"
    shutil.copyfile(MANIFEST, m)
    text = build_krew.update_manifest(m, "9.8.7", {"darwin/arm64": "a" * 64})
    p = yaml.safe_load(text)
    assert p["spec"]["version"] == "v9.8.7"
    for pl in p["spec"]["platforms"]:
        assert "/download/v9.8.7/" in pl["uri"]
        sel = pl["selector"]["matchLabels"]
        if (sel["os"], sel["arch"]) == ("darwin", "arm64"):
            assert pl["sha256"] == "a" * 64
    assert len(text.splitlines()) == len(MANIFEST.read_text(encoding="utf-8").splitlines())
    with pytest.raises(build_krew.BuildError):
        build_krew.update_manifest(m, "9.8.7", {"windows/amd64": "a" * 64})
