"""Where a monitor's private key lives between commands.

First choice: a Secret in the pod's namespace, owned by the pod (``ownerReferences`` with its uid),
so it disappears with the pod and RBAC on Secrets decides who may use the monitor. It holds only
``subject`` and ``private-key.pem``. The monitor's env names it in ``KUBECTL_DOTNET_MONITOR_KEY_SECRET``.

When the Secret cannot be created (no permission, quota, webhook...), the key goes to a file only
the current user can read: ``$XDG_CONFIG_HOME/kubectl-dotnet-monitor/keys/<server-hash>/<namespace>/
<pod-uid>/<container>.json`` (directories 0700, file 0600), and the returned ``KeyLocation`` says
so, for the CLI to tell the user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubectl_dotnet_monitor.errors import (
    ConfigError,
    ForbiddenError,
    Interrupted,
    NotFoundError,
    NotReadyError,
    OutputError,
    PluginError,
)
from kubectl_dotnet_monitor.inject.apikey import ApiKey, api_key_from_pem
from kubectl_dotnet_monitor.inject.spec import (
    KEY_SECRET_ENV,
    PUBLIC_KEY_ENV,
    SUBJECT_ENV,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubectl-dotnet-monitor"
CONTAINER_ANNOTATION = "kubectl-dotnet-monitor/container"
SUBJECT_KEY = "subject"
PRIVATE_KEY_KEY = "private-key.pem"
_SECRET_INFIX = "-dotnet-monitor-"
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_SUFFIX_LENGTH = 5
_MAX_NAME = 253
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CREATE_ATTEMPTS = 3


@dataclass(frozen=True)
class KeyLocation:
    """Where ``store_private_key`` put the key: a Secret, or (fallback) a local file."""

    namespace: str
    secret_name: str | None = None
    path: str | None = None
    fallback_reason: str | None = None  # why the Secret could not be created

    @property
    def in_cluster(self) -> bool:
        """True when the key is in a Secret (anyone allowed to read it can use the monitor)."""
        return self.secret_name is not None

    def describe(self) -> str:
        """One line for the user."""
        if self.secret_name:
            return f"the monitor's private key is in Secret {self.namespace}/{self.secret_name} (owned by the pod)"
        return (
            f"the monitor's private key could not be stored in a Secret ({self.fallback_reason}); it is "
            f"kept in {self.path}, so only this user on this machine can use the monitor"
        )


def key_secret_name(pod_name: str, suffix: str | None = None) -> str:
    """``<pod>-dotnet-monitor-<suffix>``: a valid DNS subdomain name of at most 253 characters."""
    suffix = suffix or "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(_SUFFIX_LENGTH))
    tail = f"{_SECRET_INFIX}{suffix}"
    prefix = pod_name[: _MAX_NAME - len(tail)].rstrip(".-")
    return f"{prefix}{tail}"


def local_key_path(
    server: str, namespace: str, pod_uid: str, container_name: str, env: Mapping[str, str] | None = None
) -> Path:
    """The fallback file for one monitor (not created here)."""
    env = os.environ if env is None else env
    base = Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config")
    server_hash = hashlib.sha256(server.encode("utf-8")).hexdigest()[:16]
    parts = [_safe_component(p) for p in (namespace, pod_uid, container_name)]
    return base / "kubectl-dotnet-monitor" / "keys" / server_hash / parts[0] / parts[1] / f"{parts[2]}.json"


def store_private_key(
    client: Any,
    pod: dict,
    container_name: str,
    key: ApiKey,
    *,
    server: str | None = None,
    env: Mapping[str, str] | None = None,
) -> KeyLocation:
    """Keep ``key`` for the monitor ``container_name`` of ``pod``: a pod-owned Secret, else a file.

    ``server`` (default: the client's) only keys the fallback directory. Raises ``OutputError``
    when both the Secret and the file fail; ``Interrupted`` passes through.
    """
    meta = pod.get("metadata") or {}
    namespace, pod_name, pod_uid = meta.get("namespace") or "default", meta.get("name"), meta.get("uid")
    reason: str
    for _ in range(_CREATE_ATTEMPTS):
        name = key_secret_name(pod_name)
        try:
            client.post(f"/api/v1/namespaces/{namespace}/secrets", _secret_body(pod, name, container_name, key))
            return KeyLocation(namespace=namespace, secret_name=name)
        except Interrupted:
            raise
        except PluginError as exc:
            if getattr(exc, "status", None) == 409:  # name taken (vanishingly rare): another suffix
                reason = "a Secret with the generated name already exists"
                continue
            reason = _short(exc)
            break

    path = local_key_path(server or _server_of(client), namespace, pod_uid or "unknown-uid", container_name, env)
    record = {
        "subject": key.subject,
        "private_key_pem": key.private_key_pem.decode("ascii"),
        "server": server or _server_of(client),
        "namespace": namespace,
        "pod": pod_name,
        "pod_uid": pod_uid,
        "container": container_name,
        "created": int(time.time()),
    }
    try:
        _write_private_file(path, json.dumps(record, indent=2).encode("utf-8"))
    except OSError as exc:
        raise OutputError(
            f"could not keep the monitor's private key: the Secret failed ({reason}) and so did "
            f"{path} ({exc.strerror or exc})",
            hint="allow creating Secrets in the namespace, or make that directory writable",
        ) from None
    return KeyLocation(namespace=namespace, path=str(path), fallback_reason=reason)


def load_private_key(
    client: Any,
    pod: dict,
    monitor_container: str | dict,
    *,
    server: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ApiKey:
    """The key a monitor in ``pod`` accepts: from the Secret its env names, else the local file.

    The key found must match the subject and public key in the monitor's env. Raises
    ``ForbiddenError`` (Secret not readable, no local file) or ``NotReadyError`` (no key anywhere,
    a monitor without an API key, a key that does not match) with what to do next.
    """
    container = _find_container(pod, monitor_container)
    name = container.get("name")
    meta = pod.get("metadata") or {}
    namespace, pod_uid = meta.get("namespace") or "default", meta.get("uid") or "unknown-uid"
    values = {e.get("name"): e.get("value") for e in container.get("env") or [] if isinstance(e, dict)}
    subject, public = values.get(SUBJECT_ENV), values.get(PUBLIC_KEY_ENV)
    if not subject or not public:
        raise NotReadyError(
            f"monitor {name!r} in pod {namespace}/{meta.get('name')} has no API key configured "
            "(it was started with --no-auth or by another tool)",
            hint="use it with --no-auth, or recreate the pod and inject a monitor with this plugin",
        )
    secret_name = values.get(KEY_SECRET_ENV) or ""
    path = local_key_path(server or _server_of(client), namespace, pod_uid, name, env)

    problems: list[str] = []
    forbidden = False
    if secret_name:
        try:
            secret = client.get(f"/api/v1/namespaces/{namespace}/secrets/{secret_name}")
            return _checked(_key_from_secret(secret, namespace, secret_name), subject, public, f"Secret {namespace}/{secret_name}")
        except Interrupted:
            raise
        except ForbiddenError as exc:
            forbidden = True
            problems.append(f"reading Secret {namespace}/{secret_name} is forbidden ({_short(exc)})")
        except NotFoundError:
            problems.append(f"Secret {namespace}/{secret_name} does not exist")
    else:
        problems.append("it keeps its key outside the cluster")

    if path.is_file():
        return _checked(_key_from_file(path), subject, public, str(path))
    problems.append(f"there is no local key file {path}")
    error = ForbiddenError if forbidden else NotReadyError
    raise error(
        f"the key for monitor {name!r} in pod {namespace}/{meta.get('name')} is not available to you: "
        + "; ".join(problems),
        hint="ask someone with access to Secrets in that namespace (or who injected the monitor), or "
        "recreate the pod and inject a fresh monitor: an ephemeral container cannot be removed or "
        "reconfigured",
    )


def delete_private_key(client: Any, location: KeyLocation) -> None:
    """Remove a stored key (after a failed injection). Best effort; ``Interrupted`` passes through."""
    try:
        if location.secret_name:
            client.delete(f"/api/v1/namespaces/{location.namespace}/secrets/{location.secret_name}")
        elif location.path:
            os.unlink(location.path)
    except Interrupted:
        raise
    except (PluginError, OSError):
        pass


# --------------------------------------------------------------------------------------------


def _secret_body(pod: dict, name: str, container_name: str, key: ApiKey) -> dict:
    meta = pod.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace") or "default",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {CONTAINER_ANNOTATION: container_name},
            # No blockOwnerDeletion: it needs permission to set finalizers on the pod.
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"), "uid": meta.get("uid")}
            ],
        },
        "type": "Opaque",
        "data": {
            SUBJECT_KEY: base64.b64encode(key.subject.encode("utf-8")).decode("ascii"),
            PRIVATE_KEY_KEY: base64.b64encode(key.private_key_pem).decode("ascii"),
        },
    }


def _key_from_secret(secret: dict, namespace: str, name: str) -> ApiKey:
    data = secret.get("data") or {}
    try:
        subject = base64.b64decode(data[SUBJECT_KEY], validate=True).decode("utf-8")
        pem = base64.b64decode(data[PRIVATE_KEY_KEY], validate=True)
    except (KeyError, ValueError, TypeError):
        raise NotReadyError(
            f"Secret {namespace}/{name} does not hold a monitor key ({SUBJECT_KEY}, {PRIVATE_KEY_KEY})",
            hint="recreate the pod and inject a fresh monitor",
        ) from None
    return _parsed(subject, pem, f"Secret {namespace}/{name}")


def _key_from_file(path: Path) -> ApiKey:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        subject, pem = record["subject"], record["private_key_pem"].encode("ascii")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise NotReadyError(f"the key file {path} is not readable", hint="delete it and inject a fresh monitor") from None
    return _parsed(subject, pem, str(path))


def _parsed(subject: str, pem: bytes, where: str) -> ApiKey:
    try:
        return api_key_from_pem(subject, pem)
    except ConfigError as exc:
        raise NotReadyError(f"{where}: {exc.message}", hint="recreate the pod and inject a fresh monitor") from None


def _checked(key: ApiKey, subject: str, public: str, where: str) -> ApiKey:
    if key.subject != subject or key.public_key_config() != public:
        raise NotReadyError(
            f"the key in {where} does not belong to this monitor (its subject or public key differs)",
            hint="the Secret was replaced or the monitor belongs to an earlier injection; recreate the "
            "pod and inject a fresh monitor",
        )
    return key


def _find_container(pod: dict, monitor: str | dict) -> dict:
    if isinstance(monitor, dict):
        return monitor
    for container in (pod.get("spec") or {}).get("ephemeralContainers") or []:
        if container.get("name") == monitor:
            return container
    meta = pod.get("metadata") or {}
    raise NotFoundError(f"pod {meta.get('namespace')}/{meta.get('name')} has no monitor container {monitor!r}")


def _write_private_file(path: Path, data: bytes) -> None:
    """Create missing directories 0700 (ours tightened to 0700), write the file 0600 atomically."""
    ours = _config_root(path) / "kubectl-dotnet-monitor"
    for directory in reversed(path.parents):
        if directory.exists():
            if directory == ours or ours in directory.parents:
                os.chmod(directory, 0o700)
            continue
        os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is subject to the umask
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _config_root(path: Path) -> Path:
    for parent in path.parents:
        if parent.name == "kubectl-dotnet-monitor":
            return parent.parent
    return path.parent


def _safe_component(part: str) -> str:
    if part and _SAFE_COMPONENT.match(part) and part not in (".", ".."):
        return part
    return "x-" + hashlib.sha256(part.encode("utf-8")).hexdigest()[:16]


def _server_of(client: Any) -> str:
    conn = getattr(client, "conn", None)
    return getattr(conn, "server", None) or "unknown-server"


def _short(exc: PluginError) -> str:
    return getattr(exc, "api_message", None) or exc.message
