"""Personal data in the contract: declarations, keyed hashing, detection, and the draft's proposals."""

import numpy as np
import pandas as pd
import pytest
import yaml

from mlgate import config
from mlgate.modelling import schema
from mlgate.modelling.data import ColumnSpec, DataSpec, check_contract
from mlgate.modelling.personal import PersonalData, finding, keyed_hash

KEY = b"a-team-secret-of-32-characters!!"
EMAILS = [f"person{i}@example.org" for i in range(40)]


def _spec(data_section, **columns) -> DataSpec:
    data_section["contract"]["columns"].update(columns)
    return config.build(DataSpec, data_section, "data")


def test_a_number_and_its_text_hash_alike_and_missing_values_stay_missing():
    hashed = keyed_hash(pd.Series([12345, 12345.0, "12345", None, "12346"], dtype=object), KEY)

    assert hashed[0] == hashed[1] == hashed[2]
    assert pd.isna(hashed[3])
    assert hashed[4] != hashed[0]
    assert len(hashed[0]) == 32 and int(hashed[0], 16) >= 0


def test_another_key_gives_other_hashes():
    values = pd.Series(EMAILS[:3])

    assert not keyed_hash(values, KEY).eq(keyed_hash(values, b"another-key-of-some-length")).any()


def test_the_key_comes_from_the_named_variable_and_a_missing_or_short_one_is_refused(monkeypatch):
    policy = PersonalData(hash=("customer_id", "postcode"), key_env="TEAM_PII_KEY")
    monkeypatch.delenv("TEAM_PII_KEY", raising=False)

    with pytest.raises(ValueError, match=r"TEAM_PII_KEY is not set.*customer_id, postcode"):
        policy.key()
    monkeypatch.setenv("TEAM_PII_KEY", "short")
    with pytest.raises(ValueError, match=r"TEAM_PII_KEY holds 5 characters \(at least 16\)"):
        policy.key()
    monkeypatch.setenv("TEAM_PII_KEY", KEY.decode())
    assert policy.key() == KEY
    assert PersonalData(drop=("email",)).key() is None  # nothing hashed: no key needed


def test_apply_drops_and_hashes_the_declared_columns_it_finds():
    frame = pd.DataFrame({"email": EMAILS[:2], "postcode": ["SW1A 1AA", "EC1A 1BB"], "tenure": [1, 2]})
    policy = PersonalData(drop=("email", "name"), hash=("postcode",))

    out = policy.apply(frame, KEY)

    assert list(out.columns) == ["postcode", "tenure"]
    assert out["postcode"].tolist() == keyed_hash(frame["postcode"], KEY).tolist()
    assert "SW1A 1AA" not in out["postcode"].tolist()
    assert frame["email"].tolist() == EMAILS[:2]  # the caller's frame is left alone


@pytest.mark.parametrize(
    ("values", "what"),
    [
        (EMAILS, "e-mail addresses"),
        ([f"10.0.{i}.{i + 1}" for i in range(20)], "IP addresses"),
        ([f"2001:db8::{i:x}" for i in range(20)], "IP addresses"),
        ([f"{100 + i}-45-{6789 + i}" for i in range(20)], "national identity numbers"),
        (["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"] * 5, "payment card numbers"),
        (["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"] * 5, "bank account numbers"),
        ([f"+44 20 7946 {i:04d}" for i in range(20)], "phone numbers"),
        ([f"(555) 010-{i:04d}" for i in range(20)], "phone numbers"),
    ],
)
def test_values_that_look_personal_are_found_whatever_the_column_is_called(values, what):
    found = finding("col_7", pd.Series(values))

    assert found is not None and found.kind == "direct" and found.what == what
    assert "sampled values" in found.evidence


@pytest.mark.parametrize(
    "values",
    [
        ["2024-01-15", "2023-12-01", "2022-06-30"],  # dates are not phone numbers
        ["4111 1111 1111 1112"] * 3,  # fails the Luhn check: not a card
        ["Month-to-month", "One year", "Two year"],
        ["7590-VHVEG", "5575-GNVDE", "3668-QPYBK"],  # customer codes
        [20.5, 35.0, 50.25],
    ],
)
def test_ordinary_values_are_not_personal(values):
    assert finding("col_7", pd.Series(values)) is None


@pytest.mark.parametrize(
    ("name", "kind", "what"),
    [
        ("email", "direct", "e-mail addresses"),
        ("customerEmail", "direct", "e-mail addresses"),
        ("first_name", "direct", "personal names"),
        ("Name", "direct", "personal names"),
        ("phone_number", "direct", "phone numbers"),
        ("ip_address", "direct", "IP addresses"),
        ("date_of_birth", "quasi", "birth dates"),
        ("zip_code", "quasi", "postcodes"),
        ("PostalCode", "quasi", "postcodes"),
    ],
)
def test_names_that_say_personal_are_found(name, kind, what):
    found = finding(name, pd.Series(["a", "b"]))

    assert (found.kind, found.what, found.evidence) == (kind, what, "its name")


