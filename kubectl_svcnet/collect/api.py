"""Live clusters: read the Kubernetes API (the only module that imports `kubernetes`).

Configuration is found the way kubectl finds it: ``--kubeconfig FILE``, else every file in
``KUBECONFIG`` (merged, the first file to set a name wins), else ``~/.kube/config``, else the pod's
service account (in-cluster); ``--context``, ``--cluster``, ``--user`` and ``-n`` override the
kubeconfig's choices; exec and OIDC credential plugins run through the client.

Reads return plain dicts exactly as ``kubectl get -o json`` prints them: the wire JSON (camelCase
keys, every field the server sent), with ``apiVersion`` and ``kind`` on each list item, so
``objects.build_cluster`` takes them unchanged and a snapshot can store them verbatim. Lists are
paginated (``limit``/``continue``); a list whose continue token expires (410) starts over, a bounded
number of times.

Every failure leaves this module as :class:`~kubectl_svcnet.errors.ApiError` (or ``UsageError`` /
``InputError`` for a wrong command line or an unreadable kubeconfig), one line naming what was
refused; no ``kubernetes`` or ``urllib3`` exception escapes. An ``ApiError`` raised here carries
``code`` (HTTP status, 0 without one), ``reason`` (the Status reason, e.g. ``Forbidden``) and
``status`` (the server's Status body as a dict, or None).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlencode

from kubectl_svcnet.errors import ApiError, InputError, SvcnetError, UsageError

DEFAULT_PAGE_SIZE = 500
MAX_LIST_RESTARTS = 3  # a list whose continue token expires starts over at most this often
CONNECT_TIMEOUT = 30.0  # kubectl's dial timeout
IDLE_READ_TIMEOUT = 3600.0  # without --request-timeout: kubectl waits forever; we wait an hour per read
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
KUBE_PROXY_SELECTOR = "k8s-app=kube-proxy"
OVERRIDE_CONTEXT = "kubectl-svcnet:override"

# resource (plural) -> (apiVersion, kind, namespaced)
_RESOURCES: Dict[str, Tuple[str, str, bool]] = {
    "services": ("v1", "Service", True),
    "pods": ("v1", "Pod", True),
    "endpoints": ("v1", "Endpoints", True),
    "configmaps": ("v1", "ConfigMap", True),
    "nodes": ("v1", "Node", False),
    "namespaces": ("v1", "Namespace", False),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice", True),
    "servicecidrs": ("networking.k8s.io/v1", "ServiceCIDR", False),
    "servicecidrs/v1beta1": ("networking.k8s.io/v1beta1", "ServiceCIDR", False),  # servers before 1.33
    "ippools": ("crd.projectcalico.org/v1", "IPPool", False),  # Calico's pod ranges
    "daemonsets": ("apps/v1", "DaemonSet", True),  # kube-proxy and its replacements (proxymode.py)
    "felixconfigurations": ("crd.projectcalico.org/v1", "FelixConfiguration", False),  # Calico's bpfEnabled
}


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class KubeConfig:
    """The merged kubeconfig: one dict as kubectl sees it, with file references made absolute."""

    config: Dict[str, Any]
    files: List[str]

    def names(self, section: str) -> List[str]:
        return [str(e.get("name")) for e in self.config.get(section) or [] if isinstance(e, dict)]

    def entry(self, section: str, name: str) -> Optional[Dict[str, Any]]:
        for e in self.config.get(section) or []:
            if isinstance(e, dict) and e.get("name") == name:
                return e
        return None

    @property
    def where(self) -> str:
        return ", ".join(self.files) or "kubeconfig"


@dataclass
class Session:
    """A configured connection to one cluster. Close it (or use ``with``) to free its connections."""

    api: Any  # kubernetes.client.ApiClient
    server: str
    namespace: str  # -n, else the context's namespace, else "default" (in-cluster: the pod's)
    context: Optional[str] = None
    cluster: Optional[str] = None
    user: Optional[str] = None
    all_namespaces: bool = False
    request_timeout: Optional[float] = None  # seconds; None: no limit (kubectl's --request-timeout=0)
    page_size: int = DEFAULT_PAGE_SIZE
    in_cluster: bool = False
    endpoint_kind: Optional[str] = None  # after a read: "EndpointSlice" or "Endpoints" (fallback)
    user_agent: str = "kubectl-svcnet"

    @property
    def list_namespace(self) -> Optional[str]:
        """The namespace a `map` reads: None with -A (all namespaces)."""
        return None if self.all_namespaces else self.namespace

    def close(self) -> None:
        for close in (getattr(self.api, "close", None), getattr(self.api.rest_client.pool_manager, "clear", None)):
            if close is not None:
                _best_effort(close, "closing the API client")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _timeout(self) -> Union[float, Tuple[float, float]]:
        if self.request_timeout:
            return self.request_timeout
        return (CONNECT_TIMEOUT, IDLE_READ_TIMEOUT)


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_request_timeout(value: Union[None, str, int, float]) -> Optional[float]:
    """kubectl's ``--request-timeout``: ``0`` (no limit), a bare number of seconds, or a Go duration
    (``500ms``, ``5s``, ``1m30s``). Returns seconds, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        if re.fullmatch(r"\d+", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNIT[m.group(2)]
                pos = m.end()
            if not text or pos != len(text):
                raise UsageError(
                    f"invalid --request-timeout {value!r}",
                    hint="give a number of seconds or a duration with a unit, e.g. 30s, 2m, 500ms; 0 means no limit",
                )
    if seconds < 0:
        raise UsageError(f"invalid --request-timeout {value!r}: must not be negative")
    return seconds or None


def kubeconfig_files(kubeconfig: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> List[str]:
    """The files kubectl would read: ``--kubeconfig`` (must exist), else the existing files named in
    ``KUBECONFIG`` (in order, duplicates once), else ``~/.kube/config`` if it exists."""
    env = os.environ if env is None else env
    if kubeconfig:
        path = os.path.expanduser(kubeconfig)
        if os.path.isdir(path):
            raise UsageError(f"kubeconfig {kubeconfig} is a directory, not a kubeconfig file", where="--kubeconfig")
        if not os.path.exists(path):
            raise UsageError(f"kubeconfig {kubeconfig} does not exist", where="--kubeconfig")
        return [path]
    listed = env.get("KUBECONFIG", "")
    if listed:
        out: List[str] = []
        for p in listed.split(os.pathsep):
            p = os.path.expanduser(p) if p else ""
            if p and p not in out and os.path.isfile(p):
                out.append(p)
        return out
    home = env.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, ".kube", "config")
    return [default] if os.path.isfile(default) else []


def _resolve(base: str, path: Any) -> Any:
    if isinstance(path, str) and path and not os.path.isabs(path):
        return os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    return path


def load_kubeconfig(files: Sequence[str]) -> KubeConfig:
    """Merge kubeconfig files as kubectl does: the first file to define a cluster, user or context
    name wins, the first non-empty ``current-context`` wins; relative file references (certificates,
    keys, token files, an exec command with a path) are resolved against the file that holds them."""
    import yaml

    merged: Dict[str, Any] = {"clusters": [], "users": [], "contexts": [], "current-context": ""}
    seen: Dict[str, set] = {"clusters": set(), "users": set(), "contexts": set()}
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise InputError(f"cannot read kubeconfig: {e.strerror or e}", where=path) from e
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:  # a binary or compressed file: say so, not the codec's words
            line = data[: e.start].count(b"\n") + 1
            raise InputError("invalid kubeconfig: not text (invalid UTF-8)", where=f"{path}:{line}") from e
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else path
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise InputError(f"invalid kubeconfig: {what}", where=where) from e
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise InputError("invalid kubeconfig: not a mapping", where=path)
        base = os.path.dirname(os.path.abspath(path))
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise InputError(f"invalid kubeconfig: {section} is not a list", where=path)
            for e in entries:
                if not isinstance(e, dict) or not e.get("name"):
                    raise InputError(f"invalid kubeconfig: an entry of {section} has no name", where=path)
                if e["name"] in seen[section]:
                    continue
                seen[section].add(e["name"])
                body = dict(e.get(inner) or {})
                if section == "clusters":
                    body["certificate-authority"] = _resolve(base, body.get("certificate-authority"))
                elif section == "users":
                    for key in ("client-certificate", "client-key", "tokenFile"):
                        body[key] = _resolve(base, body.get(key))
                    ex = body.get("exec")
                    if isinstance(ex, dict) and "/" in str(ex.get("command") or ""):
                        body["exec"] = dict(ex, command=_resolve(base, ex["command"]))
                body = {k: v for k, v in body.items() if v is not None}
                merged[section].append({"name": e["name"], inner: body})
        if not merged["current-context"] and doc.get("current-context"):
            merged["current-context"] = str(doc["current-context"])
    return KubeConfig(merged, list(files))


def _select_context(
    kc: KubeConfig, context: Optional[str], cluster: Optional[str], user: Optional[str], namespace: Optional[str]
) -> Tuple[str, Dict[str, Any]]:
    """The context to use after --context/--cluster/--user: (name, {cluster, user, namespace})."""
    contexts = kc.names("contexts")
    if context:
        entry = kc.entry("contexts", context)
        if entry is None:
            raise UsageError(
                f'context "{context}" not found in kubeconfig',
                where=kc.where,
                hint=f"contexts: {', '.join(contexts)}" if contexts else "the kubeconfig has no contexts",
            )
        name = context
    elif kc.config.get("current-context"):
        name = kc.config["current-context"]
        entry = kc.entry("contexts", name)
        if entry is None:
            raise InputError(
                f'current-context "{name}" is not a context in the kubeconfig',
                where=kc.where,
                hint="choose one with --context" + (f" ({', '.join(contexts)})" if contexts else ""),
            )
    elif cluster:
        name, entry = OVERRIDE_CONTEXT, {"context": {}}
    else:
        raise UsageError(
            "the kubeconfig sets no current-context",
            where=kc.where,
            hint="choose one with --context" + (f" ({', '.join(contexts)})" if contexts else ""),
        )
    ctx = dict(entry.get("context") or {})
    if cluster:
        if kc.entry("clusters", cluster) is None:
            raise UsageError(f'cluster "{cluster}" not found in kubeconfig', where=kc.where,
                             hint=f"clusters: {', '.join(kc.names('clusters'))}")  # fmt: skip
        ctx["cluster"] = cluster
    if user:
        if kc.entry("users", user) is None:
            raise UsageError(f'user "{user}" not found in kubeconfig', where=kc.where,
                             hint=f"users: {', '.join(kc.names('users'))}")  # fmt: skip
        ctx["user"] = user
    if namespace:
        ctx["namespace"] = namespace
    if not ctx.get("cluster"):
        raise InputError(f'context "{name}" names no cluster', where=kc.where, hint="give one with --cluster")
    cl = kc.entry("clusters", ctx["cluster"])
    if cl is None:
        raise InputError(f'cluster "{ctx["cluster"]}" of context "{name}" not found in kubeconfig', where=kc.where)
    if not (cl.get("cluster") or {}).get("server"):
        raise InputError(f'cluster "{ctx["cluster"]}" has no server', where=kc.where)
    return name, ctx


def _best_effort(step: Callable[[], object], what: str) -> None:
    """A clean-up step that must never fail a run (the answer is already read): what goes wrong is
    logged at debug level (logger kubectl_svcnet.collect.api), not raised."""
    try:
        step()
    except Exception:  # noqa: BLE001 - any failure of a clean-up step is only worth a debug line
        import logging

        logging.getLogger(__name__).debug("%s failed", what, exc_info=True)


@contextlib.contextmanager
def _client_log() -> Iterator[List[str]]:
    """Keep the client's own error logging (``logging.error`` on the root logger) off stderr: the
    messages are collected for the one error line instead."""
    import logging

    messages: List[str] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.name == "root" and "kubernetes" in (record.pathname or ""):
            messages.append(_one_line(record.getMessage()))
            return False
        return True

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield messages
    finally:
        root.removeFilter(keep)


def _new_configuration() -> Any:
    from kubernetes.client import Configuration

    # type.__call__: old clients hand out a copy of the process-wide default from Configuration().
    return type.__call__(Configuration)


def _retries() -> Any:
    from urllib3.util.retry import Retry

    # No retries (as kubectl: a refused connection or a timeout is reported, not repeated 4 times),
    # and so no "Retrying ..." warnings from urllib3 on stderr.
    return Retry(total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False)


def _make_session(cfg: Any, **kw: Any) -> Session:
    from kubernetes.client import ApiClient

    from kubectl_svcnet import __version__

    cfg.retries = _retries()
    return Session(api=ApiClient(configuration=cfg), server=str(cfg.host),
                   user_agent=f"kubectl-svcnet/{__version__}", **kw)  # fmt: skip


def _in_cluster_possible(env: Mapping[str, str]) -> bool:
    return bool(
        env.get("KUBERNETES_SERVICE_HOST")
        and env.get("KUBERNETES_SERVICE_PORT")
        and os.path.isfile(os.path.join(SERVICE_ACCOUNT_DIR, "token"))
    )


def _connect_in_cluster(env: Mapping[str, str], namespace: Optional[str], **kw: Any) -> Session:
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    cfg = _new_configuration()
    try:
        InClusterConfigLoader(
            token_filename=os.path.join(SERVICE_ACCOUNT_DIR, "token"),
            cert_filename=os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
            environ=env,
        ).load_and_set(cfg)
    except (ConfigException, OSError, ValueError) as e:
        raise ApiError(f"cannot use the pod's service account: {_one_line(e)}", where=SERVICE_ACCOUNT_DIR) from e
    if not namespace:
        namespace = env.get("POD_NAMESPACE") or ""
    if not namespace:
        try:
            with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), encoding="utf-8") as f:
                namespace = f.read().strip()
        except OSError:
            namespace = ""
    return _make_session(cfg, namespace=namespace or "default", in_cluster=True, **kw)


