"""The runner interface (LocalRunner) and the SSH transport's parts that need no remote host.

Live SSH (real sshd in network namespaces) is tests/test_lab_cluster.py. The few connection tests
here only ever talk to 127.0.0.1 (a closed port, a listener that never speaks).
"""

from __future__ import annotations

import base64
import io
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from kubectl_svcnet.collect import ssh as sshmod
from kubectl_svcnet.collect.runner import (
    CommandFailed,
    CommandTimeout,
    LocalRunner,
    Result,
    SudoError,
    check_sudo,
    quote_argv,
    tail,
)
from kubectl_svcnet.collect.ssh import (
    Endpoint,
    SSHOptions,
    SSHRunner,
    _connect_error,
    _UnknownHostKey,
    fingerprint,
    parse_jump,
    resolve,
)
from kubectl_svcnet.errors import NodeAccessError

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# LocalRunner and Result.


def test_local_runner_returns_bytes_exit_code_and_command() -> None:
    r = LocalRunner("n1").run(["printf", "a b\\n%s", "c'd"])
    assert r.stdout == b"a b\nc'd"
    assert r.text == "a b\nc'd"
    assert r.exit_code == 0 and r.ok
    assert r.command == "printf 'a b\\n%s' 'c'\"'\"'d'"
    assert shlex.split(r.command) == ["printf", "a b\\n%s", "c'd"]


def test_failure_carries_command_exit_code_and_stderr_tail() -> None:
    runner = LocalRunner("node01")
    with pytest.raises(CommandFailed) as ei:
        runner.run(["sh", "-c", "echo one >&2; echo two >&2; echo 'the reason' >&2; exit 3"])
    e = ei.value
    assert isinstance(e, NodeAccessError)
    assert e.exit_code == 3 and e.where == "node01"
    assert e.command.startswith("sh -c ")
    assert "exited 3" in e.message and e.message.endswith("the reason")
    assert e.result.stderr.count("\n") == 3
    assert "\n" not in e.one_line()


def test_check_false_returns_the_failure() -> None:
    r = LocalRunner().run(["sh", "-c", "exit 5"], check=False)
    assert r.exit_code == 5 and not r.ok


def test_missing_program_is_exit_127() -> None:
    r = LocalRunner().run(["no-such-program-svcnet"], check=False)
    assert r.exit_code == 127 and r.not_found


def test_argv_must_be_a_list_not_a_shell_string() -> None:
    with pytest.raises(TypeError):
        LocalRunner().run("iptables-save; rm -rf /")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LocalRunner().run([])


def test_timeout_stops_the_command_and_its_children() -> None:
    marker = f"{time.time() % 1000:.6f}"  # a unique sleep duration to find leftovers by
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as ei:
        LocalRunner("n1").run(["sh", "-c", f"sleep 3{marker} & sleep 3{marker}; wait"], timeout=0.5)
    took = time.monotonic() - started
    assert took < 3, f"timeout not bounded: {took:.1f}s"
    assert "timed out after 0.5s" in ei.value.message and ei.value.where == "n1"
    time.sleep(0.1)
    left = subprocess.run(["pgrep", "-f", f"sleep 3{marker}"], capture_output=True, text=True).stdout
    assert not left.strip(), f"children of a timed-out command survived: {left}"


def test_tail_is_one_bounded_line() -> None:
    assert tail("a\n\nb\nc\nd\n") == "b | c | d"
    long = tail("x" * 1000, 50)
    assert len(long) == 50 and long.startswith("…")


def test_quote_argv_never_lets_a_word_become_shell() -> None:
    words = ["echo", "n1; rm -rf /", "$(reboot)", "`id`", "a'b", "", "*"]
    line = quote_argv(words)
    assert shlex.split(line) == words
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True).stdout
    assert out == "n1; rm -rf / $(reboot) `id` a'b  *\n"


# ---------------------------------------------------------------------------------------------
# sudo.


