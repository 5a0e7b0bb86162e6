"""Personal data in the contract: which columns hold it, and what mlgate does with them.

A column declared ``pii: direct`` (names, e-mails, phone numbers, national ids, street addresses,
IP addresses) or ``pii: quasi`` (birth dates, postcodes: identifying in combination) has a
``handling``: ``drop`` (removed where rows enter mlgate: never a feature, never written), ``hash``
(replaced by a keyed hash, HMAC-SHA256 under a key read from the environment variable the contract
names, never written anywhere), or ``keep`` with a written ``reason``. ``pii: none`` records that a
column which looks personal was reviewed and is not.

The policy is applied where rows enter: `ingest` (the source), `mlgate serve` and `mlgate score`
(requests and files), so nothing written after them can hold a dropped or hashed value in the clear.
Detection (``finding``) reads column names and values with patterns; it proposes declarations to
`mlgate infer-schema` and names undeclared columns in `validate`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PII_KINDS = ("direct", "quasi", "none")  # none: reviewed, not personal (silences detection)
HANDLINGS = ("drop", "hash", "keep")
UNDECLARED_POLICIES = ("warn", "fail")  # a column that looks personal and is not declared
DEFAULT_KEY_ENV = "MLGATE_PII_KEY"
MIN_KEY_CHARS = 16  # a shorter key could be guessed, and every hash with it reversed by trying values
HASH_HEX_CHARS = 32  # 128 bits of the HMAC: no collisions among any realistic number of distinct values
SAMPLE_VALUES = 2_000  # values read per column to detect personal data
MATCH_SHARE = 0.9  # share of the sampled values a value pattern must match
NAME_MIN_DISTINCT = 20  # distinct values (or all of them distinct) a column needs for its name to count


@dataclass(frozen=True)
class PersonalData:
    """A contract's personal-data policy: what to drop, what to hash (and the key's variable), what is kept and why."""

    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()
    kept: Mapping[str, str] = field(default_factory=dict)  # column -> the written reason
    kinds: Mapping[str, str] = field(default_factory=dict)  # column -> direct | quasi, for every declared one
    key_env: str = DEFAULT_KEY_ENV

    @property
    def declared(self) -> bool:
        return bool(self.drop or self.hash or self.kept)

    def as_dict(self) -> dict[str, Any]:
        """What the served model needs (features.json): column names and the key's variable, no values."""
        return {"drop": list(self.drop), "hash": list(self.hash), "key_env": self.key_env}

    @classmethod
    def from_dict(cls, held: Mapping[str, Any] | None) -> PersonalData:
        if not held:
            return cls()
        return cls(
            tuple(held.get("drop", ())), tuple(held.get("hash", ())), key_env=held.get("key_env", DEFAULT_KEY_ENV)
        )

    def key(self) -> bytes | None:
        """The hashing key from the environment; None when nothing is hashed. Raises ValueError
        naming the variable and the columns when it is unset or too short."""
        if not self.hash:
            return None
        value = os.environ.get(self.key_env, "")
        if len(value) < MIN_KEY_CHARS:
            problem = "is not set" if not value else f"holds {len(value)} characters (at least {MIN_KEY_CHARS})"
            raise ValueError(
                f"environment variable {self.key_env} {problem}: it is the key that hashes the personal "
                f"column(s) {', '.join(self.hash)} (data.contract.pii_key_env); set it to the team's secret, "
                f"e.g. from the secret store, the same everywhere the model is trained and served"
            )
        return value.encode()

    def apply(self, frame: pd.DataFrame, key: bytes | None) -> pd.DataFrame:
        """``frame`` without the dropped columns and with the hashed ones hashed (only those present)."""
        out = frame.drop(columns=[c for c in self.drop if c in frame.columns])
        hashed = [c for c in self.hash if c in out.columns]
        if hashed:
            if key is None:
                raise ValueError(f"columns {', '.join(hashed)} are hashed: a key is required")
            out = out.assign(**{c: keyed_hash(out[c], key) for c in hashed})
        return out


