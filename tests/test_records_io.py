"""Record shards read by orjson + ISA-L and written back line for line: the same records, reasons and bytes
as the ``json`` + zlib path they replace (``records.py``)."""
from __future__ import annotations

import gzip
import json

import pytest

from megatron_snow import records
from megatron_snow.records import BadRecord, CodeRecord, encode_shard, iter_json_lines, read_shard_checked


def _stdlib_lines(recs: list[CodeRecord]) -> bytes:
    """The bytes every shard has always held: ``json`` lines, sorted keys, UTF-8."""
    return b"".join((json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=True) + "\n").encode() for r in recs)


def _recs() -> list[CodeRecord]:
    return [CodeRecord(id=f"r{i}", content=f"def f{i}():\n    return '\u00e9\u2028\\x00{i}'\n", language="python",
                       repo="o/r", path=f"p{i}.py", source="s", license=None if i % 2 else "mit",
                       meta={"n": i, "deep": {"list": [1, "two", None]}}) for i in range(5)]


def test_unchanged_records_are_written_as_read_and_changed_ones_are_encoded_again(tmp_path):
    shard = tmp_path / "part-00000.jsonl.gz"
    records.write_shard(shard, _recs(), 1)
    assert gzip.decompress(shard.read_bytes()) == _stdlib_lines(_recs())
    got = list(read_shard_checked(shard))
    assert all(r.line_if_unchanged() is not None for r in got)
    # every way a step changes a record: a field assigned, meta assigned, meta changed in place (also nested)
    got[1].content = got[1].content + "# more\n"
    got[2].meta["pii"] = {"email": 1}
    got[3].meta["deep"]["list"].append(4)
    got[4].license = "apache-2.0"
    assert got[0].line_if_unchanged() is not None
    assert [r.line_if_unchanged() for r in got[1:]] == [None] * 4
    data, n, nbytes = encode_shard(got, 1)
    assert gzip.decompress(data) == _stdlib_lines(got)
    assert (n, nbytes) == (5, sum(len(r.content.encode()) for r in got))


def test_a_line_with_other_fields_or_without_a_newline_is_encoded_again(tmp_path):
    f = tmp_path / "x.jsonl"
    a = {"id": "a", "content": "x = 1\n", "extra_field": 7}
    b = {"meta": {}, "id": "b", "content": "y=2\n", "language": "", "repo": "", "path": "", "source": "",
         "license": None}
    f.write_bytes((json.dumps(a) + "\n" + json.dumps(b)).encode())  # foreign order, spacing, no final newline
    got = list(read_shard_checked(f))
    assert [r.line_if_unchanged() for r in got] == [None, None]
    assert gzip.decompress(encode_shard(got)[0]) == _stdlib_lines(got)
    assert got[0].meta["extra"] == {"extra_field": 7}


@pytest.mark.parametrize("line, value", [
    (b'{"id": "a", "content": "", "meta": {"big": 123456789012345678901234567890}}', 123456789012345678901234567890),
    (b'{"id": "a", "content": "", "meta": {"f": 0.1}}', 0.1),
    (b'{"id": "a", "content": "", "meta": {"f": [1e400]}}', [float("inf")]),
    (b'{"id": "a", "content": "", "meta": {"f": -0.0}}', -0.0),
])
def test_values_read_are_the_json_modules(tmp_path, line, value):
    # orjson reads an integer beyond 64 bits as a float and refuses 1e400: json's values are kept
    f = tmp_path / "x.jsonl"
    f.write_bytes(line + b"\n")
    (item,) = list(iter_json_lines(f))
    assert item[1] == json.loads(line)
    got = next(iter(item[1]["meta"].values()))
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("line, reason", [
    (b'{"id": "a", "content": "\\ud800"}', "invalid_utf8"),
    ('{"id": "a", "content": "\udcff"}'.encode("utf-8", "surrogatepass"), "invalid_utf8"),
    (b'{"id": "a", "content": NaN}', None),  # json takes NaN; orjson does not
    (b'{"id": "a", "content": "x"} trailing', "invalid_json"),
    (b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
    (b"[1, 2]", "not_an_object"),
    (b"   ", None),  # a blank line: skipped
])
def test_lines_orjson_refuses_get_the_json_modules_reasons(tmp_path, line, reason):
    f = tmp_path / "x.jsonl"
    f.write_bytes(line + b"\n")
    items = list(iter_json_lines(f))
    if line.strip() == b"":
        assert items == []
    elif reason is None:
        assert not isinstance(items[0], BadRecord)
    else:
        assert isinstance(items[0], BadRecord) and items[0].reason == reason


@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_every_level_gives_gzip_any_reader_takes(tmp_path, level):
    data, _, _ = encode_shard(_recs(), level)
    assert gzip.decompress(data) == _stdlib_lines(_recs())
    assert data == encode_shard(_recs(), level)[0]  # deterministic: no timestamp


def test_a_cut_gzip_gives_every_whole_line_zlib_gives(tmp_path):
    # ISA-L alone drops the whole lines of its last block before the damage; the reader gives them
    lines = [json.dumps({"id": f"t{i}", "content": f"x_{i} = {i}\n" * 400}) for i in range(300)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    readable = 0
    with gzip.open(cut, "rb") as z:
        try:
            for _ in z:
                readable += 1
        except EOFError:
            pass
    items = list(iter_json_lines(cut))
    assert readable > 0 and len(items) == readable + 1
    assert [d["id"] for _, d in items[:-1]] == [f"t{i}" for i in range(readable)]
    assert isinstance(items[-1], BadRecord) and items[-1].reason == "corrupt_gzip"
