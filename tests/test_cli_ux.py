"""The CLI as a kubectl user meets it: help with examples, one-line errors that say what and where,
stdout that holds only the answer, and tables that read the same way everywhere."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import Run, svcnet

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"
OVERALL = ROOT / "tests" / "fixtures" / "kube-proxy" / "iptables" / "modern-overall" / "dump.txt"
NODE01 = SEED / "nodes" / "node01" / "iptables-nft-save.txt"
NODE02 = SEED / "nodes" / "node02" / "iptables-nft-save.txt"
COMMANDS = ["map", "trace", "nodes", "ranges", "snapshot", "version"]


def one_error(r: Run, start: str) -> str:
    """The run's error: one `error:` line (maybe a `hint:` after it), no traceback."""
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.err
    assert lines[0].startswith(start), r.err
    assert "Traceback" not in r.err
    return lines[0]


# -- help ------------------------------------------------------------------------------------------------
def test_no_arguments_prints_the_help_as_kubectl_does(capsys):
    r = svcnet(capsys)
    assert r.code == 0 and r.err == ""
    assert r.out.startswith("Usage: kubectl svcnet ")
    assert "error" not in r.out
    listed = re.findall(r"^  (\w+)\s{2,}\S", r.out.split("Commands:")[1], re.M)
    assert listed == COMMANDS  # the README's order, not click's alphabetical one
    assert "..." not in r.out.split("Commands:")[1]  # no one-line summary cut short
    assert "Examples:" in r.out and 'Use "kubectl svcnet COMMAND --help"' in r.out
    assert svcnet(capsys, "--help").out == r.out


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "version"])
def test_each_command_help_has_examples_of_itself(capsys, command):
    r = svcnet(capsys, command, "--help")
    assert r.code == 0 and r.err == ""
    examples = r.out.split("Examples:\n")[1].split("\n\n")[0].splitlines()
    runs = [ln.strip() for ln in examples if not ln.strip().startswith("#")]
    assert runs and all(f"kubectl svcnet {command}" in ln for ln in runs[:1]), examples
    assert all(ln.strip().startswith(("#", "kubectl svcnet", "ssh ")) for ln in examples)
    # Examples come before the options, and the shared options are in sections.
    assert r.out.index("Examples:") < r.out.index("Output:")
    assert "-o, --output [table|wide|json|yaml]" in r.out or command == "snapshot"


def test_help_sections_and_what_each_command_leaves_out(capsys):
    out = svcnet(capsys, "map", "--help").out
    for section in ("Options:", "Input (default: the live cluster):", "Cluster:", "Nodes:", "SSH (--via ssh):",
                    "Debug pod (--via pod):", "Output:"):  # fmt: skip
        assert f"\n{section}\n" in out, section
    own = out.split("\nOptions:\n")[1].split("\n\n")[0]
    assert "--namespace" in own and "--all-namespaces" in own and "--ssh-user" not in own
    # ranges reads only the API: no node, SSH or pod options in its help (and no --from-file, which it refuses).
    out = svcnet(capsys, "ranges", "--help").out
    for opt in ("--ssh-user", "--node ", "--via", "--image", "--from-file", "--parallel"):
        assert opt not in out, opt
    assert "--snapshot DIR" in out and "--kubeconfig" in out
    # snapshot prints no table and reads no dumps.
    out = svcnet(capsys, "snapshot", "--help").out
    options = [ln.split()[0] for ln in out.split("\nOptions:\n")[1].splitlines() if ln.startswith("  -")]
    for opt in ("-o,", "--no-headers", "--from-file", "--snapshot"):
        assert opt not in options, opt
    assert "--via" in out and "--ssh-user" in out


def test_trace_help_names_the_namespace_form(capsys):
    out = svcnet(capsys, "trace", "--help").out
    assert out.startswith("Usage: kubectl svcnet trace [OPTIONS] [NAMESPACE/]NAME | ADDRESS[:PORT]\n")


# -- --from-file: what and where -------------------------------------------------------------------------
def test_a_directory_as_a_file_says_so_and_points_at_snapshot(capsys):
    r = svcnet(capsys, "map", "--from-file", str(SEED))
    assert r.code == 2 and r.out == ""
    assert one_error(r, "error: ") == f"error: --from-file {SEED}: is a directory, not a dump file"
    assert f"hint: a snapshot directory is read with --snapshot {SEED}" in r.err


