"""One node over SSH (paramiko) — the only module that imports paramiko.

    opts = SSHOptions(user="root", known_hosts=["./known_hosts"], jump="ops@bastion:2222", sudo=False)
    with SSHRunner("10.0.0.11", name="node01", options=opts) as r:
        r.run(["iptables-save"], timeout=60)

What it guarantees:

- Commands are argv lists; each word is quoted with `shlex.quote` into the one line SSH carries.
  Nothing from the API (node names, service names) is ever part of a command: callers pass the fixed
  lists of `nodecmds.py`; the node's name is only used in messages.
- Host keys are checked against known_hosts (``~/.ssh/known_hosts``, the config's
  ``UserKnownHostsFile`` and the files given): an unknown key or a changed key is refused with its type
  and SHA256 fingerprint. Only ``insecure_skip_host_key_check=True`` accepts any key (never saved).
- ``~/.ssh/config`` is honoured for the address connected to (``HostName``, ``User``, ``Port``,
  ``IdentityFile``, ``IdentitiesOnly``, ``ProxyJump``, ``UserKnownHostsFile``); explicit options win, as
  on the ssh command line. ``jump="user@bastion[:port][,user@next...]"`` reaches private nodes through
  ``direct-tcpip`` channels of the bastions' connections (shared between nodes by a `JumpPool`).
- Bounded: connecting (TCP, banner, key exchange, authentication) is stopped after
  ``connect_timeout`` by a watchdog, so a node that accepts TCP but never speaks SSH fails in time;
  each command is stopped after its timeout.
- Every failure leaves as `kubectl_svcnet.errors.NodeAccessError` (``where`` = the node's name) with a
  one-line message.
"""

from __future__ import annotations

import base64
import errno
import getpass
import hashlib
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import paramiko

from kubectl_svcnet.collect.runner import DEFAULT_TIMEOUT, CommandTimeout, Result, Runner, quote_argv
from kubectl_svcnet.errors import NodeAccessError

SSH_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_OUTPUT = 512 * 1024 * 1024  # bytes of stdout one command may return
USER_CONFIG = "~/.ssh/config"
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
SKIP_FLAG = "--ssh-insecure-skip-host-key-check"
_READ = 1 << 16


@dataclass(frozen=True)
class SSHOptions:
    """How to reach nodes; one value for a whole run (the CLI builds it from its --ssh-* flags)."""

    user: Optional[str] = None  # default: the config's User, else the local user
    port: Optional[int] = None  # default: the config's Port, else 22
    key_files: Sequence[str] = ()  # added to the config's IdentityFile entries
    allow_agent: bool = True
    look_for_keys: bool = True  # ~/.ssh/id_* as OpenSSH does
    ssh_config: Optional[str] = USER_CONFIG  # None: ignore ssh config
    known_hosts: Sequence[str] = ()  # extra known_hosts files
    user_known_hosts: bool = True  # read ~/.ssh/known_hosts
    insecure_skip_host_key_check: bool = False
    jump: Optional[str] = None  # "user@bastion[:port]" (comma-separated for several hops)
    sudo: bool = False  # run commands as `sudo -n -- argv`
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = DEFAULT_TIMEOUT
    max_output: int = DEFAULT_MAX_OUTPUT


