import pytest

from mlgate.adapters import sources
from mlgate.errors import StageError
from mlgate.modelling.data import SourceSpec


def read_csv(path, **options):
    return sources.read(SourceSpec(kind="file", path=str(path), options=options))


@pytest.mark.parametrize(
    "content, detail",
    [
        (b"a;b;c\n1;2;3\n4;5;6\n", "the file seems to use ';' as separator; set data.source.options.sep"),
        (b"x,x,y\n1,2,3\n", "duplicate column name(s) ['x'] in the header row"),
        (b"name,city\nJos\xe9,Paris\n", "not valid utf-8 text (invalid continuation byte at byte"),
        (b'a,b\n1,"unterminated\n2,3\n', "cannot be read as csv: Error tokenizing data. C error: EOF inside string"),
        (
            b"a,b\n1,2\n3,4,5\n",
            "cannot be read as csv: Error tokenizing data. C error: Expected 2 fields in line 3, saw 3",
        ),
    ],
)
def test_malformed_csv_gets_a_clear_message_naming_the_file(tmp_path, content, detail):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(StageError) as raised:
        read_csv(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert detail in str(raised.value)


def test_read_options_reach_pandas(tmp_path):
    path = tmp_path / "european.csv"
    path.write_bytes("name;amount\nJosé;1,5\nAnne;n/a\n".encode("latin-1"))
    frame = read_csv(path, sep=";", encoding="latin-1", decimal=",", na_values=["n/a"])
    assert frame["name"].tolist() == ["José", "Anne"]
    assert frame["amount"].iloc[0] == 1.5 and frame["amount"].isna().iloc[1]


def test_an_unknown_read_option_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"data.source.options: unknown option\(s\) \['engine'\]"):
        SourceSpec(kind="file", path="x.csv", options={"engine": "pyarrow"})


def test_a_sql_source_needs_exactly_one_of_table_or_query():
    with pytest.raises(ValueError, match="exactly one of table or query"):
        SourceSpec(kind="sql", url="sqlite:///x.db", table="t", query="select 1")


def test_file_fingerprint_follows_the_content(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    spec = SourceSpec(kind="file", path=str(path))
    first = sources.fingerprint(spec)
    assert sources.fingerprint(spec) == first
    path.write_text("a,b\n1,3\n")
    assert sources.fingerprint(spec)["sha256"] != first["sha256"]


def test_an_fsspec_url_is_read_and_fingerprinted():
    import fsspec

    with fsspec.open("memory://mlgate-test/rows.csv", "w") as handle:
        handle.write("a,b\n1,x\n2,y\n")
    spec = SourceSpec(kind="file", path="memory://mlgate-test/rows.csv")
    assert sources.read(spec)["b"].tolist() == ["x", "y"]
    assert sources.fingerprint(spec)["size"] == "12"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://ana:pw@example.com/x.csv?token=t0&sep=1", "https://ana:***@example.com/x.csv?token=***&sep=1"),
        (
            "s3://bucket/x.parquet?X-Amz-Signature=abc&X-Amz-Credential=id",
            "s3://bucket/x.parquet?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("https://api.example.com/v1/rows?page=2", "https://api.example.com/v1/rows?page=2"),
        ("https://ana@example.com/x.csv", "https://ana@example.com/x.csv"),
        ("data/source/telco.csv", "data/source/telco.csv"),
    ],
)
def test_locations_mask_passwords_and_secret_query_values(url, shown):
    assert sources.location(SourceSpec(kind="file", path=url)) == shown
    assert sources.location(SourceSpec(kind="http", url=url)) == shown


def test_a_secret_in_a_file_url_stays_out_of_the_error():
    spec = SourceSpec(kind="file", path="memory://mlgate-test/absent.csv?token=t0ken")
    with pytest.raises(StageError) as raised:
        sources.read(spec)
    assert "t0ken" not in str(raised.value) and "token=***" in str(raised.value)
