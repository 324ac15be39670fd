"""Declarative card profiles: the frozen model and the YAML loader.

``load_profile("valid")`` gives a :class:`CardProfile`; ``list_profiles()`` gives them all;
``revocation_entries(profiles)`` feeds ``TestPKI.crl``. Profiles live in ``card_profiles/``
(or ``$ONSHI_PROFILES_DIR``) and are checked against ``card_profiles/schema.json``.
Modules: ``model`` (frozen data), ``documents`` (file -> merged mapping), ``dates``,
``loader`` (checks and construction), ``errors``.
"""

from onshi.profiles.dates import resolve_date
from onshi.profiles.documents import profiles_dir, schema_path
from onshi.profiles.errors import ProfileError
from onshi.profiles.loader import (
    list_profiles,
    load_profile,
    my_number_check_digit,
    revocation_entries,
)
from onshi.profiles.model import (
    DEFAULT_ATR,
    Behaviour,
    CardProfile,
    CertSpec,
    DropPhase,
    Holder,
    Registration,
    Secret,
    Sex,
    Token,
    era_yymmdd,
)

__all__ = [
    "DEFAULT_ATR",
    "Behaviour",
    "CardProfile",
    "CertSpec",
    "DropPhase",
    "Holder",
    "ProfileError",
    "Registration",
    "Secret",
    "Sex",
    "Token",
    "era_yymmdd",
    "list_profiles",
    "load_profile",
    "my_number_check_digit",
    "profiles_dir",
    "resolve_date",
    "revocation_entries",
    "schema_path",
]
