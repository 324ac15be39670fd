"""Seeded RSA keys and their caches: the only slow part of the test PKI, so the only cached one.

Generating an RSA-2048 key costs ~0.5 s, so keys are cached as PEM on disk (shared by parallel
test processes, written atomically) and in an in-process LRU. Every random byte of a key comes
from its seed, so the cache only saves time: an empty cache gives byte-identical keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["KEY_BITS", "cache_root", "clear_key_cache", "rsa_key_from_seed"]

KEY_BITS = 2048
_KEYGEN_VERSION = "v1"
"""Bumped if the seed -> key derivation ever changes, so stale cache files are never reused."""


def cache_root() -> Path:
    """The onshi cache directory: ``$ONSHI_CACHE_DIR``, else ``$XDG_CACHE_HOME/onshi``, else
    ``~/.cache/onshi``. Keys live in its ``pki/`` subdirectory."""
    if env := os.environ.get("ONSHI_CACHE_DIR"):
        return Path(env)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "onshi"
    return Path.home() / ".cache" / "onshi"


def _key_path(seed: str, root: Path) -> Path:
    digest = hashlib.sha256(f"onshi-rsa-{_KEYGEN_VERSION}\0{seed}".encode()).hexdigest()
    return root / "pki" / f"rsa{KEY_BITS}-{_KEYGEN_VERSION}-{digest[:40]}.pem"


def _generate_key(seed: str) -> rsa.RSAPrivateKey:
    """RSA-2048 whose every random byte comes from SHAKE-256 of the seed.

    ``cryptography`` cannot take a random source, so pycryptodome generates the primes and the
    key is rebuilt from its numbers. The result is stable for a given pycryptodome prime search;
    the disk cache keeps it stable across upgrades of that library too.
    """
    from Crypto.Hash import SHAKE256
    from Crypto.PublicKey import RSA

    stream = SHAKE256.new(f"onshi-rsa-{_KEYGEN_VERSION}\0{seed}".encode())
    key = RSA.generate(KEY_BITS, randfunc=stream.read, e=65537)
    p, q, d, n, e = int(key.p), int(key.q), int(key.d), int(key.n), int(key.e)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e=e, n=n),
    )
    return numbers.private_key()


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, then ``os.replace``: readers never see half a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_or_generate(seed: str, root: Path) -> rsa.RSAPrivateKey:
    path = _key_path(seed, root)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        pem = None
    if pem is not None:
        try:
            # The file is ours (written atomically above); the full RSA consistency check would
            # cost more than the rest of a cached card_credentials() call.
            key = serialization.load_pem_private_key(
                pem, password=None, unsafe_skip_rsa_key_validation=True
            )
            if isinstance(key, rsa.RSAPrivateKey) and key.key_size == KEY_BITS:
                return key
        except ValueError:
            pass  # a damaged cache file is regenerated below
    key = _generate_key(seed)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with contextlib.suppress(OSError):  # a read-only cache costs time, never correctness
        _write_atomically(path, pem)
    return key


_KEY_LRU_SIZE = 4096
_key_lru: OrderedDict[str, rsa.RSAPrivateKey] = OrderedDict()
_key_lock = threading.Lock()


def rsa_key_from_seed(seed: str, *, cache_dir: Path | None = None) -> rsa.RSAPrivateKey:
    """Deterministic RSA-2048 private key for ``seed`` (cached in memory and on disk).

    ``cache_dir`` is the cache root (default :func:`cache_root`); the key file goes under its
    ``pki/`` subdirectory. The in-memory LRU is keyed by seed alone, since the key depends on
    nothing else.
    """
    with _key_lock:
        key = _key_lru.get(seed)
        if key is not None:
            _key_lru.move_to_end(seed)
            return key
    key = _load_or_generate(seed, cache_dir if cache_dir is not None else cache_root())
    with _key_lock:
        _key_lru[seed] = key
        while len(_key_lru) > _KEY_LRU_SIZE:
            _key_lru.popitem(last=False)
    return key


def clear_key_cache() -> None:
    """Forget in-process keys (the disk cache stays)."""
    with _key_lock:
        _key_lru.clear()