def _fake_bin(tmp_path: Path, sudo_script: str) -> dict:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "sudo").write_text("#!/bin/sh\n" + sudo_script)
    (d / "sudo").chmod(0o755)
    return {**os.environ, "PATH": f"{d}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def test_sudo_prefix_is_sudo_n(tmp_path: Path) -> None:
    env = _fake_bin(tmp_path, 'printf "%s|" "$@"\n')
    r = LocalRunner("n1", sudo=True, env=env).run(["iptables-save", "-t", "nat"])
    assert r.text == "-n|--|iptables-save|-t|nat|"
    assert r.command == "sudo -n -- iptables-save -t nat"


def test_sudo_password_prompt_is_a_clear_error(tmp_path: Path) -> None:
    env = _fake_bin(tmp_path, 'echo "sudo: a password is required" >&2\nexit 1\n')
    with pytest.raises(SudoError) as ei:
        LocalRunner("node01", sudo=True, env=env).run(["iptables-save"], check=False)
    assert ei.value.message == "sudo needs a password on node01 (use a user with passwordless sudo or root)"
    assert ei.value.where == "node01"


def test_sudo_refusal_and_absence(tmp_path: Path) -> None:
    env = _fake_bin(tmp_path, 'echo "bob is not in the sudoers file.  This incident will be reported." >&2\nexit 1\n')
    with pytest.raises(SudoError, match="sudo refused"):
        LocalRunner("n1", sudo=True, env=env).run(["true"])
    gone = {**os.environ, "PATH": str(tmp_path)}  # no sudo anywhere
    with pytest.raises(SudoError, match="sudo is not installed on n1"):
        LocalRunner("n1", sudo=True, env=gone).run(["true"])


def test_check_sudo_ignores_success_and_other_failures() -> None:
    check_sudo(Result(b"", "", 0, "x"), "n1")
    check_sudo(Result(b"", "iptables: Permission denied", 1, "x"), "n1")


# ---------------------------------------------------------------------------------------------
# SSH: options, config, jump hosts, host keys, error messages.


def test_defaults_check_host_keys_and_are_bounded() -> None:
    o = SSHOptions()
    assert o.insecure_skip_host_key_check is False
    assert 0 < o.connect_timeout <= 30 and 0 < o.command_timeout <= 600
    src = (ROOT / "kubectl_svcnet" / "collect" / "ssh.py").read_text()
    assert "AutoAddPolicy" not in src and "WarningPolicy" not in src


def test_only_ssh_py_imports_paramiko() -> None:
    hits = []
    for p in (ROOT / "kubectl_svcnet").rglob("*.py"):
        if p.name != "ssh.py" and "paramiko" in p.read_text():
            for line in p.read_text().splitlines():
                if line.strip().startswith(("import paramiko", "from paramiko")):
                    hits.append(str(p))
    assert not hits
    code = (
        "import sys; import kubectl_svcnet.collect.runner, kubectl_svcnet.collect.nodecmds,"
        " kubectl_svcnet.collect.fanout; print('paramiko' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(
    "spec, hops",
    [
        ("bastion", [(None, "bastion", None)]),
        ("ops@bastion:2222", [("ops", "bastion", 2222)]),
        ("ssh://ops@10.0.0.1:22", [("ops", "10.0.0.1", 22)]),
        ("a@[fd00::1]:2200,b@inner", [("a", "fd00::1", 2200), ("b", "inner", None)]),
        ("fd00::1", [(None, "fd00::1", None)]),
    ],
)
def test_parse_jump(spec: str, hops: list) -> None:
    assert parse_jump(spec) == hops


@pytest.mark.parametrize("spec", ["", "ops@", "@host", "host:99999", "host:abc"])
def test_parse_jump_rejects(spec: str) -> None:
    with pytest.raises(NodeAccessError):
        parse_jump(spec)


def test_resolve_honours_ssh_config_and_explicit_options_win(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text(
        "Host 10.0.0.*\n"
        "  User ops\n"
        "  Port 2222\n"
        "  IdentityFile ~/.ssh/cluster_key\n"
        "  ProxyJump jump@bastion:22\n"
        "  UserKnownHostsFile /etc/cluster_known_hosts\n"
        "Host node01\n"
        "  HostName 10.0.0.11\n"
        "Host *\n"
        "  User fallback\n"
    )
    config = paramiko.SSHConfig.from_path(str(cfg))
    ep = resolve("10.0.0.11", SSHOptions(), config)
    assert (ep.hostname, ep.port, ep.user, ep.jump) == ("10.0.0.11", 2222, "ops", "jump@bastion:22")
    assert ep.key_files == (os.path.expanduser("~/.ssh/cluster_key"),)
    assert "/etc/cluster_known_hosts" in ep.known_hosts and os.path.expanduser("~/.ssh/known_hosts") in ep.known_hosts
    assert resolve("node01", SSHOptions(), config).hostname == "10.0.0.11"
    assert resolve("node01", SSHOptions(), config).user == "fallback"
    explicit = resolve("10.0.0.11", SSHOptions(user="root", port=22, jump="me@other", key_files=("/k",)), config)
    assert (explicit.user, explicit.port, explicit.jump) == ("root", 22, "me@other")
    assert explicit.key_files[0] == "/k"
    assert resolve("10.0.0.11", SSHOptions(user_known_hosts=False, known_hosts=("/kh",)), None).known_hosts == ("/kh",)


def test_runner_reads_the_config_file_it_is_given(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text("Host node01\n  HostName 10.0.0.11\n  User ops\n  Port 2200\n")
    r = SSHRunner("node01", options=SSHOptions(ssh_config=str(cfg)))
    assert (r.endpoint.hostname, r.endpoint.port, r.user, r.name) == ("10.0.0.11", 2200, "ops", "node01")
    assert SSHRunner("node01", options=SSHOptions(ssh_config=None)).endpoint.hostname == "node01"


def test_fingerprint_is_openssh_sha256(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listing = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True).stdout
    want = listing.split()[1]
    kind, blob = (tmp_path / "k.pub").read_text().split()[:2]
    assert kind == "ssh-ed25519"
    pub = paramiko.Ed25519Key(data=base64.b64decode(blob))
    assert fingerprint(pub) == want and want.startswith("SHA256:")


def _key() -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key(
        io.StringIO(
            subprocess.run(
                ["sh", "-c", 'd=$(mktemp -d); ssh-keygen -q -t ed25519 -N "" -f $d/k; cat $d/k; rm -r $d'],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    )


EP = Endpoint("10.0.0.11", "10.0.0.11", 22, "root")


def test_error_messages_are_one_line_and_name_the_node() -> None:
    k1, k2 = _key(), _key()
    cases = {
        _UnknownHostKey(k1): f"host key for node01 (10.0.0.11) is not in known_hosts: ssh-ed25519 {fingerprint(k1)}"
        " — add it or pass --ssh-insecure-skip-host-key-check",
        paramiko.BadHostKeyException("10.0.0.11", k1, k2): f"host key CHANGED for node01 (10.0.0.11): it offers"
        f" ssh-ed25519 {fingerprint(k1)}, known_hosts has ssh-ed25519 {fingerprint(k2)}",
        paramiko.AuthenticationException("x"): "authentication failed for user root at node01 (10.0.0.11:22)",
        ConnectionRefusedError(111, "refused"): "connection refused (10.0.0.11:22)",
        socket.timeout(): "timed out after 5s connecting to 10.0.0.11:22",
        paramiko.SSHException("Error reading SSH protocol banner"): "timed out after 5s connecting to 10.0.0.11:22",
        EOFError(): "connection closed by 10.0.0.11:22 during the SSH handshake",
        socket.gaierror(-2, "Name or service not known"): "cannot resolve 10.0.0.11",
    }
    for exc, want in cases.items():
        err = _connect_error(exc, EP, "node01", 5.0)
        assert isinstance(err, NodeAccessError)
        assert err.message.startswith(want), (exc, err.message)
        assert err.where == "node01" and "\n" not in err.one_line()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_on_loopback() -> None:
    port = _free_port()
    opts = SSHOptions(ssh_config=None, user_known_hosts=False, allow_agent=False, look_for_keys=False, port=port)
    with SSHRunner("127.0.0.1", name="n1", options=opts) as r:
        with pytest.raises(NodeAccessError) as ei:
            r.run(["true"])
    assert ei.value.message == f"connection refused (127.0.0.1:{port})" and ei.value.where == "n1"


def test_a_port_that_never_speaks_ssh_fails_within_the_connect_timeout() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    opts = SSHOptions(ssh_config=None, user_known_hosts=False, allow_agent=False, look_for_keys=False, port=port,
                      connect_timeout=1.0)  # fmt: skip
    try:
        started = time.monotonic()
        with pytest.raises(NodeAccessError) as ei:
            SSHRunner("127.0.0.1", name="n1", options=opts).run(["true"])
        took = time.monotonic() - started
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()
    assert ei.value.message.startswith(f"timed out after 1s connecting to 127.0.0.1:{port}")
    assert took < 2.5, f"connect not bounded: {took:.1f}s"


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    opts = SSHOptions(ssh_config=None, user_known_hosts=False, key_files=(str(tmp_path / "nope"),))
    with pytest.raises(NodeAccessError, match="key file not found"):
        SSHRunner("127.0.0.1", name="n1", options=opts).connect()


def test_closed_runner_stays_closed() -> None:
    r = SSHRunner("127.0.0.1", name="n1", options=SSHOptions(ssh_config=None))
    r.close()
    with pytest.raises(NodeAccessError, match="closed"):
        r.run(["true"])
    assert sshmod.SSHRunner.remote is True and LocalRunner.remote is False


class _ScriptedChannel:
    """A channel whose events arrive in a scripted order, one step per poll: here the exit status
    comes before the output (as sshd may send it) and the read must still return all of it."""

    def __init__(self, script: list):
        self.script = list(script)
        self.buf = bytearray()
        self.err = bytearray()
        self.eof_received = False
        self.closed = False
        self.status_event = threading.Event()
        self.exit_status = -1
        self._r, self._w = os.pipe()
        os.write(self._w, b"x")  # always "readable": select returns at once and the script advances

    def _step(self) -> None:
        if not self.script:
            return
        kind, value = self.script.pop(0)
        if kind == "out":
            self.buf += value
        elif kind == "err":
            self.err += value
        elif kind == "status":
            self.exit_status = value
            self.status_event.set()
        elif kind == "eof":
            self.eof_received = True

    def fileno(self) -> int:
        return self._r

    def recv_ready(self) -> bool:
        self._step()
        return bool(self.buf)

    def recv(self, n: int) -> bytes:
        data, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return data

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv_stderr(self, n: int) -> bytes:
        data, self.err = bytes(self.err[:n]), self.err[n:]
        return data

    def exit_status_ready(self) -> bool:
        return self.status_event.is_set()

    def recv_exit_status(self) -> int:
        return self.exit_status

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def test_output_after_an_early_exit_status_is_not_lost() -> None:
    runner = SSHRunner("127.0.0.1", name="n1", options=SSHOptions(ssh_config=None))
    chan = _ScriptedChannel(
        [("status", 0), ("out", b"have=gzip\n"), ("err", b"warn\n"), ("out", b"have=nft\n"), ("eof", None)]
    )
    try:
        r = runner._collect(chan, "probe", timeout=5)
    finally:
        chan.close()
    assert (r.stdout, r.stderr, r.exit_code) == (b"have=gzip\nhave=nft\n", "warn\n", 0)


def test_a_command_that_never_ends_is_stopped_at_its_timeout() -> None:
    runner = SSHRunner("127.0.0.1", name="n1", options=SSHOptions(ssh_config=None))
    chan = _ScriptedChannel([("out", b"partial")])
    started = time.monotonic()
    try:
        with pytest.raises(CommandTimeout, match="timed out after 0.3s running iptables-save"):
            runner._collect(chan, "iptables-save", timeout=0.3)
    finally:
        chan.close()
    assert time.monotonic() - started < 1.5
