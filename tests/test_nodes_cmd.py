"""`kubectl svcnet nodes`: kube-proxy's last sync (its /healthz, read on the node) and the rules-in-both-
backends warning, from the collector through node_rows to the table and JSON, and through snapshots.

No root: nodes are played by tests/test_nodecmds.py's FakeNode; the answers are kube-proxy's own format
(pkg/proxy/healthcheck/proxier_health.go: Go's time.Time.String(), 503 when unhealthy).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_svcnet.app import build_map, node_rows, write_snapshot
from kubectl_svcnet.collect import files, nodecmds
from kubectl_svcnet.collect.nodecmds import (
    ALL_COMMANDS,
    HEALTHZ,
    HEALTHZ_PYTHON,
    HEALTHZ_WGET,
    collect_node,
    parse_go_time,
    parse_healthz,
    split_healthz_output,
)
from kubectl_svcnet.collect.runner import quote_argv
from kubectl_svcnet.render import human_age, last_sync_text, render_nodes
from tests.test_nodecmds import EVERYTHING, NODE01, NODE02, FakeNode, _outputs, _unwrap, without_canary

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"

# What kube-proxy v1.29 answers: healthy (lastUpdated = currentTime), and stale for 5m2s (503).
HEALTHY = (
    '{"lastUpdated": "2026-03-01 10:00:00.5 +0000 UTC m=+3600.000000001",'
    '"currentTime": "2026-03-01 10:00:00.5 +0000 UTC m=+3600.000000001", "nodeEligible": true}'
)
STALE = (
    '{"lastUpdated": "2026-03-01 09:54:58.25 +0000 UTC m=+3295.75","currentTime": '
    '"2026-03-01 10:00:00.5 +0000 UTC m=+3598.000000001", "nodeEligible": true}'
)
NOT_ELIGIBLE = STALE.replace('"nodeEligible": true', '"nodeEligible": false')
OLD = '{"lastUpdated": "2021-06-01 12:00:00.123 +0200 CEST m=+1.0","currentTime": "2021-06-01 12:00:42 +0200 CEST"}'
NEVER = '{"lastUpdated": "0001-01-01 00:00:00 +0000 UTC","currentTime": "2026-03-01 10:00:00 +0000 UTC m=+5.1"}'


# ---------------------------------------------------------------------------------------------
# Age formatting (kubectl's ages).


@pytest.mark.parametrize(
    "seconds, text",
    [
        (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (12, "12s"), (119, "119s"), (120, "2m"), (302, "5m2s"),
        (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (2 * 3600 + 600 + 3600, "3h10m"),
        (8 * 3600, "8h"), (47 * 3600 + 59 * 60, "47h"), (48 * 3600, "2d"), (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"), (400 * 86400, "400d"), (2 * 365 * 86400, "2y"), (3 * 365 * 86400 + 5 * 86400, "3y5d"),
        (10 * 365 * 86400, "10y"),
    ],
)  # fmt: skip
def test_human_age(seconds: int, text: str) -> None:
    assert human_age(seconds) == text


def test_last_sync_text() -> None:
    unknown = {"lastSync": None, "healthy": None, "syncAgeSeconds": None, "nodeEligible": None}
    assert last_sync_text(unknown) == "-"
    assert last_sync_text({}) == "-"
    assert last_sync_text({**unknown, "lastSync": "2026-03-01T10:00:00Z", "healthy": True, "syncAgeSeconds": 0}) == (
        "0s ago"
    )
    assert last_sync_text({**unknown, "lastSync": "x", "healthy": False, "syncAgeSeconds": 302}) == "5m2s ago (stale)"
    assert last_sync_text({**unknown, "healthy": False, "syncAgeSeconds": 302, "nodeEligible": False}) == (
        "5m2s ago (not eligible)"
    )
    assert last_sync_text({**unknown, "healthy": False}) == "stale"  # 503 and never synced
    assert last_sync_text({**unknown, "lastSync": "2026-03-01T10:00:00Z"}) == "2026-03-01T10:00:00Z"


# ---------------------------------------------------------------------------------------------
# Parsing kube-proxy's answer.


def test_parse_go_time() -> None:
    t = parse_go_time("2026-03-01 09:54:58.25 +0000 UTC m=+3295.75")
    assert t is not None and t.isoformat() == "2026-03-01T09:54:58.250000+00:00"
    t = parse_go_time("2021-06-01 12:00:00.123456789 +0200 CEST")
    assert t is not None and t.utcoffset().total_seconds() == 7200 and t.microsecond == 123456
    t = parse_go_time("2021-06-01 12:00:00 -0530 -0530")  # a zone without an abbreviation
    assert t is not None and t.utcoffset().total_seconds() == -(5 * 3600 + 1800)
    assert parse_go_time("2026-03-01T10:00:00Z").isoformat() == "2026-03-01T10:00:00+00:00"  # RFC 3339 too
    assert parse_go_time("2026-03-01T10:00:00.5+01:00").utcoffset().total_seconds() == 3600
    assert parse_go_time("0001-01-01 00:00:00 +0000 UTC") is None  # Go's zero time: never synced
    for bad in ("", "yesterday", "2026-13-01 10:00:00 +0000 UTC", None, 12, "2026-03-01 10:00 +0000 UTC"):
        assert parse_go_time(bad) is None


def test_parse_healthz() -> None:
    assert parse_healthz(HEALTHY, 200) == {
        "lastSync": "2026-03-01T10:00:00Z", "healthy": True, "syncAgeSeconds": 0, "nodeEligible": True,
    }  # fmt: skip
    assert parse_healthz(STALE, 503) == {
        "lastSync": "2026-03-01T09:54:58Z", "healthy": False, "syncAgeSeconds": 302, "nodeEligible": True,
    }  # fmt: skip
    assert parse_healthz(NOT_ELIGIBLE, 503)["nodeEligible"] is False
    old = parse_healthz(OLD, 200)  # older releases: no nodeEligible; lastUpdated is the last sync loop
    assert old == {"lastSync": "2021-06-01T10:00:00Z", "healthy": True, "syncAgeSeconds": 41, "nodeEligible": None}
    assert parse_healthz(NEVER, 503) == {"lastSync": None, "healthy": False, "syncAgeSeconds": None,
                                         "nodeEligible": None}  # fmt: skip
    assert parse_healthz("not json", 200)["healthy"] is True
    assert parse_healthz("[1, 2]", 404) == {"lastSync": None, "healthy": None, "syncAgeSeconds": None,
                                            "nodeEligible": None}  # fmt: skip
    assert parse_healthz(None, None)["healthy"] is None
    assert parse_healthz(STALE, None)["healthy"] is None  # the status decides, not the body


def test_split_healthz_output() -> None:
    assert split_healthz_output(STALE + "\n503\n") == (STALE, 503)
    assert split_healthz_output(STALE + "\r\n200") == (STALE, 200)
    assert split_healthz_output("\n000\n") == ("", 0)  # curl: no HTTP answer
    assert split_healthz_output(STALE + "\n") == (STALE, None)
    assert split_healthz_output("") == ("", None)


# ---------------------------------------------------------------------------------------------
# Reading it on the node: fixed commands, fallbacks, nothing when nothing answers.


def test_healthz_fetchers_are_fixed_read_only_commands() -> None:
    for cmd in (HEALTHZ, HEALTHZ_PYTHON, HEALTHZ_WGET):
        assert cmd in ALL_COMMANDS and cmd[0] in nodecmds.PROGRAMS
        assert nodecmds.HEALTHZ_URL in " ".join(cmd)
    assert HEALTHZ[:1] == ("curl",) and "--noproxy" in HEALTHZ and "--max-time" in HEALTHZ
    assert "ProxyHandler({})" in HEALTHZ_PYTHON[2] and "--no-proxy" in HEALTHZ_WGET


def test_curl_first_then_python3_then_wget_then_nothing() -> None:
    out = {" ".join(HEALTHZ): STALE + "\n503\n", "wget": ""}
    d = collect_node(FakeNode(outputs=_outputs(NODE01, **out)), "n1", healthz=True)
    assert (d.healthz, d.healthz_status) == (STALE, 503)

    node = FakeNode(have=EVERYTHING - {"curl"}, outputs=_outputs(NODE01))
    node.outputs[HEALTHZ_PYTHON] = HEALTHY + "\n200\n"
    d = collect_node(node, "n1", healthz=True)
    assert (d.healthz, d.healthz_status) == (HEALTHY, 200)
    assert [_unwrap(a)[0] for a in node.sent][-1] == "python3"

    node = FakeNode(have=EVERYTHING - {"curl", "python3"}, outputs=_outputs(NODE01))
    node.outputs[HEALTHZ_WGET] = (STALE, "  HTTP/1.1 503 Service Unavailable\nERROR 503: Service Unavailable.\n", 8)
    d = collect_node(node, "n1", healthz=True)
    assert (d.healthz, d.healthz_status) == (STALE, 503)

    node = FakeNode(have=EVERYTHING - {"curl", "python3", "wget"}, outputs=_outputs(NODE01))
    d = collect_node(node, "n1", healthz=True)
    assert (d.healthz, d.healthz_status) == (None, None) and d.dumps  # the rules are still read


def test_no_kube_proxy_healthz_is_unknown_not_an_error() -> None:
    node = FakeNode(outputs=_outputs(NODE01, **{" ".join(HEALTHZ): ("\n000\n", "", 7)}))
    d = collect_node(node, "n1", healthz=True)
    assert (d.healthz, d.healthz_status, d.warnings) == (None, None, [])
    node = FakeNode(have=EVERYTHING - {"curl"}, outputs=_outputs(NODE01))
    node.outputs[HEALTHZ_PYTHON] = ("", "urllib.error.URLError: <urlopen error [Errno 111] Connection refused>", 1)
    d = collect_node(node, "n1", healthz=True)
    assert (d.healthz, d.healthz_status, d.warnings) == (None, None, [])


def test_both_backends_is_a_structured_flag() -> None:
    d = collect_node(FakeNode(outputs=_outputs(without_canary(NODE01), legacy4=NODE02)), "n1")
    assert d.backend == "legacy" and d.stale_backend == "nft"
    assert d.backend_warning is not None and d.backend_warning.startswith("the nft iptables backend also holds")
    assert d.warnings[0] == f"node n1: {d.backend_warning}"
    clean = collect_node(FakeNode(outputs=_outputs(NODE01)), "n1")
    assert (clean.stale_backend, clean.backend_warning) == (None, None)


# ---------------------------------------------------------------------------------------------
# node_rows, render_nodes, snapshots.


def _inputs_with_info() -> files.Inputs:
    inputs = files.read_snapshot(str(SEED))
    inputs.node_info = {
        "node01": {"healthz": {"statusCode": 200, "body": HEALTHY}},
        "node02": {"healthz": {"statusCode": 503, "body": STALE}, "backendWarning": "the nft iptables backend …"},
    }
    return inputs


def test_node_rows_carry_last_sync_and_the_backend_warning() -> None:
    inputs = _inputs_with_info()
    rows = {r["name"]: r for r in node_rows(build_map(inputs).service_map, inputs.objects, inputs.node_info)}
    assert (rows["node01"]["lastSync"], rows["node01"]["healthy"], rows["node01"]["backendWarning"]) == (
        "2026-03-01T10:00:00Z", True, None,
    )  # fmt: skip
    assert (rows["node02"]["lastSync"], rows["node02"]["healthy"], rows["node02"]["syncAgeSeconds"]) == (
        "2026-03-01T09:54:58Z", False, 302,
    )  # fmt: skip
    assert rows["node02"]["backendWarning"] == "the nft iptables backend …"
    cp = rows["controlplane"]
    assert (cp["lastSync"], cp["healthy"], cp["backendWarning"], cp["syncAgeSeconds"]) == (None, None, None, None)
    assert list(cp)[-1] == "error"
    # Without node_info (offline from files): every new field is null.
    plain = node_rows(build_map(inputs).service_map, inputs.objects)
    assert all(r["lastSync"] is None and r["healthy"] is None and r["backendWarning"] is None for r in plain)

    table = io.StringIO()
    render_nodes(list(rows.values()), table)
    lines = {ln.split()[0]: ln for ln in table.getvalue().splitlines()}
    assert "LAST SYNC" in lines["NODE"] and "NOTE" in lines["NODE"]
    assert "0s ago" in lines["node01"] and "stale" not in lines["node01"]
    assert "5m2s ago (stale)" in lines["node02"] and "rules in both iptables backends" in lines["node02"]
    assert lines["controlplane"].split()[7] == "-"
    doc = io.StringIO()
    render_nodes(list(rows.values()), doc, "json")
    items = {i["name"]: i for i in json.loads(doc.getvalue())["items"]}
    assert items["node02"]["healthy"] is False and items["controlplane"]["lastSync"] is None


def test_snapshot_keeps_healthz_and_replays_it(tmp_path: Path) -> None:
    inputs = _inputs_with_info()
    write_snapshot(inputs, str(tmp_path / "snap"))
    hz = tmp_path / "snap" / "nodes" / "node02" / "healthz.json"
    assert json.loads(hz.read_text()) == {"statusCode": 503, "body": STALE}
    assert not (tmp_path / "snap" / "nodes" / "controlplane" / "healthz.json").exists()
    back = files.read_snapshot(str(tmp_path / "snap"))
    assert back.node_info == {
        "node01": {"healthz": {"statusCode": 200, "body": HEALTHY}},
        "node02": {"healthz": {"statusCode": 503, "body": STALE}},
    }  # the backend warning is not in a snapshot (only the chosen backend's dumps are)
    assert all(not src.endswith("healthz.json") for dumps in back.nodes.values() for _, src in dumps)
    # Through the CLI, offline.
    r = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "nodes", "--snapshot", str(tmp_path / "snap"), "-o",
                        "json"], capture_output=True, text=True, timeout=60, cwd=str(ROOT))  # fmt: skip
    assert r.returncode == 0, r.stderr
    items = {i["name"]: i for i in json.loads(r.stdout)["items"]}
    assert (items["node02"]["lastSync"], items["node02"]["healthy"]) == ("2026-03-01T09:54:58Z", False)
    assert (items["node01"]["healthy"], items["controlplane"]["healthy"]) == (True, None)
    assert all(i["error"] is None for i in items.values())


def test_a_damaged_healthz_file_is_a_warning(tmp_path: Path) -> None:
    write_snapshot(_inputs_with_info(), str(tmp_path))
    (tmp_path / "nodes" / "node01" / "healthz.json").write_text("{not json")
    (tmp_path / "nodes" / "node02" / "healthz.json").write_text('{"statusCode": "503", "body": 1}')
    back = files.read_snapshot(str(tmp_path))
    assert back.node_info == {}
    assert len(back.warnings) == 2 and all("healthz.json: not read" in w for w in back.warnings)
    assert not back.errors


# ---------------------------------------------------------------------------------------------
# In the lab (root): the CLI in the client namespace, real sshd, a kube-proxy-shaped /healthz per node.


@pytest.mark.lab
def test_nodes_in_the_lab_reads_healthz_and_flags_both_backends(tmp_path: Path) -> None:
    from tests.lab.cluster import ClusterLab, ClusterSpec, LabApi, cluster_skip_reason
    from tests.test_lab_live import svcnet

    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    spec = ClusterSpec(silent=False, private=False, user=False, pods=False, legacy={"node02": "node01"},
                       healthz=True, healthz_stale=("node01",))  # fmt: skip
    with ClusterLab(spec) as lab:
        work = tmp_path / "apiemu"
        work.mkdir()
        with LabApi(lab, work):
            kubeconfig = work / "kubeconfig"
            for n in lab.nodes:
                lab.clear_command_log(n)
            r = svcnet(lab, kubeconfig, "nodes", "-o", "json")
            assert r.returncode == 0, r.stderr
            items = {i["name"]: i for i in json.loads(r.stdout)["items"]}
            assert set(items) == {"controlplane", "node01", "node02"}
            for name in ("controlplane", "node02"):
                i = items[name]
                assert (i["healthy"], i["nodeEligible"], i["error"]) == (True, True, None), i
                assert i["syncAgeSeconds"] == 0 and i["lastSync"].endswith("Z")
            stale = items["node01"]
            assert (stale["healthy"], stale["nodeEligible"]) == (False, True)
            assert 300 <= stale["syncAgeSeconds"] < 600
            assert items["node02"]["backendWarning"].startswith("the nft iptables backend also holds kube-proxy chains")
            assert items["node02"]["iptablesBackend"] == "legacy"
            assert items["controlplane"]["backendWarning"] is None and items["node01"]["backendWarning"] is None
            # On the node, kube-proxy's healthz was asked with the fixed curl command, after the dumps.
            log = lab.command_log("node01")
            assert log[-1] == quote_argv(HEALTHZ), log

            table = svcnet(lab, kubeconfig, "nodes")
            assert table.returncode == 0, table.stderr
            lines = {ln.split()[0]: ln for ln in table.stdout.splitlines()}
            assert "(stale)" in lines["node01"] and "5m" in lines["node01"]
            assert "0s ago" in lines["controlplane"] and "rules in both iptables backends" in lines["node02"]

            # trace and map do not ask for it.
            lab.clear_command_log("node01")
            assert svcnet(lab, kubeconfig, "trace", "db-service").returncode == 0
            assert not any("10256" in c for c in lab.command_log("node01"))

            # A snapshot keeps the answers, and replays them offline.
            snap = tmp_path / "snap"
            s = svcnet(lab, kubeconfig, "snapshot", str(snap))
            assert s.returncode == 0, s.stderr
            assert json.loads((snap / "nodes" / "node01" / "healthz.json").read_text())["statusCode"] == 503
            replay = subprocess.run([sys.executable, "-m", "kubectl_svcnet", "nodes", "--snapshot", str(snap), "-o",
                                     "json"], capture_output=True, text=True, timeout=60, cwd=str(ROOT))  # fmt: skip
            assert replay.returncode == 0, replay.stderr
            back = {i["name"]: i for i in json.loads(replay.stdout)["items"]}
            assert (back["node01"]["healthy"], back["controlplane"]["healthy"]) == (False, True)
            assert back["node01"]["syncAgeSeconds"] >= 300 and back["node02"]["backendWarning"] is None


def test_nodes_wide_adds_the_address_the_kube_proxy_pod_and_the_findings(capsys) -> None:
    """`nodes -o wide`, as `kubectl get nodes -o wide`: each node's InternalIP, its kube-proxy pod, and how
    many findings the map has about it — the counts of the map's own findings for that node."""
    from tests.clirun import svcnet

    r = svcnet(capsys, "nodes", "-o", "wide", "--snapshot", str(SEED))
    assert r.code == 0, r.err
    header, *lines = r.out.splitlines()
    cols = header.split()
    assert cols[:2] == ["NODE", "INTERNAL-IP"] and "FINDINGS" in cols and cols[-1] == "ERROR"
    rows = {ln.split()[0]: ln for ln in lines}
    from kubectl_svcnet.objects import flatten

    addresses = {
        o["metadata"]["name"]: next(a["address"] for a in o["status"]["addresses"] if a["type"] == "InternalIP")
        for o in flatten(files.read_snapshot(str(SEED)).objects)
        if o.get("kind") == "Node"
    }
    assert addresses and all(rows[n].split()[1] == ip for n, ip in addresses.items())
    smap = build_map(files.read_snapshot(str(SEED))).service_map
    every = list(smap.findings) + [f for v in smap.services for f in v.findings]
    for node in rows:
        warnings = sum(1 for f in every if f.node == node and f.severity == "warning")
        assert (f"{warnings} warning" in rows[node]) == (warnings > 0), (node, rows[node])
        assert "kube-system/kube-proxy-" in rows[node]
    # The plain table is unchanged.
    r = svcnet(capsys, "nodes", "--snapshot", str(SEED))
    assert r.out.splitlines()[0].split()[:2] == ["NODE", "SOURCE"] and "FINDINGS" not in r.out
