"""Address anonymisation settings (the `anonymise:` section of the agent and of the collector) and the key.

The key is 32 bytes (Crypto-PAn: 16 of AES key, 16 of pad), read at start-up from a file (32 raw bytes or 64
hex digits) or an environment variable (64 hex digits). Only where it comes from is configuration: the key itself
never enters the configuration, its dump, logs or error messages.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

KEY_BYTES = 32
_HEX = frozenset(string.hexdigits)


class AnonymiseConfig(BaseModel):
    """Prefix-preserving anonymisation of the stored src_ip/dst_ip (off unless the section is given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_file: str | None = Field(default=None, description="32 raw bytes or 64 hex digits; readable by the agent only")
    key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="holds 64 hex digits")

    @model_validator(mode="after")
    def _one_source(self) -> AnonymiseConfig:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("anonymise: give exactly one of key_file and key_env (see docs/security.md)")
        return self


class AnonymiseKeyError(ValueError):
    """The key cannot be read or is malformed: the message names the setting, never the key's bytes."""


def _from_hex(text: str, where: str) -> bytes:
    t = text.strip()
    if len(t) != 2 * KEY_BYTES or not set(t) <= _HEX:
        raise AnonymiseKeyError(
            f"{where}: an anonymisation key is {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex digits "
            f"(found {len(t)} characters); make one with `head -c 32 /dev/urandom | xxd -p -c 64`"
        )
    return bytes.fromhex(t)


def load_key(cfg: AnonymiseConfig) -> bytes:
    """The 32-byte key from the file or the environment variable the section names."""
    if cfg.key_env is not None:
        value = os.environ.get(cfg.key_env)
        if not value:
            raise AnonymiseKeyError(f"anonymise.key_env: the environment variable {cfg.key_env} is not set or empty")
        return _from_hex(value, f"anonymise.key_env ({cfg.key_env})")
    assert cfg.key_file is not None
    try:
        raw = Path(cfg.key_file).read_bytes()
    except OSError as e:
        raise AnonymiseKeyError(f"anonymise.key_file: cannot read {cfg.key_file}: {e.strerror}") from None
    if len(raw) == KEY_BYTES:
        return raw
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = "?" * len(raw)  # neither 32 raw bytes nor hex: say so without showing them
    return _from_hex(text, f"anonymise.key_file ({cfg.key_file})")


def engine_key(cfg: AnonymiseConfig | None) -> bytes | None:
    """What the native engines are given (`anon_key`): the key, or None when anonymisation is off."""
    return None if cfg is None else load_key(cfg)
