"""Crypto-PAn prefix-preserving address anonymisation (Xu, Fan, Ammar, Moon, 2002), the Python reference of
native/src/anon.rs: AES-128 keyed by the key's first 16 bytes; the pad is the encryption of its last 16. Bit i of
an address is flipped by the first bit of AES(the address's first i bits, then the pad's bits), so two addresses
sharing a k-bit prefix share exactly k bits after. IPv6 uses the same construction over 128 bits.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ingest.anonymise_config import KEY_BYTES
from ingest.flowkey import ip_text

_CACHE_MAX: Final = 1 << 16


class CryptoPan:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an anonymisation key is {KEY_BYTES} bytes, not {len(key)}")
        self._enc = Cipher(algorithms.AES(key[:16]), modes.ECB()).encryptor()
        self._pad = int.from_bytes(self._enc.update(key[16:]))

    def __repr__(self) -> str:
        return "CryptoPan(<key hidden>)"

    def anonymise(self, addr: bytes) -> bytes:
        """The anonymised form of a 4- or 16-byte address."""
        bits = len(addr) * 8
        if bits not in (32, 128):
            raise ValueError("an address is 4 or 16 bytes")
        orig = int.from_bytes(addr)
        shift = 128 - bits  # the address occupies the block's first bits; the pad fills the rest
        blocks = bytearray()
        for i in range(bits):
            keep = ((1 << i) - 1) << (128 - i) if i else 0  # the block's first i bits
            blocks += (((orig << shift) & keep) | (self._pad & ~keep & ((1 << 128) - 1))).to_bytes(16)
        out = self._enc.update(bytes(blocks))
        flips = 0
        for i in range(bits):
            flips = (flips << 1) | (out[16 * i] >> 7)
        return (orig ^ flips).to_bytes(len(addr))


class TextAnonymiser:
    """Address texts (as records carry them) -> the anonymised address's text, cached."""

    def __init__(self, key: bytes) -> None:
        self._pan = CryptoPan(key)
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return "TextAnonymiser(<key hidden>)"

    def __call__(self, text: str) -> str:
        out = self._cache.get(text)
        if out is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            out = self._cache[text] = ip_text(self._pan.anonymise(ipaddress.ip_address(text).packed))
        return out
