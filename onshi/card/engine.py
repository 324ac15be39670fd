"""The sans-I/O My Number card: ``bytes -> bytes``, no sockets, threads, clocks or sleeps.

Rule 1: every decision about what the card answers lives in this file; the application
builders (``jpki``, ``kenhojo``, ``kenmen``) only describe files, keys and access rules as data.
Rule 2: ``Card.process`` never raises; every input ends in a status word.

Theory of operation. The card holds two kinds of state:

* persistent (non-volatile on a real card, card_apdu.md §4.2): retry counters, secret values
  (CHANGE REFERENCE DATA) and the GET CHALLENGE counter. They live in the ``Card`` object and
  survive ``reset()``/``power_off()``.
* the session: the selected application, the current EF and the set of verified keys. Reset,
  power-off and (re-)SELECT of an application clear it (OpenSC logs out by re-SELECT).

A command goes through four gates, each answering on its own: the class byte (``6E 00``;
secure-messaging classes ``68 82``/``69 FC``), the instruction (``6D 00``), the APDU syntax
(``67 00``), then the handler picked from ``_HANDLERS`` by (CLA, INS).

Answers where no source shows the real card's behaviour (all marked [I]):

* READ BINARY at or past the end of the EF -> ``6B 00`` (JICSAP; ``62 82`` is the other
  candidate); READ BINARY of a key EF -> ``69 81``; with no current EF -> ``69 86``.
* VERIFY / CHANGE REFERENCE DATA naming something that is not a key -> ``6A 88``.
* A key with no value (顔認証マイナンバーカード's auth PIN, blocked 入力補助AP key 0012):
  VERIFY with data -> ``69 84``, empty VERIFY -> ``63 C0`` (a key that cannot be used).
* A wrong VERIFY also drops that key's verified state; an empty VERIFY on a verified key
  answers ``63 Cx`` (tries left), not ``90 00`` (SOL saw both on different cards).
* Class bytes other than ``00``/``80`` and the secure-messaging ``08``/``0C`` (logical
  channels, command chaining) -> ``6E 00``.
* CHANGE REFERENCE DATA with a badly formed new value -> ``6A 80``; on a key that cannot be
  changed -> ``69 86``.
* COMPUTE DIGITAL SIGNATURE: key not unlocked -> ``69 82``; input outside 1..245 bytes or
  Le below 256 -> ``67 00``; current EF not a private key -> ``6A 88``; P1 other than 00 ->
  ``6A 86`` (SOL's P1 01-05 schemes are not modelled).
* SELECT with an Le is accepted (no data returned); SELECT with P2 other than ``0C`` (an FCI
  request) -> ``6A 86``.
* GET DATA answers only in the power-on (MF) state, as SOL observed; in an application or for
  other tags -> ``6A 88``.
* APDUs while powered off -> ``6F 00`` (a transport should not deliver them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from onshi.apdu import SW, APDUFormatError, CommandAPDU, ResponseAPDU
from onshi.card.filesystem import Application, BinaryEF, KeyRef, Node, SigningKey
from onshi.card.jpki import build_jpki
from onshi.card.kenhojo import build_kenhojo
from onshi.card.kenmen import build_kenmen
from onshi.card.signing import MAX_INPUT
from onshi.cardmap import AID_NAMES, COMMON_AID, GP_ISD_AID, JUKI_AID
from onshi.profiles.model import CardProfile

if TYPE_CHECKING:
    from onshi.pki import CardCredentials, TestPKI

__all__ = ["Card"]

_SM_CLASSES = frozenset((0x08, 0x0C))
_CLASSES = frozenset((0x00, 0x80))


def _sw(sw: int, data: bytes = b"") -> ResponseAPDU:
    return ResponseAPDU(data, sw)


def _tries_sw(tries: int) -> ResponseAPDU:
    return _sw(0x63C0 | min(tries, 15))


@dataclass(slots=True)
class _Session:
    """Volatile state: lost on reset, power-off and SELECT of an application."""

    app: Application | None = None
    ef: int | None = None
    verified: set[int] = field(default_factory=set)


class Card:
    """An emulated My Number card built from a profile (see the module docstring).

    ``counters`` names (tries left; present only if the card has the key):
    ``jpki.auth_pin`` (0018), ``jpki.sign_password`` (001B), ``kenhojo.pin`` (0011),
    ``kenhojo.key_0012`` (always blocked), ``kenhojo.collation_a`` (0014),
    ``kenhojo.collation_b`` (0015), ``kenmen.collation_b`` (0012), ``kenmen.collation_a`` (0013).
    """

    def __init__(self, profile: CardProfile, credentials: CardCredentials) -> None:
        self.profile = profile
        self.atr: bytes = profile.atr
        apps = [build_jpki(profile, credentials)]
        if profile.face_applications:
            apps += [build_kenhojo(profile), build_kenmen(profile)]
            # 住基AP and 共通AP answer SELECT like a My Number card (§1); their record files,
            # READ RECORD and their PINs are not modelled, so every EF answers 6A 82.
            apps += [Application(AID_NAMES[aid], aid, {}) for aid in (JUKI_AID, COMMON_AID)]
        self._apps: dict[bytes, Application] = {app.aid: app for app in apps}
        self._tries: dict[str, int] = {}
        self._secrets: dict[str, str | None] = {}
        for app in apps:
            for key in app.keys:
                self._tries[key.counter] = max(0, min(key.remaining, key.max_tries))
                self._secrets[key.counter] = key.value
        self._challenges = 0
        self._powered = True
        self._session = _Session()

    @classmethod
    def from_profile(cls, profile: CardProfile, pki: TestPKI | None = None) -> Card:
        """A card whose JPKI keys and certificates come from the test PKI (default seed)."""
        from onshi.pki import TestPKI

        pki = pki if pki is not None else TestPKI()
        creds = pki.card_credentials(
            seed=profile.seed, auth=profile.auth_cert, sign=profile.sign_cert, holder=profile.holder
        )
        return cls(profile, creds)

    # --- power ----------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """Cold start: returns the ATR; no application selected, nothing verified."""
        self._powered = True
        self._session = _Session()
        return self.atr

    def reset(self) -> bytes:
        """Warm reset: same effect as ``power_on``."""
        return self.power_on()

    def power_off(self) -> None:
        self._powered = False
        self._session = _Session()

    @property
    def counters(self) -> Mapping[str, int]:
        """Tries left per key: a live read-only view (names in the class docstring)."""
        return MappingProxyType(self._tries)

    @property
    def selected(self) -> str | None:
        """Name of the selected application, or None in the power-on state (for tools)."""
        return self._session.app.name if self._session.app else None

    # --- the engine -----------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU. Never raises: every input ends in a status word."""
        try:
            return self._process(bytes(apdu)).to_bytes()
        except Exception:  # a bug in the engine must not kill a load test; tests assert 6F00
            return SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big")

    def _process(self, raw: bytes) -> ResponseAPDU:
        if not self._powered:
            return _sw(SW.NO_PRECISE_DIAGNOSIS)
        if len(raw) < 4:
            return _sw(SW.WRONG_LENGTH)
        cla, ins = raw[0], raw[1]
        if cla in _SM_CLASSES:
            if ins in (0xB0, 0x20):
                return _sw(SW.SM_CLASS_REFUSED)
            return _sw(SW.SECURE_MESSAGING_NOT_SUPPORTED)
        if cla not in _CLASSES:
            return _sw(SW.CLA_NOT_SUPPORTED)
        handler = _HANDLERS.get((cla, ins))
        if handler is None:
            return _sw(SW.INS_NOT_SUPPORTED)
        try:
            cmd = CommandAPDU.parse(raw)
        except APDUFormatError:
            return _sw(SW.WRONG_LENGTH)
        return handler(self, cmd)

    # --- SELECT ---------------------------------------------------------------------------

    def _select(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 == 0x04:
            if cmd.p2 != 0x0C:
                return _sw(SW.INCORRECT_P1P2)
            if not 1 <= len(cmd.data) <= 16:
                return _sw(SW.WRONG_LENGTH)
            if cmd.data == GP_ISD_AID:
                # Back to the power-on (MF) state, as SOL observed [C].
                self._session = _Session()
                return _sw(SW.OK)
            app = self._apps.get(cmd.data)
            if app is None:
                return _sw(SW.FILE_NOT_FOUND)
            self._session = _Session(app=app)
            return _sw(SW.OK)
        if cmd.p1 == 0x00 and not cmd.data:
            # SELECT MF (JICSAP form): refused in the power-on state, a no-op in an AP (SOL).
            if cmd.p2 not in (0x00, 0x0C):
                return _sw(SW.INCORRECT_P1P2)
            return _sw(SW.OK if self._session.app else SW.INCORRECT_P1P2)
        if cmd.p1 in (0x00, 0x02):
            if cmd.p2 != 0x0C:
                return _sw(SW.INCORRECT_P1P2)
            if len(cmd.data) != 2:
                return _sw(SW.WRONG_LENGTH)
            fid = int.from_bytes(cmd.data, "big")
            app = self._session.app
            if app is None or fid not in app.files:
                return _sw(SW.FILE_NOT_FOUND)
            self._session.ef = fid
            return _sw(SW.OK)
        return _sw(SW.INCORRECT_P1P2)

    # --- READ BINARY ----------------------------------------------------------------------

    def _read_binary(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.data or cmd.le is None:
            return _sw(SW.WRONG_LENGTH)
        session = self._session
        if cmd.p1 & 0x80:
            sfi = cmd.p1 & 0x1F
            if cmd.p1 & 0x60 or sfi == 0:
                return _sw(SW.INCORRECT_P1P2)
            if session.app is None or sfi not in session.app.files:
                return _sw(SW.FILE_NOT_FOUND)
            session.ef, offset = sfi, cmd.p2
        else:
            if session.app is None or session.ef is None:
                return _sw(SW.COMMAND_NOT_ALLOWED)
            offset = cmd.p1 << 8 | cmd.p2
        node = session.app.files[session.ef]
        if not isinstance(node, BinaryEF):
            return _sw(SW.INCOMPATIBLE_FILE_STRUCTURE)
        if node.read_keys and session.verified.isdisjoint(node.read_keys):
            return _sw(SW.SECURITY_NOT_SATISFIED)
        content = node.content()
        if offset >= len(content):
            return _sw(SW.WRONG_OFFSET)
        return _sw(SW.OK, content[offset : offset + cmd.le])

    # --- VERIFY and CHANGE REFERENCE DATA -------------------------------------------------

    def _key_for(self, p2: int) -> KeyRef | int:
        """The key named by P2 (``80`` = current EF, ``80|SFI``), or the SW to answer."""
        if not p2 & 0x80 or p2 & 0x60:
            return SW.INCORRECT_P1P2
        app = self._session.app
        fid = self._session.ef if p2 == 0x80 else p2 & 0x1F
        node: Node | None = app.files.get(fid) if app is not None and fid is not None else None
        if not isinstance(node, KeyRef):
            return SW.REFERENCED_DATA_NOT_FOUND
        return node

    def _verify(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 != 0x00:
            return _sw(SW.INCORRECT_P1P2)
        if cmd.le is not None:
            return _sw(SW.WRONG_LENGTH)
        key = self._key_for(cmd.p2)
        if not isinstance(key, KeyRef):
            return _sw(key)
        tries, secret = self._tries[key.counter], self._secrets[key.counter]
        if not cmd.data:  # status query (case 1): costs nothing (JICSAP 6.4.9 via SOL)
            return _tries_sw(0 if secret is None else tries)
        if secret is None or tries == 0:
            return _sw(SW.AUTH_METHOD_BLOCKED)
        if cmd.data == secret.encode("ascii"):
            self._tries[key.counter] = key.max_tries
            self._session.verified.add(key.fid)
            return _sw(SW.OK)
        self._tries[key.counter] = tries - 1
        self._session.verified.discard(key.fid)
        return _tries_sw(tries - 1)

    def _change_reference_data(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 != 0x01:
            return _sw(SW.INCORRECT_P1P2)
        if not cmd.data or cmd.le is not None:
            return _sw(SW.WRONG_LENGTH)
        key = self._key_for(cmd.p2)
        if not isinstance(key, KeyRef):
            return _sw(key)
        if not key.changeable:
            return _sw(SW.COMMAND_NOT_ALLOWED)
        if self._secrets[key.counter] is None or self._tries[key.counter] == 0:
            return _sw(SW.AUTH_METHOD_BLOCKED)
        if key.fid not in self._session.verified:
            return _sw(SW.SECURITY_NOT_SATISFIED)
        if not key.fmt.accepts(cmd.data):
            return _sw(SW.WRONG_DATA)
        self._secrets[key.counter] = cmd.data.decode("ascii")
        return _sw(SW.OK)

    # --- COMPUTE DIGITAL SIGNATURE --------------------------------------------------------

    def _sign(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 != 0x00 or cmd.p2 not in (0x80, 0x97, 0x9A):
            return _sw(SW.INCORRECT_P1P2)
        if not 1 <= len(cmd.data) <= MAX_INPUT or (cmd.le is not None and cmd.le < 256):
            return _sw(SW.WRONG_LENGTH)
        app, session = self._session.app, self._session
        if app is None:
            return _sw(SW.REFERENCED_DATA_NOT_FOUND)
        if cmd.p2 == 0x80:
            if session.ef is None:
                return _sw(SW.COMMAND_NOT_ALLOWED)
            node = app.files.get(session.ef)
        else:
            node = app.files.get(cmd.p2 & 0x1F)
        if not isinstance(node, SigningKey):
            return _sw(SW.REFERENCED_DATA_NOT_FOUND)
        if node.unlocked_by not in session.verified:
            return _sw(SW.SECURITY_NOT_SATISFIED)
        return _sw(SW.OK, node.signer.sign(cmd.data))

    # --- GET CHALLENGE and GET DATA -------------------------------------------------------

    def _get_challenge(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        if cmd.data or cmd.le is None:
            return _sw(SW.WRONG_LENGTH)
        if cmd.extended:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)  # SOL: extended Le refused
        self._challenges += 1
        stream = f"{self.profile.seed}/challenge/{self._challenges}".encode()
        return _sw(SW.OK, hashlib.shake_256(stream).digest(cmd.le))

    def _get_data(self, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.data or cmd.le is None:
            return _sw(SW.WRONG_LENGTH)
        if self._session.app is not None or (cmd.p1, cmd.p2) != (0x5F, 0x51):
            return _sw(SW.REFERENCED_DATA_NOT_FOUND)
        return _sw(SW.OK, self.atr[1:][: cmd.le])


_HANDLERS: dict[tuple[int, int], Callable[[Card, CommandAPDU], ResponseAPDU]] = {
    (0x00, 0xA4): Card._select,
    (0x00, 0xB0): Card._read_binary,
    (0x00, 0x20): Card._verify,
    (0x00, 0x24): Card._change_reference_data,
    (0x80, 0x2A): Card._sign,
    (0x00, 0x84): Card._get_challenge,
    (0x00, 0xCA): Card._get_data,
}
"""The command set: (CLA, INS) -> handler. A known CLA with an INS not listed answers 6D 00."""