@dataclass(frozen=True)
class Endpoint:
    """Where to connect after ssh config: the real address, port, user, keys, jump hosts."""

    alias: str  # what we were asked to reach (and what the config was looked up for)
    hostname: str
    port: int
    user: str
    key_files: Tuple[str, ...] = ()
    jump: Optional[str] = None
    known_hosts: Tuple[str, ...] = ()
    identities_only: bool = False

    @property
    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return self.hostname if self.port == SSH_PORT else f"[{self.hostname}]:{self.port}"


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a host key: ``SHA256:<base64, no padding>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_jump(spec: str) -> List[Tuple[Optional[str], str, Optional[int]]]:
    """``user@host[:port][,...]`` (or ``ssh://user@host:port``, ``[v6addr]:port``) -> hops."""
    hops: List[Tuple[Optional[str], str, Optional[int]]] = []
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ssh://"):
            part = part[len("ssh://") :]
        if not part:
            raise NodeAccessError(f"invalid jump host {spec!r}", hint="use user@bastion[:port]")
        user, at, hostport = part.rpartition("@")
        host, port = hostport, None
        if hostport.startswith("["):
            close = hostport.find("]")
            host, rest = hostport[1:close], hostport[close + 1 :]
            if rest.startswith(":"):
                port = _port(rest[1:], spec)
        elif hostport.count(":") == 1:
            host, _, p = hostport.partition(":")
            port = _port(p, spec)
        if not host or (at and not user):
            raise NodeAccessError(f"invalid jump host {spec!r}", hint="use user@bastion[:port]")
        hops.append((user or None, host, port))
    return hops


def _port(text: str, spec: str) -> int:
    if not text.isdecimal() or not 0 < int(text) < 65536:
        raise NodeAccessError(f"invalid port in {spec!r}")
    return int(text)


def _load_config(path: Optional[str]) -> Optional[paramiko.SSHConfig]:
    if not path:
        return None
    p = os.path.expanduser(path)
    if not os.path.isfile(p):
        return None
    try:
        return paramiko.SSHConfig.from_path(p)
    except Exception as e:  # noqa: BLE001 - a broken config is the user's to fix: say where
        raise NodeAccessError(f"cannot read ssh config: {e}", where=p) from e


def resolve(
    host: str,
    options: SSHOptions,
    config: Optional[paramiko.SSHConfig] = None,
    user: Optional[str] = None,
    port: Optional[int] = None,
) -> Endpoint:
    """Apply ssh config to `host`. Explicit values (arguments, then options) beat the config."""
    cfg: Dict[str, Any] = dict(config.lookup(host)) if config is not None else {}
    keys = [*options.key_files, *cfg.get("identityfile", [])]
    jump = options.jump
    if jump is None and cfg.get("proxyjump", "none").lower() != "none":
        jump = cfg["proxyjump"]
    known = list(options.known_hosts)
    if options.user_known_hosts:
        known.append(USER_KNOWN_HOSTS)
    for f in str(cfg.get("userknownhostsfile", "")).split():
        if f.lower() != "none" and f not in known:
            known.append(f)
    cfg_port = cfg.get("port")
    return Endpoint(
        alias=host,
        hostname=cfg.get("hostname", host),
        port=int(port or options.port or (int(cfg_port) if cfg_port else SSH_PORT)),
        user=user or options.user or cfg.get("user") or getpass.getuser(),
        key_files=tuple(os.path.expanduser(k) for k in keys),
        jump=jump,
        known_hosts=tuple(os.path.expanduser(k) for k in known),
        identities_only=str(cfg.get("identitiesonly", "no")).lower() == "yes",
    )


class _UnknownHostKey(Exception):
    def __init__(self, key: Any):
        super().__init__("unknown host key")
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """RejectPolicy that keeps the key, so the error can show its fingerprint."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise _UnknownHostKey(key)


class _AcceptWithoutSaving(paramiko.MissingHostKeyPolicy):
    """The explicit opt-out: accept any key, remember nothing."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        return None


class _Watchdog:
    """Closes a connection attempt that takes longer than its timeout (whatever phase it is in)."""

    def __init__(self, timeout: float, *closeables: Any):
        self.fired = False
        self.close_errors: List[BaseException] = []
        self._closeables = list(closeables)
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def add(self, obj: Any) -> None:
        self._closeables.append(obj)

    def _fire(self) -> None:
        self.fired = True
        for obj in self._closeables:
            try:
                obj.close()
            except (OSError, EOFError, paramiko.SSHException) as e:
                # The attempt is abandoned either way; the node's error says it timed out.
                self.close_errors.append(e)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _describe(ep: Endpoint, node: str) -> str:
    return f"{node} ({ep.address})" if node != ep.hostname else ep.address


