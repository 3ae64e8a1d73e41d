"""The ingest bucket's key layout: ``incoming/<site>/<device>/<file>``.

The one place for it: the Lambda parses keys by it, and the CLI, the local stack and the demo
build keys by it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INCOMING = "incoming/"
# Site and device names: what the key layout and the table's device index can hold safely.
NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class KeyParts:
    """What a key under ``incoming/`` says: site and device when it has both levels."""

    site: str | None
    device: str | None
    name: str


def is_incoming(key: str) -> bool:
    """A key the pipeline scores: below ``incoming/`` and not a folder marker."""
    return key.startswith(INCOMING) and not key.endswith("/")


def parse(key: str) -> KeyParts:
    """Site and device from ``incoming/<site>/<device>/.../<file>``; None where absent.

    Deeper folders below the device are allowed (a device may sort its files by day); a
    file directly under ``incoming/`` or ``incoming/<site>/`` names no device.
    """
    parts = key.split("/")
    if len(parts) >= 4:
        return KeyParts(parts[1], parts[2], parts[-1])
    return KeyParts(None, None, parts[-1])


def valid_name(value: str) -> bool:
    return bool(NAME_PART.match(value))


def incoming_key(site: str, device: str, name: str) -> str:
    """Where a device's file goes; ValueError naming the rule when site or device breaks it."""
    for what, value in (("site", site), ("device", device)):
        if not valid_name(value):
            raise ValueError(f"{what} must be {NAME_RULE}")
    if not name or name.endswith("/"):
        raise ValueError("the file name is empty")
    return f"{INCOMING}{site}/{device}/{name.lstrip('/')}"


def prefix(site: str | None = None, device: str | None = None) -> str:
    """The key prefix of every file, of one site's, or of one device's."""
    if device is not None and site is None:
        raise ValueError("a device prefix needs its site")
    return INCOMING + "".join(f"{part}/" for part in (site, device) if part is not None)


# Written by the pipeline (never under incoming/, so nothing it writes is scored again).
RESULTS = "results/"  # per-window arrays of files too long for their table item
WORK = "work/"  # chunks of long recordings until their file is whole (expire after 14 days)


def results_key(site: str, device: str, file_hash: str, model_version: str) -> str:
    """Where a long file's per-window arrays go: by site and device, so per-site read
    policies cover them."""
    return f"{RESULTS}{site}/{device}/{file_hash}/{model_version}.npz"


def chunk_key(file_hash: str, model_version: str, signature: str, chunk: int) -> str:
    return f"{WORK}chunks/{file_hash}/{model_version}/{signature}/{chunk:05d}.npz"
