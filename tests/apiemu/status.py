"""Status bodies exactly as kube-apiserver writes them (k8s.io/apimachinery/pkg/api/errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from tests.apiemu.server import Resource

# k8s.io/apiserver/pkg/storage/etcd3: inconsistentContinue
EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - "
    "objects that were created, modified, or deleted between the time the first chunk was returned and "
    "now may show up in the list."
)


def status(code: int, reason: str, message: str, details: Optional[Dict[str, Any]] = None,
           metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:  # fmt: skip
    """metav1.Status, fields in the apiserver's order (details only when set)."""
    out: Dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": metadata or {}, "status": "Failure",
                           "message": message, "reason": reason}  # fmt: skip
    if details is not None:
        out["details"] = details
    out["code"] = code
    return out


def _details(res: Resource, name: str = "", **extra: Any) -> Dict[str, Any]:
    d: Dict[str, Any] = {}
    if name:
        d["name"] = name
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural
    d.update(extra)
    return d


def not_found(res: Resource, name: str) -> Dict[str, Any]:
    """errors.NewNotFound: `services "x" not found`."""
    return status(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def path_not_found() -> Dict[str, Any]:
    """What the apiserver's not-found handler answers for a path it does not serve (an unknown group)."""
    return status(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(res: Resource, name: str) -> Dict[str, Any]:
    return status(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', _details(res, name))


def forbidden(res: Resource, name: str, user: str, verb: str, namespace: str) -> Dict[str, Any]:
    """errors.NewForbidden with RBAC's reason, as the authorization filter writes it."""
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    why = f'User "{user}" cannot {verb} resource "{res.plural}" in API group "{res.group}" {scope}'
    subject = f'{res.qualified} "{name}"' if name else res.qualified
    return status(403, "Forbidden", f"{subject} is forbidden: {why}", _details(res, name))


def pod_forbidden(name: str, why: str) -> Dict[str, Any]:
    return status(403, "Forbidden", f'pods "{name}" is forbidden: {why}', {"name": name, "kind": "pods"})


def unauthorized() -> Dict[str, Any]:
    return status(401, "Unauthorized", "Unauthorized")


def internal_error(message: str) -> Dict[str, Any]:
    """errors.NewInternalError."""
    return status(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


def bad_request(message: str) -> Dict[str, Any]:
    return status(400, "BadRequest", message)


def method_not_supported(res: Resource, action: str) -> Dict[str, Any]:
    return status(405, "MethodNotAllowed", f'{action} is not supported on resources of kind "{res.qualified}"',
                  _details(res))  # fmt: skip


def invalid(kind: str, name: str, causes: List[Tuple[str, str, str]]) -> Dict[str, Any]:
    """errors.NewInvalid: causes are (field, "Invalid value: ...: detail" body, cause type)."""
    agg = [f"{f}: {body}" for f, body, _ in causes]
    text = agg[0] if len(agg) == 1 else "[" + ", ".join(agg) + "]"
    return status(422, "Invalid", f'{kind} "{name}" is invalid: {text}', {
        "name": name, "kind": kind,
        "causes": [{"reason": t, "message": body, "field": f} for f, body, t in causes],
    })  # fmt: skip