def test_a_missing_file_is_a_usage_error(capsys):
    r = svcnet(capsys, "map", "--from-file", "n1=/nonexistent/dump.txt")
    assert r.code == 2 and r.out == ""
    one_error(r, "error: no such file: /nonexistent/dump.txt")


def test_same_file_name_in_two_directories_is_not_silently_one_node(capsys):
    """node01/iptables-nft-save.txt and node02/iptables-nft-save.txt used to be one node, 'iptables-nft-save'."""
    r = svcnet(capsys, "map", "--from-file", str(NODE01), "--from-file", str(NODE02))
    assert r.code == 2 and r.out == ""
    one_error(r, f"error: --from-file {NODE01} and {NODE02} would both be node iptables-nft-save")
    assert f"--from-file node01={NODE01} --from-file node02={NODE02}" in r.err
    # Named, they are two nodes; the same file twice, or node.v4/node.v6, stay as they were.
    r = svcnet(capsys, "nodes", "--from-file", f"node01={NODE01}", "--from-file", f"node02={NODE02}", "-o", "json")
    assert r.code == 0 and [n["name"] for n in json.loads(r.out)["items"]] == ["node01", "node02"]
    r = svcnet(capsys, "nodes", "--from-file", str(NODE01), "--from-file", str(NODE01), "-o", "json")
    assert r.code == 0 and [n["name"] for n in json.loads(r.out)["items"]] == ["iptables-nft-save"]


def test_stdin_is_read_once(capsys):
    r = svcnet(capsys, "map", "--from-file", "a=-", "--from-file", "b=-", stdin=OVERALL.read_text())
    assert r.code == 2 and r.out == ""
    one_error(r, "error: --from-file -: stdin can be read only once")
    r = svcnet(capsys, "map", "--from-file", "a=-", "-o", "json", stdin=OVERALL.read_text())
    assert r.code == 0 and json.loads(r.out)["nodes"][0]["name"] == "a"


def test_an_empty_node_name_is_a_usage_error(capsys, tmp_path):
    r = svcnet(capsys, "map", "--from-file", f"={OVERALL}")
    assert r.code == 2
    one_error(r, f"error: --from-file ={OVERALL}: the node name before '=' is empty")


def test_an_empty_file_says_it_is_empty(capsys, tmp_path):
    """What `iptables-save > f` leaves when it is not run as root: the node's error says so."""
    empty = tmp_path / "node1.txt"
    empty.write_text("")
    r = svcnet(capsys, "map", "--from-file", str(empty), "--from-file", f"n2={OVERALL}", "-o", "json")
    assert r.code == 4
    one_error(
        r,
        "error: node node1: not a kube-proxy dump: it is empty"
        " (iptables-save prints nothing to stdout when not run as root)",
    )
    doc = json.loads(r.out)  # the other node still answers
    assert {n["name"]: bool(n["error"]) for n in doc["nodes"]} == {"node1": True, "n2": False}


def test_a_compressed_dump_names_node_file_and_what_to_do(capsys, tmp_path):
    gz = tmp_path / "dump.txt.gz"
    gz.write_bytes(gzip.compress(OVERALL.read_bytes()))
    r = svcnet(capsys, "map", "--from-file", f"n1={gz}")
    assert r.code == 4 and r.out == ""
    assert one_error(r, "error: ") == f"error: node n1: not text (invalid UTF-8) ({gz}:1)"
    assert f"hint: the file is gzip-compressed: decompress it first (zcat {gz})" in r.err
    binary = tmp_path / "blob"
    binary.write_bytes(b"\x00\x01\xff\xfe")
    r = svcnet(capsys, "map", "--from-file", str(binary))
    assert r.code == 4
    assert one_error(r, "error: ") == f"error: node blob: not text (invalid UTF-8) ({binary}:1)"
    assert "hint:" not in r.err


def test_from_file_and_snapshot_together(capsys):
    r = svcnet(capsys, "map", "--from-file", str(OVERALL), "--snapshot", str(SEED))
    assert r.code == 2 and r.out == ""
    one_error(r, "error: use either --from-file or --snapshot, not both")