def connect(
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
    cluster: Optional[str] = None,
    user: Optional[str] = None,
    namespace: Optional[str] = None,
    all_namespaces: bool = False,
    request_timeout: Union[None, str, int, float] = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    env: Optional[Mapping[str, str]] = None,
) -> Session:
    """Configure a Session as kubectl would with the same flags. Sends no request (credential
    plugins do run). Raises UsageError for flags that name nothing, InputError for an unreadable
    kubeconfig, ApiError when credentials cannot be obtained."""
    env = os.environ if env is None else env
    timeout = parse_request_timeout(request_timeout)
    if page_size < 1:
        raise UsageError("page size must be at least 1")
    common = dict(all_namespaces=all_namespaces, request_timeout=timeout, page_size=page_size)
    files = kubeconfig_files(kubeconfig, env)
    if not files:
        if _in_cluster_possible(env) and not (context or cluster or user):
            return _connect_in_cluster(env, namespace, **common)
        raise UsageError(
            "no cluster configured: no kubeconfig found",
            where="KUBECONFIG" if env.get("KUBECONFIG") else "~/.kube/config",
            hint="set KUBECONFIG or pass --kubeconfig (or read offline with --snapshot DIR / --from-file)",
        )
    kc = load_kubeconfig(files)
    if not kc.config["contexts"] and not kc.config["clusters"] and not (context or cluster or user):
        if _in_cluster_possible(env):  # kubectl: an empty kubeconfig is no configuration
            return _connect_in_cluster(env, namespace, **common)
    name, ctx = _select_context(kc, context, cluster, user, namespace)
    config = dict(kc.config)
    config["contexts"] = [c for c in config["contexts"] if c["name"] != name] + [{"name": name, "context": ctx}]

    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader

    cfg = _new_configuration()
    try:
        with _client_log() as logged:
            loader = KubeConfigLoader(config_dict=config, active_context=name, config_base_path="")
            loader.load_and_set(cfg)
        user_entry = kc.entry("users", str(ctx.get("user") or "")) or {}
        plugin = (user_entry.get("user") or {}).get("exec") or (user_entry.get("user") or {}).get("auth-provider")
        if plugin and not cfg.api_key.get("BearerToken") and not cfg.cert_file:
            # The client logs a failed credential plugin and carries on without credentials; kubectl stops.
            raise ConfigException(logged[-1] if logged else "the credential plugin gave no credentials")
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
        raise ApiError(
            f'cannot load credentials of user "{ctx.get("user", "")}": {_one_line(e)}',
            where=f'context "{name}"',
        ) from e
    except Exception as e:  # credential plugins (exec, OIDC, cloud providers) fail in their own ways
        raise ApiError(
            f'cannot load credentials of user "{ctx.get("user", "")}": {type(e).__name__}: {_one_line(e)}',
            where=f'context "{name}"',
        ) from e
    return _make_session(
        cfg,
        namespace=str(ctx.get("namespace") or "default"),
        context=None if name == OVERRIDE_CONTEXT else name,
        cluster=ctx.get("cluster"),
        user=ctx.get("user"),
        **common,
    )