def _connect_error(e: BaseException, ep: Endpoint, node: str, timeout: float, via: str = "") -> NodeAccessError:
    """One line for what went wrong while connecting to `ep`."""
    addr = ep.address + via
    who = node if node not in (ep.hostname, ep.alias) else ep.hostname
    shown = f"{who} ({ep.hostname})" if who != ep.hostname else ep.hostname
    if isinstance(e, _UnknownHostKey):
        return NodeAccessError(
            f"host key for {shown} is not in known_hosts: {e.key.get_name()} {fingerprint(e.key)}"
            f" — add it or pass {SKIP_FLAG}",
            where=node,
        )
    if isinstance(e, paramiko.BadHostKeyException):
        return NodeAccessError(
            f"host key CHANGED for {shown}: it offers {e.key.get_name()} {fingerprint(e.key)}, known_hosts has"
            f" {e.expected_key.get_name()} {fingerprint(e.expected_key)} — refusing (possible"
            " man-in-the-middle; if the node was reinstalled, update known_hosts)",
            where=node,
        )
    if isinstance(e, paramiko.AuthenticationException):
        return NodeAccessError(f"authentication failed for user {ep.user} at {_describe(ep, node)}{via}", where=node)
    if isinstance(e, paramiko.PasswordRequiredException):
        return NodeAccessError(f"a key file is encrypted; load it into ssh-agent ({e})", where=node)
    if isinstance(e, paramiko.ChannelException):
        return NodeAccessError(f"jump host could not open a connection to {ep.address}: {e}", where=node)
    if isinstance(e, socket.gaierror):
        return NodeAccessError(f"cannot resolve {ep.hostname}{via}: {e.strerror or e}", where=node)
    if isinstance(e, (socket.timeout, TimeoutError)):
        return NodeAccessError(f"timed out after {timeout:g}s connecting to {addr}", where=node)
    if isinstance(e, ConnectionRefusedError):
        return NodeAccessError(f"connection refused ({addr})", where=node)
    if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return NodeAccessError(f"no route to {addr}", where=node)
    if isinstance(e, (EOFError, ConnectionResetError)):
        return NodeAccessError(f"connection closed by {addr} during the SSH handshake", where=node)
    if isinstance(e, paramiko.SSHException) and "banner" in str(e).lower():
        return NodeAccessError(
            f"timed out after {timeout:g}s connecting to {addr} (no SSH banner: is an SSH server listening?)",
            where=node,
        )
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return NodeAccessError(f"cannot connect to {addr}: {text}", where=node)


def _open_client(ep: Endpoint, options: SSHOptions, node: str, sock: Any = None, via: str = "") -> paramiko.SSHClient:
    """Connect and authenticate to `ep` (over `sock`, a jump channel, when given), bounded by
    options.connect_timeout in total. Raises NodeAccessError."""
    timeout = options.connect_timeout
    explicit = {os.path.expanduser(k) for k in options.key_files}
    for k in ep.key_files:
        if k in explicit and not os.path.isfile(k):
            raise NodeAccessError(f"key file not found: {k}", where=node)
    client = paramiko.SSHClient()
    if options.insecure_skip_host_key_check:
        client.set_missing_host_key_policy(_AcceptWithoutSaving())
    else:
        for f in ep.known_hosts:
            if os.path.isfile(f):
                try:
                    client.load_system_host_keys(f)
                except (OSError, paramiko.SSHException) as e:
                    raise NodeAccessError(f"cannot read known_hosts: {e}", where=f) from e
        client.set_missing_host_key_policy(_RejectUnknown())
    started = time.monotonic()
    wd = _Watchdog(timeout, client)
    try:
        with wd:
            if sock is None:
                sock = socket.create_connection((ep.hostname, ep.port), timeout=timeout)
                # Small SSH packets must not wait for the node's delayed ACK (Nagle): ~40 ms a command.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            wd.add(sock)
            left = max(0.1, timeout - (time.monotonic() - started))
            agent = options.allow_agent and not ep.identities_only
            client.connect(
                ep.hostname,
                port=ep.port,
                username=ep.user,
                key_filename=[k for k in ep.key_files if os.path.isfile(k)] or None,
                allow_agent=agent,
                look_for_keys=options.look_for_keys and not ep.identities_only,
                timeout=left,
                banner_timeout=left,
                auth_timeout=left,
                channel_timeout=left,
                sock=sock,
            )
        if wd.fired:
            raise socket.timeout()
        return client
    except BaseException as e:
        client.close()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass  # already failing: the error being raised is the one that matters
        if isinstance(e, (KeyboardInterrupt, SystemExit, NodeAccessError)):
            raise
        if wd.fired and not isinstance(e, (_UnknownHostKey, paramiko.BadHostKeyException)):
            e = socket.timeout()
        elif isinstance(e, paramiko.SSHException) and "banner" in str(e).lower():
            if time.monotonic() - started < timeout * 0.9:  # not a timeout: the peer hung up
                e = EOFError()
        raise _connect_error(e, ep, node, timeout, via) from None


