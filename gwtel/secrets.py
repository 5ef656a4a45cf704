"""Where a password comes from: a file (its first line) or an environment variable, never the configuration.

Every secret of the project (Kafka SASL, ClickHouse users) is read here, at the moment a client is built, so a
configuration object never holds one and dumping it cannot show one.
"""

from __future__ import annotations

import os
from pathlib import Path

from gwtel.errors import UserError

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SecretError(UserError):
    """A password that is needed cannot be read; the message names the setting, never a value."""


def read_secret(*, key: str, env: str, file: str | None, required: bool) -> str:
    """The secret of setting `key` (e.g. "kafka.security"): `file` if given, else `$env`.

    `required`: an empty or missing value is an error naming both sources, else it reads as "".
    """
    if file is not None:
        try:
            text = Path(file).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretError(f"{key}.password_file: cannot read {file} ({exc.strerror})") from None
        value = text.splitlines()[0] if text else ""
        if not value and required:
            raise SecretError(f"{key}.password_file: {file} is empty")
        return value
    value = os.environ.get(env, "")
    if not value and required:
        raise SecretError(f"{key}: a password is needed: set ${env} ({key}.password_env) or {key}.password_file")
    return value


def source(*, key: str, env: str, file: str | None) -> str:
    """Where the secret of `key` is read from, for messages."""
    return f"{key}.password_file {file}" if file is not None else f"${env}"