def keyed_hash(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 of each value's text (missing values stay missing). 12345, 12345.0 and "12345"
    hash alike, so a request's JSON number matches the source's text."""
    present = values.notna()
    texts = values[present].map(_canonical_text)
    digests = {
        text: hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS] for text in texts.unique()
    }
    out = pd.Series(None, index=values.index, dtype=object, name=values.name)
    out[present] = texts.map(digests).to_numpy()
    return out


def _canonical_text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


# --- detection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str  # direct | quasi
    what: str  # "e-mail addresses"
    evidence: str  # "its name" | "93% of 2,000 sampled values"

    def describe(self, column: str) -> str:
        return f"column '{column}' looks like {self.kind} personal data ({self.what}, from {self.evidence})"


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [token for token in re.split(r"[^a-z0-9]+", spaced.lower()) if token]


# Column names that say what a column holds, as their words (camelCase and separators split), by
# what they would hold. "name" only alone or qualified (first, last, full...): product_name is not personal.
_NAMED: dict[tuple[str, str], tuple[str, ...]] = {
    ("direct", "e-mail addresses"): ("email", "e mail", "mail"),
    ("direct", "phone numbers"): ("phone", "telephone", "mobile", "msisdn"),
    ("direct", "national identity numbers"): ("ssn", "social security", "national id", "nino"),
    ("direct", "passport numbers"): ("passport",),
    ("direct", "driving licence numbers"): ("driver license",),
    ("direct", "tax identifiers"): ("tax id",),
    ("direct", "personal names"): ("name", "first name", "last name", "full name", "given name", "surname", "forename"),
    ("direct", "street addresses"): ("address", "street"),
    ("direct", "IP addresses"): ("ip", "ip address"),
    ("direct", "bank account numbers"): ("iban", "account number"),
    ("direct", "payment card numbers"): ("card number", "credit card"),
    ("quasi", "birth dates"): ("birth", "dob", "birthday", "birthdate", "date of birth"),
    ("quasi", "postcodes"): ("zip", "zipcode", "postcode", "postal code", "post code"),
}
# Longest first, so "ip address" is found before "ip".
_NAMES = sorted(
    ((tuple(words.split()), kind, what) for (kind, what), names in _NAMED.items() for words in names),
    key=lambda entry: -len(entry[0]),
)
# These only as the whole name: inside another they mean other things (X3Ssn.Porch: a three-season porch).
_QUALIFIED_ONLY = {("name",), ("mail",), ("ip",), ("ssn",)}


def _name_finding(name: str) -> Finding | None:
    tokens = tuple(_tokens(name))
    for pattern, kind, what in _NAMES:
        if pattern in _QUALIFIED_ONLY:
            if tokens == pattern:
                return Finding(kind, what, "its name")
            continue
        if any(tokens[i : i + len(pattern)] == pattern for i in range(len(tokens) - len(pattern) + 1)):
            return Finding(kind, what, "its name")
    return None


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_SSN = re.compile(r"\d{3}-\d{2}-\d{4}")
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{5,18}\d")
_DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}.*|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")
_CARD = re.compile(r"\d(?:[ -]?\d){12,18}")
_IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _luhn(text: str) -> bool:
    digits = [int(d) for d in text if d.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


def _iban_valid(text: str) -> bool:
    moved = text[4:] + text[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _is_phone(text: str) -> bool:
    if not _PHONE.fullmatch(text) or _DATE_LIKE.fullmatch(text):
        return False
    digits = sum(ch.isdigit() for ch in text)
    # a separator or a leading +: a bare run of digits is more often a code or an amount than a phone
    return 7 <= digits <= 15 and (text.startswith("+") or any(ch in text for ch in " -()."))


# Most specific first: an SSN also matches the phone pattern.
_VALUE_PATTERNS: list[tuple[str, str, Any]] = [
    ("direct", "e-mail addresses", lambda t: bool(_EMAIL.fullmatch(t))),
    ("direct", "IP addresses", _is_ip),
    ("direct", "national identity numbers", lambda t: bool(_SSN.fullmatch(t))),
    ("direct", "payment card numbers", lambda t: bool(_CARD.fullmatch(t)) and _luhn(t)),
    (
        "direct",
        "bank account numbers",
        lambda t: bool(_IBAN.fullmatch(t.replace(" ", ""))) and _iban_valid(t.replace(" ", "")),
    ),
    ("direct", "phone numbers", _is_phone),
]


def _value_finding(values: pd.Series) -> Finding | None:
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(present):  # only text is matched
        return None
    if pd.api.types.infer_dtype(present, skipna=True) != "string":  # a column of text alone needs no sifting
        present = present[present.map(lambda v: isinstance(v, str))]
    if present.empty:
        return None
    sample = present.head(SAMPLE_VALUES).str.strip()
    for kind, what, matches in _VALUE_PATTERNS:
        share = float(sample.map(matches).mean())
        if share >= MATCH_SHARE:
            return Finding(kind, what, f"{share:.0%} of {len(sample):,} sampled values")
    return None


def finding(name: str, values: pd.Series | None = None) -> Finding | None:
    """What a column's values (first) or its name say about personal data in it; None: nothing.

    A name alone counts only over values that could identify someone: a column with a handful of
    values (phone_service: 0 or 1) describes people without identifying them."""
    if values is None:
        return _name_finding(name)
    found = _value_finding(values)
    if found is not None:
        return found
    present = values.dropna()
    if present.nunique() < min(NAME_MIN_DISTINCT, len(present)) or pd.api.types.is_bool_dtype(present):
        return None
    return _name_finding(name)


def proposed_handling(found: Finding, role: str) -> dict[str, str]:
    """A draft's declaration for a detected column: ids are hashed (still joinable, and `forget`
    can find them), everything else dropped; a person reviews it."""
    return {"pii": found.kind, "handling": "hash" if role == "id" else "drop"}