class JumpPool:
    """Connections to jump hosts, shared by every node of a run (one per bastion, thread-safe)."""

    def __init__(self, options: SSHOptions):
        self.options = options
        self._config = _load_config(options.ssh_config)
        self._lock = threading.Lock()
        self._clients: Dict[str, paramiko.SSHClient] = {}
        self._failed: Dict[str, str] = {}

    def open_channel(self, spec: str, target: Endpoint, node: str) -> Tuple[Any, str]:
        """A direct-tcpip channel to `target` through the hops of `spec`; returns (channel, label)."""
        hops = parse_jump(spec)
        transport = None
        label = ""
        with self._lock:
            chain = ""
            for user, host, port in hops:
                chain = f"{chain},{user or ''}@{host}:{port or ''}"
                if chain in self._failed:  # one dead bastion costs one timeout, not one per node
                    raise NodeAccessError(self._failed[chain], where=node)
                client = self._clients.get(chain)
                if client is None or not client.get_transport() or not client.get_transport().is_active():
                    opts = replace(self.options, jump=None)
                    hop = resolve(host, opts, self._config, user=user, port=port)
                    try:
                        sock = None
                        if transport is not None:
                            sock = self._channel(transport, hop, node)
                        client = _open_client(hop, opts, node, sock=sock)
                    except NodeAccessError as e:
                        self._failed[chain] = f"jump host {host}: {e.message}"
                        raise NodeAccessError(self._failed[chain], where=node) from None
                    self._clients[chain] = client
                transport = client.get_transport()
                label = f" via {host}"
        assert transport is not None
        return self._channel(transport, target, node), label

    def _channel(self, transport: Any, target: Endpoint, node: str) -> Any:
        try:
            return transport.open_channel(
                "direct-tcpip",
                (target.hostname, target.port),
                ("127.0.0.1", 0),
                timeout=self.options.connect_timeout,
            )
        except paramiko.ChannelException as e:
            raise NodeAccessError(
                f"jump host could not connect to {target.address}: {e.text or e}", where=node
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            if "timeout" in str(e).lower():
                raise NodeAccessError(
                    f"timed out after {self.options.connect_timeout:g}s connecting to {target.address} through the"
                    " jump host",
                    where=node,
                ) from None
            raise NodeAccessError(f"jump host failed opening a channel to {target.address}: {e}", where=node) from None

    def close(self) -> None:
        with self._lock:
            for c in reversed(list(self._clients.values())):
                c.close()
            self._clients.clear()


class SSHRunner(Runner):
    """Runs argv lists on one node over SSH. Connects on first use; `close()` disconnects."""

    remote = True

    def __init__(
        self,
        host: str,
        name: Optional[str] = None,
        options: Optional[SSHOptions] = None,
        jumps: Optional[JumpPool] = None,
        **overrides: Any,
    ):
        opts = replace(options or SSHOptions(), **overrides) if overrides else (options or SSHOptions())
        super().__init__(name or host, sudo=opts.sudo, timeout=opts.command_timeout)
        self.options = opts
        self.host = host
        self.endpoint = resolve(host, opts, _load_config(opts.ssh_config))
        self.user = self.endpoint.user
        self._jumps = jumps
        self._own_jumps: Optional[JumpPool] = None
        self._client: Optional[paramiko.SSHClient] = None
        self._lock = threading.Lock()
        self._closed = False

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            if self._closed:
                raise NodeAccessError(f"connection to {self.endpoint.address} was closed", where=self.name)
            client = self._client
            if client is not None and client.get_transport() is not None and client.get_transport().is_active():
                return
            if client is not None:
                client.close()
                self._client = None
            ep = self.endpoint
            sock, via = None, ""
            if ep.jump:
                pool = self._jumps
                if pool is None:
                    pool = self._own_jumps = JumpPool(self.options)
                sock, via = pool.open_channel(ep.jump, ep, self.name)
            client = _open_client(ep, self.options, self.name, sock=sock, via=via)
            if self._closed:  # closed (cancelled) while connecting
                client.close()
                raise NodeAccessError(f"connection to {self.endpoint.address} was closed", where=self.name)
            self._client = client

    def close(self) -> None:
        """Disconnect. Safe from another thread (fan-out cancels a late node this way): it does not
        wait for a connection attempt in progress, which then closes itself. A closed runner stays
        closed."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            client.close()
        jumps, self._own_jumps = self._own_jumps, None
        if jumps is not None:
            jumps.close()

    # -- commands ------------------------------------------------------------------------------

    def _run(self, argv: List[str], timeout: float) -> Result:
        self.connect()
        client = self._client
        command = quote_argv(argv)
        try:
            if client is None or client.get_transport() is None:
                raise EOFError("connection closed")
            chan = client.get_transport().open_session(timeout=self.options.connect_timeout)
            chan.exec_command(command)
            chan.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError) as e:
            self.close()
            raise NodeAccessError(f"{self.endpoint.address} refused to run a command: {e or 'channel closed'}",
                                  where=self.name) from None  # fmt: skip
        try:
            return self._collect(chan, command, timeout)
        finally:
            chan.close()

    def _collect(self, chan: Any, command: str, timeout: float) -> Result:
        """Read stdout and stderr until the node's EOF (sshd may send the exit status before the last
        output, so the status alone does not end the read), then the exit status; all by `deadline`."""
        deadline = time.monotonic() + timeout
        out = bytearray()
        err = bytearray()
        limit = self.options.max_output
        while True:
            got = False
            while chan.recv_ready():
                data = chan.recv(_READ)
                if not data:
                    break
                out += data
                got = True
                if len(out) > limit:
                    raise NodeAccessError(f"{command} printed more than {limit} bytes; stopped", where=self.name)
            while chan.recv_stderr_ready():
                data = chan.recv_stderr(_READ)
                if not data:
                    break
                if len(err) < 1 << 20:
                    err += data
                got = True
            if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandTimeout(command, timeout, where=self.name)
            if not got:
                select.select([chan], [], [], min(left, 0.2))
        left = deadline - time.monotonic()
        if not chan.status_event.wait(max(0.0, left)) and not chan.exit_status_ready():
            if chan.closed:
                code = -1  # closed without an exit status (killed by a signal, or the connection dropped)
            else:
                raise CommandTimeout(command, timeout, where=self.name)
        else:
            code = chan.recv_exit_status()
        return Result(bytes(out), err.decode("utf-8", errors="replace"), code, command)


@dataclass
class SSHRunnerFactory:
    """Makes an SSHRunner per node, sharing one JumpPool (for fanout). `close()` closes the pool."""

    options: SSHOptions = field(default_factory=SSHOptions)
    jumps: Optional[JumpPool] = None

    def __post_init__(self) -> None:
        if self.jumps is None:
            self.jumps = JumpPool(self.options)

    def __call__(self, name: str, address: str) -> SSHRunner:
        return SSHRunner(address, name=name, options=self.options, jumps=self.jumps)

    def close(self) -> None:
        if self.jumps is not None:
            self.jumps.close()
