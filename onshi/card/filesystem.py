"""The card's file system as frozen data: applications (DFs) holding binary EFs, key
references (the targets of VERIFY) and private signing keys.

Access rules are data too: a binary EF lists the key references any one of which, once
verified in the current application, opens it (``()`` = free). The engine only looks rules up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache

from onshi.card.signing import DigestInfoSigner

__all__ = ["Application", "BinaryEF", "KeyRef", "SecretFormat", "SigningKey", "lazy"]


class SecretFormat(Enum):
    """What a new value given to CHANGE REFERENCE DATA must look like (card_apdu.md §4.1)."""

    PIN4 = "4 digits"
    PASSWORD = "6-16 characters of A-Z and 0-9, mixing letters and digits"
    DIGITS12 = "12 digits"
    DIGITS14 = "14 digits"

    def accepts(self, value: bytes) -> bool:
        text = value.decode("ascii", "replace")
        if self is SecretFormat.PIN4:
            return re.fullmatch(r"[0-9]{4}", text) is not None
        if self is SecretFormat.PASSWORD:
            return (
                re.fullmatch(r"[A-Z0-9]{6,16}", text) is not None
                and re.search(r"[A-Z]", text) is not None
                and re.search(r"[0-9]", text) is not None
            )
        if self is SecretFormat.DIGITS12:
            return re.fullmatch(r"[0-9]{12}", text) is not None
        return re.fullmatch(r"[0-9]{14}", text) is not None


@dataclass(frozen=True, slots=True)
class BinaryEF:
    """A transparent EF; ``content`` is built on first read (photos and signatures cost time)."""

    fid: int
    content: Callable[[], bytes]
    read_keys: tuple[int, ...] = ()
    """Key FIDs of this application; any one verified opens the EF. Empty = free."""


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A secret checked by VERIFY. Its value and counter live in the Card, under ``counter``."""

    fid: int
    counter: str
    """Name in ``Card.counters`` (e.g. ``jpki.auth_pin``); also the key of the stored value."""
    max_tries: int
    fmt: SecretFormat
    value: str | None
    """The secret when the card is issued; ``None`` = never set (VERIFY answers ``69 84``)."""
    remaining: int
    """Tries left when the card is issued (the Card keeps the live counter)."""
    changeable: bool = False
    """Whether CHANGE REFERENCE DATA may set a new value (JPKI and 入力補助AP keys, per SOL)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key EF, used by COMPUTE DIGITAL SIGNATURE once ``unlocked_by`` is verified."""

    fid: int
    signer: DigestInfoSigner
    unlocked_by: int


Node = BinaryEF | KeyRef | SigningKey


@dataclass(frozen=True, slots=True)
class Application:
    """One DF selected by AID; ``files`` maps FID (``0x0001``..``0x001E``) to its node."""

    name: str
    aid: bytes
    files: Mapping[int, Node]

    @property
    def keys(self) -> tuple[KeyRef, ...]:
        return tuple(n for n in self.files.values() if isinstance(n, KeyRef))


def lazy(build: Callable[[], bytes]) -> Callable[[], bytes]:
    """Memoise a content builder: built once on first read, the same bytes afterwards."""
    return cache(build)
