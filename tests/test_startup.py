"""What makes start-up and `trace` cheap, held to what it replaces:

- model.frozen builds the model's classes without generating code at import, with slots; they must
  behave as ``@dataclass(frozen=True)`` did (equality, hash, order, repr, immutability, replace, copy).
- render.plain_table lays out plain tables without importing tabulate; it must print what tabulate did.
- proxymode reads a plain kube-proxy ConfigMap without importing PyYAML; it must answer as PyYAML did.
- files._read_text decodes large files from a memory map; same text, same errors.
- A trace imports none of the libraries it does not need.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_svcnet import model, proxymode, render
from kubectl_svcnet.collect import files
from kubectl_svcnet.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-cluster"


# -- model.frozen against @dataclass(frozen=True) ---------------------------------------------------
def _twin(cls: type) -> type:
    """The class as @dataclass(frozen=True) made it, from the same fields."""
    fields = [
        (f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
        for f in dataclasses.fields(cls)
    ]
    order = cls.__lt__ is not object.__lt__
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, order=order)


SAMPLES = [
    model.ServiceKey("ns", "web", "http"),
    model.ServiceKey("ns", "web"),
    model.Hop("KUBE-SERVICES", 12, "-A KUBE-SERVICES -j X"),
    model.Backend("10.0.0.1", 80, 0.5),
    model.Backend("10.0.0.1", 80, 0.5, local=True, pod="ns/p", path=(model.Hop("C", 1, "r"),)),
    model.Affinity(10800),
    model.Route("any", "forward", (model.Backend("10.0.0.2", 8080, 1.0),), model.Affinity(5)),
    model.Frontend("ClusterIP", "10.96.0.1", 443, "node1", ()),
    model.Finding("error", "missing-endpoint", "endpoint 1.2.3.4:80 is missing", "node1"),
    model.NodeInfo("node1", proxy_mode="iptables"),
    model.ServicePort("http", "TCP", 80, node_port=30080),
    model.Service("ns", "web", cluster_ips=("10.96.0.10",)),
    model.Endpoint("10.0.0.1", 80, node_name="node1"),
    model.Node("node1", (("InternalIP", "192.168.0.1"),)),
    model.Cluster(pods_by_ip={"10.0.0.1": "ns/p"}),
    model.ServiceMap((model.NodeInfo("n"),), ()),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_frozen_behaves_as_a_frozen_dataclass(obj):
    cls = type(obj)
    twin_cls = _twin(cls)
    values = [getattr(obj, f.name) for f in dataclasses.fields(cls)]
    twin = twin_cls(*values)
    assert repr(obj) == repr(twin)
    assert dataclasses.asdict(obj) == dataclasses.asdict(twin)
    assert cls(*values) == obj and obj != twin and obj != tuple(values)
    try:
        assert hash(obj) == hash(twin)
    except TypeError:
        with pytest.raises(TypeError):
            hash(twin)
    for f in dataclasses.fields(cls):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, f.name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(obj, f.name)
    with pytest.raises(AttributeError):
        obj.not_a_field = 1
    assert not hasattr(obj, "__dict__")
    assert dataclasses.replace(obj) == obj
    assert copy.copy(obj) == obj and copy.deepcopy(obj) == obj and pickle.loads(pickle.dumps(obj)) == obj
    # keywords and defaults as the generated __init__ takes them
    assert cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}) == obj


def test_frozen_order_and_defaults():
    keys = [
        model.ServiceKey("b", "a"),
        model.ServiceKey("a", "z", "p"),
        model.ServiceKey("a", "z"),
        model.ServiceKey("a", "z", "", "UDP"),
    ]
    twin = _twin(model.ServiceKey)
    twins = [twin(*dataclasses.astuple(k)) for k in keys]
    assert [dataclasses.astuple(k) for k in sorted(keys)] == [dataclasses.astuple(k) for k in sorted(twins)]
    assert (keys[0] < keys[1]) is (twins[0] < twins[1]) and (keys[1] >= keys[2]) is (twins[1] >= twins[2])
    with pytest.raises(TypeError):
        keys[0] < twins[0]  # noqa: B015
    assert model.Cluster().endpoints is not model.Cluster().endpoints  # default_factory, per instance
    assert dataclasses.replace(model.Backend("1.1.1.1", 1, 1.0), pod="ns/p").pod == "ns/p"
    with pytest.raises(TypeError):
        model.Backend("1.1.1.1")  # missing arguments, as before


# -- render.plain_table against tabulate ------------------------------------------------------------
def _tabulate(rows, headers) -> str:
    from tabulate import tabulate

    text = tabulate(rows, headers=headers or (), tablefmt="plain", disable_numparse=True, stralign="left")
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


_CELL = st.one_of(
    st.text(alphabet=" abcXYZ019-./:%*()[]", max_size=12),
    st.sampled_from(["", " ", "  x  ", "10.0.0.1:80", "50%", "1e5", "007", "-3", "None", "é", "日本", "a\tb", "a\nb"]),
)


@settings(max_examples=300, deadline=None)
@given(
    ncols=st.integers(1, 5),
    data=st.data(),
    headers=st.one_of(st.none(), st.just(True)),
)
def test_plain_table_is_tabulates_plain_table(ncols, data, headers):
    rows = data.draw(st.lists(st.lists(_CELL, min_size=ncols, max_size=ncols), min_size=1, max_size=5))
    hdr = (
        data.draw(st.lists(st.sampled_from(["NAME", "IN USE", "A", "NOTE", ""]), min_size=ncols, max_size=ncols))
        if headers
        else None
    )
    assert render.plain_table(rows, hdr) == _tabulate(rows, hdr)


def test_plain_table_ragged_and_empty_rows_go_to_tabulate():
    assert render.plain_table([["a"], ["b", "c"]], None) == _tabulate([["a"], ["b", "c"]], None)
    assert render.plain_table([], ["A", "B"]) == _tabulate([], ["A", "B"])


# -- proxymode: the ConfigMap's mode without PyYAML ---------------------------------------------------
def _mode_with_pyyaml(conf: str) -> Optional[str]:
    """_config_mode as it was: PyYAML, else the `mode:` line."""
    import yaml

    try:
        doc = yaml.safe_load(conf)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        return str(doc.get("mode") or "") if "mode" in doc else None
    m = re.search(r"""^mode:\s*["']?([A-Za-z]*)["']?\s*$""", conf, re.M)
    return m.group(1) if m else None


def _seed_config() -> str:
    import json

    items = json.loads((SEED / "configmaps.json").read_text())["items"]
    return next(o for o in items if o["metadata"]["name"] == "kube-proxy")["data"]["config.conf"]


_LINES = st.sampled_from(
    [
        "", "  ", "# c", "  # c", "#\u2028mode: ipvs", "---", "...", "%YAML 1.1", "\t", "a: 1\r", "\ufeffa: 1",
        "kind: KubeProxyConfiguration", "apiVersion: kubeproxy.config.k8s.io/v1alpha1", "clientConnection:",
        "  qps: 0", "  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf", "    infoBufferSize: \"0\"", "x: []",
        "x: {}", "x: [a,", "  mode: ipvs", "- a", "- a: 1", "  - b", "x: |", "x: >", "  text", "x: &a y", "x: *a",
        "<<: *a", "x: !!str y", "x: 'it''s'", 'x: "a\\"b"', 'x: "a', "x: y # c", "? mode", "x: -", "x: a:",
        "mode: ipvs", "mode: \"nftables\"", "mode: ''", 'mode: ""', "mode:", "mode:  iptables  ", "mode: yes",
        "mode: Off", "mode: null", "mode: ~", "mode: 1", "mode: ipvs # c", "mode: ip vs", "mode : ipvs",
        "modes: x", "Mode: x", "mode:ipvs", "mode: [ipvs]", "mode: |", "mode: &m ipvs", "mode: ipVS", "foo:",
        "  bar:", "    baz: 1", "x: -1", "- -", "y: 'mode: x'", "#mode: x", "0: a", "x: http://h:1",
    ]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(_LINES, max_size=8))
def test_config_mode_answers_as_pyyaml_did(lines):
    conf = "\n".join(lines)
    assert proxymode._config_mode(conf) == _mode_with_pyyaml(conf)


@pytest.mark.parametrize("mode", ['""', "ipvs", '"nftables"', "'iptables'", "", "true", "x\n  y", "\n# c\n  - a"])
def test_config_mode_of_a_kubeadm_config(mode):
    conf = _seed_config().replace('\nmode: ""\n', f"\nmode: {mode}\n")
    assert proxymode._config_mode(conf) == _mode_with_pyyaml(conf)
    if mode in ('""', "ipvs"):
        assert proxymode._plain_config_mode(conf) is not proxymode._NOT_PLAIN  # read without PyYAML


# -- files._read_text: the text as it is, and errors at their line ---------------------------------------
@pytest.mark.parametrize("size", [0, 10, 1 << 20, (1 << 20) + 4097])
def test_read_text_small_and_big(tmp_path, size):
    body = (b"-A KUBE-SERVICES -j X\r\n" * (size // 23 + 1))[:size]
    p = tmp_path / "dump.txt"
    p.write_bytes(body)
    assert files._read_text(p) == body.decode("utf-8")  # CRLF kept as it is
    bad = body[: size // 2] + b"\n\xc3\x28" + body[size // 2 :]
    p.write_bytes(bad)
    with pytest.raises(InputError) as e:
        files._read_text(p)
    line = bad[: bad.index(b"\xc3\x28")].count(b"\n") + 1
    assert e.value.one_line() == f"not text (invalid UTF-8) ({p}:{line})"
    assert isinstance(e.value.__cause__, UnicodeDecodeError)


def test_read_text_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        files._read_text(tmp_path)  # a directory
    with pytest.raises(InputError, match="cannot read"):
        files._read_text(tmp_path / "missing")


# -- what a trace imports --------------------------------------------------------------------------------
@pytest.mark.parametrize("output", ["table", "json"])
def test_trace_imports_only_what_it_needs(output):
    code = (
        "import io, sys, contextlib\n"
        "from kubectl_svcnet.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main(['trace', 'db-service', '--snapshot', {str(SEED)!r}, '-o', {output!r}])\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "      ('yaml', 'tabulate', 'wcwidth', 'kubernetes', 'paramiko', 'importlib_metadata'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