# -- --snapshot: what and where --------------------------------------------------------------------------
@pytest.fixture
def snap(tmp_path) -> Path:
    d = tmp_path / "snap"
    shutil.copytree(SEED, d)
    return d


def test_snapshot_files_that_hold_no_objects_are_a_warning(capsys, snap):
    (snap / "services.json").write_text("")
    (snap / "notes.yaml").write_text("just some text\n")
    r = svcnet(capsys, "map", "--snapshot", str(snap), "-o", "json")
    assert r.code == 0
    assert f"warning: {snap / 'services.json'}: is empty; not read" in r.err
    assert f"warning: {snap / 'notes.yaml'}: holds no Kubernetes objects (no kind); not read" in r.err
    json.loads(r.out)
    # An empty List is a snapshot of nothing, not a mistake.
    (snap / "services.json").write_text('{"kind": "List", "apiVersion": "v1", "items": []}')
    (snap / "notes.yaml").unlink()
    assert svcnet(capsys, "nodes", "--snapshot", str(snap)).err == ""


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("services.json", '{"kind": "List", "items": [', "error: invalid JSON: Expecting value ("),
        ("extra.yaml", "kind: List\nitems:\n  - a: [\n", "error: invalid YAML: "),
    ],
)
def test_snapshot_with_broken_objects_names_file_and_line(capsys, snap, name, content, message):
    (snap / name).write_text(content)
    for command in ("map", "nodes", "ranges"):
        r = svcnet(capsys, command, "--snapshot", str(snap))
        assert r.code == 4 and r.out == ""
        line = one_error(r, message)
        assert re.search(rf"\({re.escape(str(snap / name))}:\d+\)$", line), line


def test_snapshot_with_a_binary_dump_names_the_node(capsys, snap):
    dump = snap / "nodes" / "node01" / "iptables-nft-save.txt"
    dump.write_bytes(b"\x1f\x8b\x08\x00garbage")
    r = svcnet(capsys, "map", "--snapshot", str(snap))
    assert r.code == 4
    assert one_error(r, "error: ") == f"error: node node01: not text (invalid UTF-8) ({dump}:1)"
    assert "zcat" in r.err


def test_snapshot_that_is_not_a_directory(capsys, tmp_path):
    r = svcnet(capsys, "map", "--snapshot", str(OVERALL))
    assert r.code == 2
    one_error(r, f"error: no such snapshot directory: {OVERALL}")


# -- namespaces and names --------------------------------------------------------------------------------
def test_no_services_in_a_namespace_is_said_on_stderr_as_kubectl_does(capsys):
    r = svcnet(capsys, "map", "-n", "nope", "--snapshot", str(SEED))
    assert r.code == 0 and r.out == ""
    assert r.err == "No services found in namespace nope.\n"
    r = svcnet(capsys, "map", "-n", "nope", "--snapshot", str(SEED), "--no-headers")
    assert r.code == 0 and r.out == "" and r.err == "No services found in namespace nope.\n"
    r = svcnet(capsys, "map", "-n", "nope", "--snapshot", str(SEED), "-o", "json")
    assert r.code == 0 and json.loads(r.out)["services"] == [] and r.err == ""


def test_findings_without_rows_do_not_start_with_a_blank_line(capsys, tmp_path):
    p = tmp_path / "n1.txt"
    p.write_text("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")  # no kube-proxy rules
    r = svcnet(capsys, "map", "--from-file", str(p))
    assert r.code == 0
    assert r.out.startswith("FINDINGS\n"), r.out
    assert "No services found." in r.err


def test_trace_unknown_service_in_a_snapshot_names_the_snapshot(capsys):
    r = svcnet(capsys, "trace", "web", "-n", "nope", "--snapshot", str(SEED))
    assert r.code == 1 and r.out == ""
    assert one_error(r, "error: ") == f'error: service "web" not found in namespace "nope" ({SEED})'
    r = svcnet(capsys, "trace", "nope", *[a for i in range(6) for a in ("--from-file", f"n{i}={OVERALL}")])
    assert one_error(r, "error: ") == 'error: service "nope" not found in namespace "default" (6 nodes)'