# ---------------------------------------------------------------------------------------------
# Errors: every client exception is translated here.


@dataclass(frozen=True)
class _Req:
    verb: str  # list, get, create
    resource: str  # plural, e.g. "pods"
    namespace: Optional[str] = None  # None: cluster-scoped or all namespaces
    name: Optional[str] = None
    namespaced: bool = True

    def __str__(self) -> str:
        what = f'{self.resource} "{self.name}"' if self.name else self.resource
        if self.namespace:
            return f'{self.verb} {what} in namespace "{self.namespace}"'
        if self.namespaced and not self.name and self.verb == "list":
            return f"{self.verb} {what} in all namespaces"
        return f"{self.verb} {what}"

    @property
    def object(self) -> str:
        what = f'{self.resource} "{self.name}"'
        return f'{what} in namespace "{self.namespace}"' if self.namespace else what


def _one_line(e: object) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _api_error(message: str, where: Optional[str] = None, hint: Optional[str] = None, code: int = 0,
               reason: str = "", status: Optional[Dict[str, Any]] = None) -> ApiError:  # fmt: skip
    err = ApiError(message, where=where, hint=hint)
    err.code = code  # type: ignore[attr-defined]
    err.reason = reason  # type: ignore[attr-defined]
    err.status = status  # type: ignore[attr-defined]
    return err


def _status_body(body: Any) -> Optional[Dict[str, Any]]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            return doc
    return None


_RBAC = re.compile(r'User "([^"]*)" cannot (\S+) resource')