def test_a_personal_name_over_a_few_repeated_values_is_not_personal():
    assert finding("phone_service", pd.Series([0, 1] * 50)) is None
    assert finding("phone_service", pd.Series(["Yes", "No"] * 50)) is None
    assert finding("phone", pd.Series([f"{i}" for i in range(50)])).what == "phone numbers"


@pytest.mark.parametrize(
    "name", ["X3Ssn.Porch", "product_name", "plan_name", "shipping", "tip", "zipper_size", "tenure", "mailbox"]
)
def test_names_that_only_contain_a_personal_word_are_not_found(name):
    assert finding(name, pd.Series(["a", "b"])) is None


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"type": "string", "pii": "secret"}, "pii must be one of"),
        ({"type": "string", "pii": "direct"}, "needs handling"),
        ({"type": "string", "pii": "direct", "handling": "keep"}, "needs a reason"),
        ({"type": "string", "pii": "direct", "handling": "drop", "reason": "x"}, "reason applies to handling: keep"),
        ({"type": "integer", "pii": "quasi", "handling": "hash"}, "declare type: string"),
        ({"type": "string", "pii": "quasi", "handling": "hash", "categories": ["a"]}, "cannot list categories"),
        ({"type": "string", "pii": "none", "handling": "drop"}, "apply to personal columns"),
        ({"type": "string", "handling": "drop"}, "apply to personal columns"),
    ],
)
def test_a_column_declaration_that_cannot_be_carried_out_is_refused(declared, message):
    with pytest.raises(ValueError, match=message):
        ColumnSpec(**declared)


def test_the_target_cannot_be_dropped_or_hashed(data_section):
    data_section["contract"]["columns"]["churn"] = {"type": "string", "pii": "quasi", "handling": "hash"}

    with pytest.raises(ValueError, match="the target cannot have handling: hash"):
        config.build(DataSpec, data_section, "data")


def test_a_dropped_column_is_no_feature_and_may_be_absent_a_hashed_one_is_a_feature(data_section, mixed_frame):
    spec = _spec(
        data_section,
        email={"type": "string", "pii": "direct", "handling": "drop"},
        postcode={"type": "string", "pii": "quasi", "handling": "hash"},
        age={"type": "integer", "pii": "quasi", "handling": "keep", "reason": "a rating factor"},
    )
    frame = mixed_frame(40).assign(postcode="h" * 32, age=np.arange(40))

    assert "email" not in spec.features and "postcode" in spec.features and "age" in spec.features
    assert spec.contract.personal == PersonalData(
        drop=("email",),
        hash=("postcode",),
        kept={"age": "a rating factor"},
        kinds={"email": "direct", "postcode": "quasi", "age": "quasi"},
    )
    assert check_contract(frame, spec).passed


def test_an_undeclared_column_that_looks_personal_is_a_warning_or_under_fail_a_violation(data_section, mixed_frame):
    frame = mixed_frame(40).assign(contact=EMAILS)

    warned = check_contract(frame, _spec(data_section))
    data_section["contract"]["undeclared_pii"] = "fail"
    failed = check_contract(frame, _spec(data_section))

    message = next(w.message for w in warned.warnings if w.rule == "personal_data")
    assert warned.passed
    assert "column 'contact' looks like direct personal data (e-mail addresses" in message
    assert "pii: direct" in message
    assert [v.column for v in failed.violations] == ["contact"]


def test_a_column_reviewed_as_not_personal_is_not_named(data_section, mixed_frame):
    spec = _spec(data_section, name={"type": "string", "pii": "none"})

    result = check_contract(mixed_frame(40).assign(name="plan B"), spec)

    assert not [w for w in result.warnings if w.rule == "personal_data"]


def test_the_draft_proposes_a_declaration_and_writes_no_personal_value(mixed_frame):
    frame = mixed_frame(40).assign(
        contact=EMAILS, user_id=[f"u{i}@example.org" for i in range(40)], zip_code=[f"SW{i} 1AA" for i in range(40)]
    )

    drafted = schema.draft(frame, "tiny", {"kind": "file", "path": "x.csv", "format": "csv"}, "churn", origin="x.csv")
    columns = yaml.safe_load(drafted.text)["contract"]["columns"]

    assert columns["contact"] == {"type": "string", "pii": "direct", "handling": "drop"}
    assert columns["user_id"] == {"type": "string", "role": "id", "pii": "direct", "handling": "hash"}
    assert columns["zip_code"] == {"type": "string", "pii": "quasi", "handling": "drop"}
    assert "example.org" not in drafted.text and "SW1A" not in drafted.text
    assert "personal data (review): contact (drop), user_id (hash), zip_code (drop)" in drafted.summary