def test_trace_namespace_slash_name(capsys):
    a = svcnet(capsys, "trace", "kube-system/kube-dns", "--snapshot", str(SEED), "-o", "json")
    b = svcnet(capsys, "trace", "kube-dns", "-n", "kube-system", "--snapshot", str(SEED), "-o", "json")
    assert a.code == 0 and a.out == b.out
    c = svcnet(capsys, "trace", "kube-system/kube-dns", "-n", "kube-system", "--snapshot", str(SEED), "-o", "json")
    assert c.code == 0 and c.out == a.out
    r = svcnet(capsys, "trace", "kube-system/kube-dns", "-n", "default", "--snapshot", str(SEED))
    assert r.code == 2 and r.out == ""
    one_error(r, "error: kube-system/kube-dns is in namespace kube-system, but -n says default")


@pytest.mark.parametrize("name", ["", " ", "/web", "default/", "a/b/c"])
def test_trace_invalid_names(capsys, name):
    r = svcnet(capsys, "trace", name, "--snapshot", str(SEED))
    assert r.code == 2 and r.out == ""
    one_error(r, f"error: invalid Service name {name!r}: give NAME, NAMESPACE/NAME, IP[:PORT] or DNS-NAME[:PORT]")


# -- options that do nothing here ------------------------------------------------------------------------
def test_live_options_with_offline_input_are_a_warning(capsys):
    r = svcnet(capsys, "map", "--snapshot", str(SEED), "--context", "prod", "--node", "node01", "-o", "json")
    assert r.code == 0 and json.loads(r.out)["kind"] == "ServiceMap"
    assert r.err == "warning: ignored: --context, --node (they are for reading a live cluster)\n"
    r = svcnet(capsys, "trace", "web", "--from-file", f"node01={NODE01}", "--sudo", "--via", "pod")
    assert r.code == 0
    assert "warning: ignored: --sudo, --via (they are for reading a live cluster)" in r.err
    r = svcnet(capsys, "ranges", "--snapshot", str(SEED), "--ssh-user", "admin")
    assert r.code == 0 and "warning: ignored: --ssh-user" in r.err
    # Defaults, and the output options, are not "given".
    r = svcnet(capsys, "nodes", "--snapshot", str(SEED), "-o", "wide", "--no-headers")
    assert r.code == 0 and r.err == ""


# -- stdout holds the answer only ------------------------------------------------------------------------
def test_trace_no_headers_keeps_stdout_to_the_rows(capsys):
    full = svcnet(capsys, "trace", "web-lb", "--snapshot", str(SEED))
    bare = svcnet(capsys, "trace", "web-lb", "--snapshot", str(SEED), "--no-headers")
    assert bare.code == 0
    rows = bare.out.splitlines()
    assert rows and all(ln.startswith("default/web-lb ") for ln in rows), bare.out
    assert len(rows) == len(full.out.split("\n\n")[0].splitlines()) - 1  # all the rows, only the header gone
    # The chain paths and the findings are still there, on stderr, as in the full output.
    assert "default/web-lb:http on node01:" in bare.err and "PREROUTING:80 -> KUBE-SERVICES" in bare.err
    assert "warning: externalTrafficPolicy Local" in bare.err
    after = [ln for ln in full.out.split("\n\n", 1)[1].splitlines() if ln and ln != "FINDINGS"]
    assert after == [ln for ln in bare.err.splitlines() if ln]


@pytest.mark.parametrize("command", [["map"], ["trace", "web-lb"], ["nodes"], ["ranges"]])
def test_no_headers_removes_only_the_header(capsys, command):
    full = svcnet(capsys, *command, "--snapshot", str(SEED))
    bare = svcnet(capsys, *command, "--snapshot", str(SEED), "--no-headers")
    table = full.out.split("\n\n")[0].splitlines()
    assert [ln.split() for ln in bare.out.splitlines()] == [ln.split() for ln in table[1:]]
    assert table[0].split()[0] in ("SERVICE", "NODE", "RANGE")


@pytest.mark.parametrize("command", [["map"], ["trace", "web-lb"], ["nodes"], ["ranges"], ["trace", "web", "--logs"]])
def test_json_and_yaml_are_the_same_document(capsys, command):
    yaml = pytest.importorskip("yaml")
    j = svcnet(capsys, *command, "--snapshot", str(SEED), "-o", "json")
    y = svcnet(capsys, *command, "--snapshot", str(SEED), "-o", "yaml")
    assert j.code == y.code == 0
    assert json.loads(j.out) == yaml.safe_load(y.out)
    assert not any(ln.startswith("error") for ln in j.err.splitlines())


