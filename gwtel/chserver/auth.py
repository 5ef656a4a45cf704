"""Users of the embedded server and how a request names one, as a ClickHouse server reads them.

Credentials come from HTTP basic authentication, the `X-ClickHouse-User` / `X-ClickHouse-Key` headers, or
the `user` / `password` query parameters; none means user `default` with an empty password. Mixing basic
authentication with the others is refused, as ClickHouse does. Users are read from a YAML file:

    users:
      default: {password_sha256_hex: 5e88...}   # sha256 of the password, as in ClickHouse's users.xml
      grafana: {password_sha256_hex: 9f86..., readonly: 1}

readonly 1: only statements that read (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN) run; any other is refused
with READONLY (164). Without a file there is one user, `default`, without a password and not read-only: the
quick start's local setup, allowed on a loopback address only (see `require_passwords`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from gwtel.chserver.errors import ChError, Codes
from gwtel.errors import UserError

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class User:
    name: str
    password_sha256: bytes | None  # None: no password
    readonly: bool = False

    def accepts(self, password: str) -> bool:
        if self.password_sha256 is None:
            return password == ""
        return hmac.compare_digest(hashlib.sha256(password.encode("utf-8")).digest(), self.password_sha256)


class Users:
    def __init__(self, users: Mapping[str, User]) -> None:
        self._users = dict(users)

    @classmethod
    def open_default(cls) -> Users:
        return cls({"default": User("default", None)})

    @classmethod
    def load(cls, path: Path) -> Users:
        """Users from `path`; a file a person wrote wrong stops the server with the key named."""
        try:
            raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: cannot read the users file ({exc})") from None
        entries = raw.get("users") if isinstance(raw, dict) else None
        if not isinstance(entries, dict) or not entries:
            raise UserError(f"{path}: expected `users:` with at least one user")
        users = {}
        for name, given in entries.items():
            spec = given or {}
            if not isinstance(spec, dict) or set(spec) - {"password_sha256_hex", "readonly"}:
                raise UserError(f"{path}: users.{name}: only password_sha256_hex and readonly are known")
            digest = str(spec.get("password_sha256_hex", "")).lower()
            if digest and (len(digest) != 64 or set(digest) - _HEX):
                raise UserError(f"{path}: users.{name}.password_sha256_hex is not 64 hex digits")
            if spec.get("readonly", 0) not in (0, 1, False, True):
                raise UserError(f"{path}: users.{name}.readonly must be 0 or 1")
            users[str(name)] = User(str(name), bytes.fromhex(digest) if digest else None, bool(spec.get("readonly")))
        return cls(users)

    def passwordless(self) -> list[str]:
        return sorted(u.name for u in self._users.values() if u.password_sha256 is None)

    def require_passwords(self, host: str) -> None:
        """Refuse to listen beyond loopback while a user has no password."""
        if self.passwordless() and not _loopback(host):
            raise UserError(
                f"listening on {host} with user(s) {', '.join(self.passwordless())} without a password: give "
                "--users FILE with a password for every user, or listen on 127.0.0.1"
            )

    def authenticate(self, name: str, password: str) -> User:
        user = self._users.get(name)
        if user is None or not user.accepts(password):
            raise ChError(
                Codes.AUTHENTICATION_FAILED,
                f"{name}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        return user


class _Headers(Protocol):
    def get(self, name: str) -> str | None: ...


def credentials(headers: _Headers, params: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) named by a request, ClickHouse's way; ("default", "") when none is given."""
    auth = headers.get("Authorization")
    header_user, header_key = headers.get("X-ClickHouse-User"), headers.get("X-ClickHouse-Key")
    param_user, param_password = params.get("user"), params.get("password")
    if auth is not None:
        if any(v is not None for v in (header_user, header_key, param_user, param_password)):
            raise ChError(
                Codes.AUTHENTICATION_FAILED,
                "Invalid authentication: it is not allowed to use Authorization HTTP header and authentication "
                "via parameters simultaneously",
            )
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            raise ChError(
                Codes.AUTHENTICATION_FAILED,
                f"Invalid authentication: '{scheme[:20]}' HTTP Authorization scheme is not supported",
            )
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ChError(Codes.AUTHENTICATION_FAILED, "Invalid authentication: malformed basic credentials") from None
        user, _, password = decoded.partition(":")
        return user or "default", password
    if (header_user is not None or header_key is not None) and (param_user is not None or param_password is not None):
        raise ChError(
            Codes.AUTHENTICATION_FAILED,
            "Invalid authentication: it is not allowed to use X-ClickHouse HTTP headers and other authentication "
            "methods simultaneously",
        )
    name = header_user if header_user is not None else param_user
    key = header_key if header_key is not None else param_password
    return name or "default", key or ""


def password_sha256_hex(password: str) -> str:
    """The users-file form of a password."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