def _from_status(code: int, body: Any, req: _Req, session: Session) -> ApiError:
    status = _status_body(body)
    message = _one_line((status or {}).get("message") or "") if status else ""
    reason = str((status or {}).get("reason") or "")
    details = (status or {}).get("details") or {}
    if not message and isinstance(body, (str, bytes)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        message = _one_line(text)[:300]
    kw = dict(code=code, reason=reason, status=status)
    if code == 401:
        who = f'user "{session.user}"' if session.user else "the client"
        cfg = session.api.configuration
        if not (cfg.api_key or cfg.cert_file or cfg.username):
            return _api_error(f"unauthorized: the API server wants credentials and {who} has none",
                              where=session.server, hint="give the kubeconfig's user a token, a client "
                              "certificate or an exec plugin", **kw)  # fmt: skip
        return _api_error(
            f"unauthorized: the API server rejected the credentials of {who}",
            where=session.server,
            hint="the token or client certificate may have expired; check the kubeconfig's user",
            **kw,
        )
    if code == 403:
        m = _RBAC.search(message)
        if m:
            scope = f'in namespace "{req.namespace}"' if req.namespace else (
                "in all namespaces" if req.namespaced and req.verb == "list" else "at the cluster scope")  # fmt: skip
            what = f'{req.resource} "{req.name}"' if req.name else req.resource
            return _api_error(
                f"forbidden: cannot {req.verb} {what} {scope}",
                where="RBAC",
                hint=f"{message}; check with: kubectl auth can-i {req.verb} {req.resource}"
                + (f" -n {req.namespace}" if req.namespace else (" -A" if req.namespaced else "")),
                **kw,
            )
        return _api_error(f"forbidden: {message or req}", where=str(req), **kw)
    if code == 404:
        if details.get("name") or req.name:
            kind = details.get("kind") or req.resource
            group = details.get("group")
            kind = f"{kind}.{group}" if group and "." not in kind else kind
            name = details.get("name") or req.name
            ns = f' in namespace "{req.namespace}"' if req.namespace else ""
            return _api_error(f'not found: {kind} "{name}"{ns}', **kw)
        return _api_error(
            f"not found: the server does not serve {req.resource}", where=str(req), hint=message or None, **kw
        )
    if code == 410:
        return _api_error(f"expired: {message or 'the list changed too much while it was read'}", where=str(req),
                          **kw)  # fmt: skip
    if code == 422:
        return _api_error(f"invalid: {message}", where=str(req), **kw)
    if code == 429:
        return _api_error(f"too many requests: {message}", where=str(req), **kw)
    if code == 504 or reason == "Timeout":
        return _api_error(f"timeout: {message}", where=str(req), **kw)
    if code >= 500:
        return _api_error(f"server error ({code}): {message or 'no message'}", where=str(req), **kw)
    label = re.sub(r"(?<!^)([A-Z])", r" \1", reason).lower() if reason else "error"
    return _api_error(f"{label} ({code}): {message or 'no message'}", where=str(req), **kw)


def _from_transport(e: BaseException, req: _Req, session: Session) -> ApiError:
    """urllib3 / socket / TLS failures -> one line with the server URL."""
    import urllib3.exceptions as ux

    cause: BaseException = e
    while isinstance(cause, ux.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    server = session.server
    if isinstance(cause, ux.ReadTimeoutError) or (isinstance(cause, ux.TimeoutError) and "read" in str(cause)):
        limit = f"{session.request_timeout:g}s" if session.request_timeout else f"{IDLE_READ_TIMEOUT:g}s"
        return _api_error(
            f"timeout: the API server did not answer within {limit}",
            where=f"{req}, {server}",
            hint="raise --request-timeout" if session.request_timeout else None,
        )
    if isinstance(cause, ux.ProxyError):
        return _api_error(f"proxy error: {_one_line(cause.original_error or cause)}", where=server)
    # Before timeouts: urllib3's NewConnectionError is a subclass of ConnectTimeoutError.
    if isinstance(cause, (ux.NewConnectionError, ConnectionError)):
        text = _one_line(cause)
        low = text.lower()
        if "refused" in low:
            what = "connection refused"
        elif "name or service not known" in low or "nodename nor servname" in low or "resolve" in low:
            what = "cannot resolve the server's name"
        elif "unreachable" in low:
            what = "network unreachable"
        elif "timed out" in low:
            what = f"no answer within {session.request_timeout or CONNECT_TIMEOUT:g}s"
        else:
            what = re.sub(r"^.*?: ", "", text)
        return _api_error(f"cannot connect to the API server: {what}", where=server,
                          hint="is the cluster running, and is this the right context?")  # fmt: skip
    if isinstance(cause, (ux.ConnectTimeoutError, ux.TimeoutError)):
        limit = session.request_timeout or CONNECT_TIMEOUT
        return _api_error(f"timeout: cannot connect to the API server within {limit:g}s", where=server)
    if isinstance(cause, ux.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(cause) or "SSL" in type(cause).__name__:
        return _api_error(f"TLS error: {_tls_reason(cause)}", where=server,
                          hint="check the cluster's certificate-authority in the kubeconfig")  # fmt: skip
    if isinstance(cause, (ux.ProtocolError, ux.DecodeError, ux.HTTPError, OSError)):
        text = _one_line(cause)
        if "RemoteDisconnected" in text or "without response" in text:
            text = "the server closed the connection without an answer"
        elif "reset by peer" in text.lower():
            text = "the connection was reset"
        return _api_error(f"connection to the API server failed: {text}", where=f"{req}, {server}")
    return _api_error(f"request failed: {type(cause).__name__}: {_one_line(cause)}", where=f"{req}, {server}")


def _tls_reason(e: BaseException) -> str:
    text = _one_line(e)
    m = re.search(r"certificate verify failed: ([^()\]]+)", text)
    if m:
        return f"certificate verify failed: {m.group(1).strip()}"
    m = re.search(r"\[SSL: ([A-Z_]+)\]", text)
    if m:
        return m.group(1).lower().replace("_", " ")
    if "doesn't match" in text or "hostname" in text.lower():
        return re.sub(r"^.*?(hostname|[Hh]ost)", r"\1", text)[:200]
    return re.sub(r"^SSLError ", "", text)[:200]


def _request(
    session: Session,
    req: _Req,
    method: str,
    path: str,
    query: Optional[Sequence[Tuple[str, str]]] = None,
    body: Optional[Dict[str, Any]] = None,
    text: bool = False,
) -> Any:
    """One request through the client's REST layer (its TLS, proxy and credential settings; the
    bearer token refreshed by exec/OIDC plugins). Returns the decoded wire JSON (`text`: the body as
    text, e.g. a pod's log); every failure becomes an ApiError naming `req`.

    The REST layer, not the typed API methods: no model classes (kubectl's exact JSON, and 10x faster
    than deserialising into models and sanitising back), no argument validation (kubernetes >= 35
    builds a pydantic validator per method on first use, and rejects fields its models lack), and the
    same behaviour from client 24 on."""
    import urllib3.exceptions as ux
    from kubernetes.client.exceptions import ApiException, OpenApiException

    cfg = session.api.configuration
    url = cfg.host + path + ("?" + urlencode(list(query)) if query else "")
    accept = "text/plain, application/json;q=0.9" if text else "application/json"
    headers = {"Accept": accept, "Accept-Encoding": "gzip", "User-Agent": session.user_agent}
    if body is not None:
        headers["Content-Type"] = "application/json"
    resp: Any = None
    try:
        auth = (cfg.auth_settings() or {}).get("BearerToken") or {}
        if auth.get("value"):
            headers["Authorization"] = auth["value"]
        resp = session.api.rest_client.request(method, url, headers=headers, body=body,
                                               _request_timeout=session._timeout)  # fmt: skip
        code = int(getattr(resp, "status", 200) or 200)
        raw = resp.read() if getattr(resp, "data", None) is None and hasattr(resp, "read") else resp.data
    except ApiException as e:  # clients < 35 raise for non-2xx; all wrap TLS failures as status 0
        if not e.status:
            raise _api_error(f"TLS error: {_tls_reason(Exception(e.reason))}", where=session.server,
                             hint="check the cluster's certificate-authority in the kubeconfig") from e  # fmt: skip
        raise _from_status(int(e.status), e.body, req, session) from e
    except (ux.HTTPError, OSError) as e:
        raise _from_transport(e, req, session) from e
    except (OpenApiException, ValueError, TypeError) as e:
        raise _api_error(f"invalid request: {_one_line(e)[:300]}", where=str(req)) from e
    finally:
        inner = getattr(resp, "response", None) if resp is not None else None
        if inner is not None and hasattr(inner, "release_conn"):
            _best_effort(inner.release_conn, "releasing an API connection")
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    raw = raw or b""
    if not 200 <= code <= 299:
        raise _from_status(code, raw, req, session)
    if text:
        return raw.decode("utf-8", "replace")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise _api_error(
            f"the API server's answer is not JSON: {_one_line(raw[:80].decode('utf-8', 'replace'))!r}",
            where=f"{req}, {session.server}",
        ) from e
    if not isinstance(doc, dict):
        raise _api_error("the API server's answer is not a JSON object", where=f"{req}, {session.server}")
    return doc


# ---------------------------------------------------------------------------------------------
# Reads


def _spec(resource: str) -> Tuple[str, str, bool]:
    try:
        return _RESOURCES[resource]
    except KeyError:
        raise ValueError(f"unknown resource {resource!r} (known: {', '.join(sorted(_RESOURCES))})") from None


def _path(resource: str, namespace: Optional[str] = None, name: Optional[str] = None) -> str:
    api_version, _, namespaced = _spec(resource)
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced and namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{resource.split('/')[0]}"  # "servicecidrs/v1beta1": the plural, another version
    if name:
        path += f"/{quote(name, safe='')}"
    return path


def list_objects(
    session: Session,
    resource: str,
    namespace: Optional[str] = None,
    label_selector: Optional[str] = None,
    field_selector: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Every object of `resource` (plural: services, endpointslices, nodes, pods, endpoints, configmaps,
    namespaces, servicecidrs) in `namespace` (None: all namespaces), page by page. Items carry
    apiVersion and kind, as kubectl prints them. A continue token that expires (410) restarts the list,
    at most MAX_LIST_RESTARTS times, so the result never holds an object twice."""
    api_version, kind, namespaced = _spec(resource)
    ns = namespace if namespaced else None
    req = _Req("list", resource, ns, namespaced=namespaced)
    path = _path(resource, ns)
    selectors: List[Tuple[str, str]] = []
    if label_selector:
        selectors.append(("labelSelector", label_selector))
    if field_selector:
        selectors.append(("fieldSelector", field_selector))
    restarts = 0
    items: List[Dict[str, Any]] = []
    token: Optional[str] = None
    while True:
        query = selectors + [("limit", str(session.page_size))] + ([("continue", token)] if token else [])
        try:
            doc = _request(session, req, "GET", path, query)
        except ApiError as e:
            if token and getattr(e, "code", 0) == 410:
                restarts += 1
                if restarts > MAX_LIST_RESTARTS:
                    raise _api_error(
                        f"the list of {resource} kept changing: its continue token expired {restarts} times",
                        where=str(req),
                        hint="try again, or with a larger page size",
                        code=410,
                        reason=getattr(e, "reason", ""),
                        status=getattr(e, "status", None),
                    ) from e
                items, token = [], None
                continue
            raise
        list_kind = str(doc.get("kind") or "")
        item_kind = list_kind[: -len("List")] if list_kind.endswith("List") and list_kind != "List" else kind
        item_version = str(doc.get("apiVersion") or api_version)
        for item in doc.get("items") or []:
            if isinstance(item, dict):
                items.append({"apiVersion": item_version, "kind": item_kind, **item})
        token = (doc.get("metadata") or {}).get("continue") or None
        if not token:
            return items


def get_object(session: Session, resource: str, name: str, namespace: Optional[str] = None) -> Dict[str, Any]:
    """One object by name (`namespace`, default the session's, is ignored for cluster-scoped resources)."""
    api_version, kind, namespaced = _spec(resource)
    ns = (namespace or session.namespace) if namespaced else None
    doc = _request(session, _Req("get", resource, ns, name, namespaced), "GET", _path(resource, ns, name))
    return {"apiVersion": api_version, "kind": kind, **doc}


def get_service(session: Session, name: str, namespace: Optional[str] = None) -> Dict[str, Any]:
    return get_object(session, "services", name, namespace)


def get_configmap(session: Session, namespace: str, name: str) -> Dict[str, Any]:
    return get_object(session, "configmaps", name, namespace)


def list_kube_proxy_pods(session: Session, namespace: str = "kube-system") -> List[Dict[str, Any]]:
    """kube-proxy's pods (label k8s-app=kube-proxy); each pod's ``spec.nodeName`` is its node."""
    return list_objects(session, "pods", namespace, label_selector=KUBE_PROXY_SELECTOR)


def kube_proxy_pods_by_node(session: Session, namespace: str = "kube-system") -> Dict[str, Dict[str, Any]]:
    """node name -> its kube-proxy pod (a Running one when a node has several)."""
    out: Dict[str, Dict[str, Any]] = {}
    for pod in list_kube_proxy_pods(session, namespace):
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (node not in out or (pod.get("status") or {}).get("phase") == "Running"):
            out[node] = pod
    return out


def pod_logs(
    session: Session,
    namespace: str,
    pod: str,
    container: Optional[str],
    tail_lines: Optional[int],
    since_seconds: Optional[int] = None,
    limit_bytes: Optional[int] = None,
) -> str:
    """The last `tail_lines` lines of a container's log (GET .../pods/<pod>/log), as text. Failures
    are ApiErrors like every other read: a 403 names ``pods/log``, a 404 the pod, a 400 the
    apiserver's reason (no such container, container not started, ...)."""
    query: List[Tuple[str, str]] = []
    if container:
        query.append(("container", container))
    if tail_lines is not None:
        query.append(("tailLines", str(int(tail_lines))))
    if since_seconds is not None:
        query.append(("sinceSeconds", str(int(since_seconds))))
    if limit_bytes is not None:
        query.append(("limitBytes", str(int(limit_bytes))))
    req = _Req("get", "pods/log", namespace, pod)
    return _request(session, req, "GET", _path("pods", namespace, pod) + "/log", query, text=True)


# What proxymode.py reads besides Services, EndpointSlices, Nodes and Pods, each optional: kube-proxy's
# and its replacements' DaemonSets, ConfigMaps (kube-proxy's mode; Cilium's kube-proxy-replacement;
# Calico's kubernetes-services-endpoint), Calico's FelixConfiguration (bpfEnabled), and the agents' pods.
PROXY_DAEMONSET_NAMESPACES = ("kube-system", "calico-system")
PROXY_CONFIGMAPS = (
    ("kube-system", "kube-proxy"),
    ("kube-system", "cilium-config"),
    ("kube-system", "kubernetes-services-endpoint"),
    ("tigera-operator", "kubernetes-services-endpoint"),
)
PROXY_POD_SELECTOR = "k8s-app in (kube-proxy,cilium,calico-node,kube-router)"


def read_proxy_objects(session: Session, warnings: List[str], pods: bool = True) -> List[Dict[str, Any]]:
    """The objects that say which service proxy runs where (see proxymode.py). Every read is optional:
    a 404 (not there, or the server does not serve the kind) is skipped, a 403 or any other failure
    is one warning for all of them together; nothing here fails a run. `pods`: also list the agents'
    pods in kube-system and calico-system (not needed when every namespace's pods were read)."""
    objects: List[Dict[str, Any]] = []
    refused: List[str] = []

    def attempt(what: str, read: Callable[[], Any]) -> None:
        try:
            got = read()
        except ApiError as e:
            code = getattr(e, "code", 0)
            if code == 404:
                return
            refused.append(f"{what} ({'forbidden' if code == 403 else e.message})")
            return
        objects.extend(got if isinstance(got, list) else [got])

    for ns in PROXY_DAEMONSET_NAMESPACES:
        attempt(f"daemonsets in {ns}", lambda ns=ns: list_objects(session, "daemonsets", ns))
    for ns, name in PROXY_CONFIGMAPS:
        attempt(f"configmap {ns}/{name}", lambda ns=ns, name=name: get_object(session, "configmaps", name, ns))
    attempt("felixconfiguration default", lambda: get_object(session, "felixconfigurations", "default"))
    if pods:
        for ns in PROXY_DAEMONSET_NAMESPACES:
            attempt(f"pods in {ns}",
                    lambda ns=ns: list_objects(session, "pods", ns, label_selector=PROXY_POD_SELECTOR))  # fmt: skip
    if refused:
        warnings.append(f"not read: {', '.join(refused)}: which service proxy runs where is judged without them")
    return objects


def server_version(session: Session) -> Dict[str, Any]:
    """GET /version: {major, minor, gitVersion, platform, ...}."""
    return _request(session, _Req("get", "version", namespaced=False), "GET", "/version")


def create_service_dry_run(session: Session, body: Dict[str, Any], namespace: Optional[str] = None) -> Dict[str, Any]:
    """POST a Service with ``dryRun=All``: the server validates and allocates but stores nothing.
    Returns the object it would have created; a refusal raises ApiError whose ``status`` is the
    server's Status, e.g. message "... The range of valid IPs is 10.96.0.0/12" (code 422, Invalid)."""
    meta = body.get("metadata") or {}
    ns = namespace or meta.get("namespace") or session.namespace
    req = _Req("create", "services", ns, meta.get("name") or meta.get("generateName") or None)
    return _request(session, req, "POST", _path("services", ns), [("dryRun", "All")], body)


def read_cluster(
    session: Session,
    namespace: Optional[str] = None,
    service: Optional[str] = None,
    pods: bool = True,
    proxy: bool = False,
) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The objects a map or trace needs: (objects, warnings).

    `namespace` None reads every namespace; `service` (in `namespace`, default the session's) reads
    that one Service (GET) and only its EndpointSlices (label kubernetes.io/service-name). Services,
    endpoints and nodes are required: their failures raise ApiError. Pods only name the backends: a 403
    on them becomes a warning. A server without discovery.k8s.io/v1 is read through core/v1 Endpoints.
    `proxy` also reads what tells which service proxy runs on each node (`read_proxy_objects`).
    """
    warnings: List[str] = []
    if service and not namespace:
        namespace = session.namespace
    objects: List[Dict[str, Any]] = []
    if service:
        objects.append(get_service(session, service, namespace))
    else:
        objects.extend(list_objects(session, "services", namespace))
    objects.extend(_read_endpoints(session, namespace, service, warnings))
    objects.extend(list_objects(session, "nodes"))
    all_pods = False
    if pods:
        try:
            objects.extend(list_objects(session, "pods", namespace))
            all_pods = namespace is None
        except ApiError as e:
            if getattr(e, "code", 0) != 403:
                raise
            warnings.append(f"{e.message}: backends are shown unnamed")
    if proxy:
        seen = {(o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
                for o in objects}  # fmt: skip
        for o in read_proxy_objects(session, warnings, pods=not all_pods):
            k = (o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
            if k not in seen:  # kube-system's pods, when that is the namespace read
                seen.add(k)
                objects.append(o)
    return objects, warnings


def _read_endpoints(
    session: Session, namespace: Optional[str], service: Optional[str], warnings: List[str]
) -> List[Dict[str, Any]]:
    if session.endpoint_kind != "Endpoints":
        selector = f"{SERVICE_NAME_LABEL}={service}" if service else None
        try:
            out = list_objects(session, "endpointslices", namespace, label_selector=selector)
            session.endpoint_kind = "EndpointSlice"
            return out
        except ApiError as e:
            # A server without discovery.k8s.io/v1 answers 404 to the list itself (not about an object).
            if getattr(e, "code", 0) != 404:
                raise
            session.endpoint_kind = "Endpoints"
            warnings.append("the API server has no discovery.k8s.io/v1 EndpointSlices: read core/v1 Endpoints")
    if service:
        try:
            return [get_object(session, "endpoints", service, namespace)]
        except ApiError as e:
            if getattr(e, "code", 0) == 404:
                return []  # a Service without endpoints
            raise
    return list_objects(session, "endpoints", namespace)


def kubectl_list(items: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    """Objects wrapped as ``kubectl get -o json`` prints several: a v1 List (for snapshot files)."""
    return {"apiVersion": "v1", "items": list(items), "kind": "List", "metadata": {"resourceVersion": ""}}


def translate_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for later live-path code that calls the client itself: a `kubernetes` or `urllib3`
    exception that escapes becomes an ApiError (a safety net; the functions above translate precisely)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except SvcnetError:
            raise
        except Exception as e:
            if (type(e).__module__ or "").startswith(("kubernetes", "urllib3")):
                raise _api_error(f"API request failed: {type(e).__name__}: {_one_line(e)[:300]}") from e
            raise

    return wrapper


# ---------------------------------------------------------------------------------------------
# Debug pods (`--via pod`, collect/debugpod.py): create, wait for Running, exec, delete.
#
# The pod itself (its manifest, its name, when it is deleted) is debugpod.py's business; these
# functions only speak to the API and translate its answers, like the reads above. Exec goes through
# `kubernetes.stream` (a websocket GET of pods/<name>/exec, channels v5/v4.channel.k8s.io): byte 1 is
# stdout, 2 stderr, 3 the exec's Status (exit code in details.causes[reason=ExitCode]).

POD_POLL_SECONDS = 0.5
EXEC_READ_SLICE = 0.5  # seconds per wait for websocket frames: how soon a cancel or a timeout is seen
# Container states that will not become Running by waiting (kubelet's reasons).
_STUCK = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
          "CreateContainerError", "RunContainerError", "CrashLoopBackOff")  # fmt: skip
_NOT_FOUND_EXEC = ("executable file not found", "no such file or directory")


@dataclass
class ExecResult:
    """What one exec gave: stdout (bytes when the client streams binary, else text), stderr, exit
    code (None when the stream ended without a Status), and whether it was stopped at its timeout."""

    stdout: Union[bytes, str]
    stderr: str
    exit_code: Optional[int]
    timed_out: bool = False
    cancelled: bool = False


def create_pod(session: Session, namespace: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """POST a Pod. A PodSecurity refusal becomes one line that says which namespace refused and what
    to do: ``forbidden: pods "x" is forbidden: violates PodSecurity ... (namespace "ns"); use
    --pod-namespace with a privileged namespace``."""
    name = str((body.get("metadata") or {}).get("name") or "")
    req = _Req("create", "pods", namespace, name or None)
    try:
        return _request(session, req, "POST", _path("pods", namespace), None, body)
    except ApiError as e:
        message = _one_line(((getattr(e, "status", None) or {}).get("message")) or "")
        if getattr(e, "code", 0) == 403 and "PodSecurity" in message:
            raise _api_error(
                f'forbidden: {message} (namespace "{namespace}"); use --pod-namespace with a privileged namespace',
                code=403, reason=getattr(e, "reason", ""), status=getattr(e, "status", None),
            ) from e  # fmt: skip
        raise


def delete_pod(session: Session, namespace: str, name: str, grace_period_seconds: int = 0) -> bool:
    """DELETE a Pod now (``gracePeriodSeconds``, background propagation). False when it was already
    gone (404); any other refusal raises ApiError."""
    req = _Req("delete", "pods", namespace, name)
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": int(grace_period_seconds),
            "propagationPolicy": "Background"}  # fmt: skip
    query = [("gracePeriodSeconds", str(int(grace_period_seconds)))]
    try:
        _request(session, req, "DELETE", _path("pods", namespace, name), query, body)
    except ApiError as e:
        if getattr(e, "code", 0) == 404:
            return False
        raise
    return True


def _pod_problem(pod: Dict[str, Any]) -> Optional[str]:
    """Why a pod will not become Running by waiting longer (None: it still may)."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        why = status.get("reason") or ""
        msg = status.get("message") or ""
        return f"the pod ended ({phase}{': ' + why if why else ''}{': ' + _one_line(msg) if msg else ''})"
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK:
            msg = _one_line(waiting.get("message") or "")
            return f"container {c.get('name')}: {waiting['reason']}{': ' + msg if msg else ''}"
    return None


def wait_pod_running(
    session: Session,
    namespace: str,
    name: str,
    timeout: float,
    cancelled: Optional[Callable[[], bool]] = None,
    poll: float = POD_POLL_SECONDS,
) -> Dict[str, Any]:
    """GET the pod until it is Running (returns it), it cannot become Running (image pull failure, the
    kubelet refused it: ApiError), `timeout` seconds pass (ApiError "timeout: ... still Pending") or
    `cancelled()` says to stop (ApiError reason "Cancelled")."""
    import time

    deadline = time.monotonic() + timeout
    req = _Req("get", "pods", namespace, name)
    phase = "unknown"
    while True:
        if cancelled is not None and cancelled():
            raise _api_error(f'cancelled while waiting for pod "{name}" to start', reason="Cancelled")
        pod = _request(session, req, "GET", _path("pods", namespace, name))
        status = pod.get("status") or {}
        phase = str(status.get("phase") or "Pending")
        if phase == "Running":
            return pod
        problem = _pod_problem(pod)
        if problem:
            raise _api_error(f'pod "{name}" in namespace "{namespace}" cannot run: {problem}')
        left = deadline - time.monotonic()
        if left <= 0:
            waiting = ""
            for c in status.get("containerStatuses") or []:
                reason = ((c.get("state") or {}).get("waiting") or {}).get("reason")
                waiting = f", container {c.get('name')}: {reason}" if reason else waiting
            cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
                         and c.get("status") == "False"), None)  # fmt: skip
            if cond:
                waiting += f", {_one_line(cond.get('message') or cond.get('reason') or 'not scheduled')}"
            raise _api_error(
                f'timeout: pod "{name}" in namespace "{namespace}" is still {phase} after {timeout:g}s{waiting}',
                reason="Timeout",
            )
        time.sleep(min(poll, left))


def exec_supports_binary() -> bool:
    """True when this client's `kubernetes.stream` can hand over stdout as bytes (``binary=True``,
    kubernetes >= 30); older clients decode every frame as UTF-8, which compressed dumps do not survive."""
    import inspect

    from kubernetes.stream import ws_client

    return "binary" in inspect.signature(ws_client.WSClient.__init__).parameters


def _exec_status(raw: Union[bytes, str]) -> Tuple[Optional[int], str]:
    """(exit code, message) from the exec's Status on channel 3. A program the container does not
    have is exit 127, as a shell says; another failure to start is 126."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        doc = json.loads(text)
    except ValueError:
        return (None, _one_line(text)[:300]) if text.strip() else (None, "")
    if not isinstance(doc, dict):
        return None, _one_line(text)[:300]
    if doc.get("status") == "Success":
        return 0, ""
    message = _one_line(doc.get("message") or "")
    if doc.get("reason") == "NonZeroExitCode":
        for cause in (doc.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message")), ""
                except (TypeError, ValueError):
                    break
    if any(s in message.lower() for s in _NOT_FOUND_EXEC):
        return 127, message
    return 126, message or "exec failed"


def _exec_open_error(e: BaseException, req: _Req, session: Session) -> ApiError:
    """`kubernetes.stream` wraps every failure to open the websocket as ApiException(status=0); the
    websocket client's own exception (its handshake status and body) is the context."""
    cause = e.__context__ if e.__context__ is not None else e
    code = getattr(cause, "status_code", None)
    if isinstance(code, int) and code:
        body = getattr(cause, "resp_body", None)
        m = _RBAC.search(_one_line(((_status_body(body) or {}).get("message")) or ""))
        if code == 403 and m:  # a websocket exec is a GET: name the verb the server checked (get, or create)
            req = _Req(m.group(2), req.resource, req.namespace, req.name, req.namespaced)
        return _from_status(code, body, req, session)
    text = _one_line(getattr(e, "reason", None) or cause)
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in type(cause).__name__:
        return _api_error(f"TLS error: {_tls_reason(cause)}", where=session.server)
    if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
        return _from_transport(cause, req, session)
    return _api_error(f"exec failed: {text[:300]}", where=f"{req}, {session.server}")


def exec_pod(
    session: Session,
    namespace: str,
    name: str,
    container: str,
    argv: Sequence[str],
    timeout: float,
    max_output: int,
    opened: Optional[Callable[[Any], None]] = None,
) -> ExecResult:
    """Run `argv` (an argv list: no shell) in a running pod's container over the pods/exec websocket,
    within `timeout` seconds. `opened(handle)` is called with the open stream, so another thread can
    stop it with `close_exec(handle)` (then ``cancelled`` is set). Output beyond `max_output` bytes is
    an ApiError. Failing to open the stream raises ApiError (403 names pods/exec)."""
    import time

    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException, OpenApiException

    req = _Req("create", "pods/exec", namespace, name)
    binary = exec_supports_binary()
    kw: Dict[str, Any] = dict(command=[str(a) for a in argv], container=container, stdin=False, stdout=True,
                              stderr=True, tty=False, _preload_content=False)  # fmt: skip
    if binary:
        kw["binary"] = True
    from kubernetes.stream import stream

    try:
        ws = stream(CoreV1Api(session.api).connect_get_namespaced_pod_exec, name, namespace, **kw)
    except ApiException as e:
        if isinstance(e.__context__, (KeyboardInterrupt, SystemExit)):
            raise e.__context__ from None  # the client turns a Ctrl-C while connecting into an ApiException
        raise _exec_open_error(e, req, session) from e
    except (OpenApiException, ValueError, TypeError) as e:
        raise _api_error(f"invalid request: {_one_line(e)[:300]}", where=str(req)) from e
    if opened is not None:
        opened(ws)
    out: Union[bytearray, List[str]] = bytearray() if binary else []
    err: List[str] = []
    size = 0
    status: Union[bytes, str] = b"" if binary else ""
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            try:
                open_ = ws.is_open()
                if open_:
                    ws.update(timeout=max(0.0, min(EXEC_READ_SLICE, deadline - time.monotonic())))
            except Exception as e:  # the socket was shut (close_exec) or the server went away
                if getattr(ws, "_svcnet_cancelled", False):
                    break
                raise _api_error(f"exec stream failed: {_one_line(e)[:200]}", where=f"{req}, {session.server}") from e
            for channel, sink in ((1, out), (2, err), (3, None)):
                data = ws._channels.pop(channel, None)  # what update() buffered; read_channel would poll again
                if not data:
                    continue
                if sink is None:
                    status += data
                elif channel == 1:
                    size += len(data)
                    if size > max_output:
                        raise _api_error(f"{' '.join(argv[:1])} printed more than {max_output} bytes; stopped",
                                         where=str(req))  # fmt: skip
                    if isinstance(out, bytearray):
                        out.extend(data)
                    else:
                        out.append(data)
                else:
                    err.append(data.decode("utf-8", "replace") if isinstance(data, bytes) else data)
            if getattr(ws, "_svcnet_cancelled", False) or not ws.is_open():
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
    finally:
        close_exec(ws, cancel=False)
    code, message = _exec_status(status) if status else (None, "")
    stderr = "".join(err)
    if message and code not in (0, None):
        stderr = (stderr + ("\n" if stderr and not stderr.endswith("\n") else "") + message) if stderr else message
    stdout: Union[bytes, str] = bytes(out) if isinstance(out, bytearray) else "".join(out)
    return ExecResult(stdout, stderr, code, timed_out=timed_out, cancelled=getattr(ws, "_svcnet_cancelled", False))


def close_exec(handle: Any, cancel: bool = True) -> None:
    """Close an exec stream from `exec_pod` (from any thread; `cancel`: the reader stops and says so)."""
    if handle is None:
        return
    if cancel:
        handle._svcnet_cancelled = True
    sock = getattr(handle, "sock", None)
    try:
        if cancel and sock is not None:
            sock.shutdown()  # abrupt: unblocks a reader in another thread, no close handshake to wait for
        else:
            handle.close(timeout=1)
    except Exception:  # noqa: BLE001 - closing is best effort: the server ends the exec with the stream
        handle._connected = False