@pytest.mark.parametrize("value", ["xml", "JSON", "name", ""])
def test_unknown_output_format_is_one_line(capsys, value):
    r = svcnet(capsys, "map", "--snapshot", str(SEED), "-o", value)
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and r.err.startswith("error: Invalid value for '-o' / '--output'")


def test_a_reader_that_stops_early_is_not_a_failure():
    """`kubectl svcnet map -o json | head -1`: exit 0 and nothing on stderr (click alone exits 1)."""
    p = subprocess.Popen([sys.executable, "-m", "kubectl_svcnet", "map", "--from-file", str(OVERALL),
                          *[a for i in range(8) for a in ("--from-file", f"n{i}={OVERALL}")], "-o", "yaml"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    assert p.stdout is not None and p.stderr is not None
    p.stdout.read(10)
    p.stdout.close()
    assert p.wait(timeout=60) == 0
    assert p.stderr.read() == b""


# -- tables read the same way everywhere -----------------------------------------------------------------
def test_trace_paths_say_who_as_the_table_does(capsys):
    r = svcnet(capsys, "trace", "web-lb", "--snapshot", str(SEED))
    notes = {
        w for ln in r.out.split("\n\n")[0].splitlines()[1:] for w in ("from pods/nodes", "from outside") if w in ln
    }
    assert notes == {"from pods/nodes", "from outside"}
    assert "  *:31380 (NodePort) from pods/nodes:\n" in r.out and "  *:31380 (NodePort) from outside:\n" in r.out
    assert "from cluster:" not in r.out and "from external:" not in r.out
    # -o wide says FROM cluster/external in its column, and so do its paths.
    r = svcnet(capsys, "trace", "web-lb", "--snapshot", str(SEED), "-o", "wide")
    assert "  *:31380 (NodePort) from cluster:\n" in r.out and "  *:31380 (NodePort) from external:\n" in r.out


def test_nodes_header_does_not_reuse_backend(capsys):
    """In map and trace BACKEND is a pod IP:port; the nodes table's iptables backend is IPTABLES."""
    header = svcnet(capsys, "nodes", "--snapshot", str(SEED)).out.splitlines()[0]
    assert header.split("  ")[0] == "NODE" and "IPTABLES" in header and "BACKEND" not in header


# -- live mode: what fails before any network ------------------------------------------------------------
def _no_cluster_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path)
    return env


def test_snapshot_into_a_file_fails_before_reading_the_cluster(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    r = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "snapshot", str(target)], capture_output=True,
                       text=True, cwd=ROOT, env=_no_cluster_env(tmp_path), timeout=60)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"error: snapshot {target}: exists and is not a directory\n"


def test_snapshot_refuses_dump_options(capsys, tmp_path):
    r = svcnet(capsys, "snapshot", str(tmp_path / "out"), "--snapshot", str(SEED))
    assert r.code == 2
    one_error(r, "error: snapshot reads a live cluster")


@pytest.mark.parametrize(
    "kubeconfig,args,start",
    [
        ("missing", [], "error: kubeconfig "),
        ("good", ["--context", "nope"], 'error: context "nope" not found in kubeconfig'),
        ("broken", [], "error: invalid kubeconfig"),
    ],
)
def test_kubeconfig_errors_are_one_line(tmp_path, kubeconfig, args, start):
    path = tmp_path / "kubeconfig"
    if kubeconfig == "good":
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n"
            "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
            "contexts: [{name: ctx, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: x}}]\n"
        )
    elif kubeconfig == "broken":
        path.write_text("not: [valid\n")
    for command in (["map"], ["trace", "web"], ["nodes"], ["ranges"]):
        argv = [sys.executable, "-m", "kubectl_svcnet", *command, "--kubeconfig", str(path), *args]
        r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=_no_cluster_env(tmp_path), timeout=60)
        assert r.returncode in (2, 4) and r.stdout == "", (command, r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("hint: ")]
        assert len(errors) == 1 and errors[0].startswith(start), (command, r.stderr)
        assert str(path) in errors[0]
