"""safe_files.read_record, the one reader of the store's JSON records: the file, then the format, then
the fields, each failure one UnreadableFile naming the file; a FIFO never blocks it."""

import json
import os

import pytest

from vae_core import experiments
from vae_core.safe_files import FieldError, UnreadableFile, read_record

FORMAT = "vae-studio-test-record"


def _parse(record: dict, name: str) -> tuple[str, int]:
    if not isinstance(record.get("count"), int):
        raise FieldError("its count is not a whole number")
    return name, record["count"]


def _written(tmp_path, content) -> str:
    path = tmp_path / "r.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_a_record_is_what_its_parser_makes_of_it(tmp_path):
    assert read_record(_written(tmp_path, {"format": FORMAT, "count": 3}), 1000, FORMAT, _parse) == ("r.json", 3)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"format": "another", "count": 3}, f"r.json: it is not a {FORMAT} record"),
        ([1, 2], f"r.json: it is not a {FORMAT} record"),
        ({"format": FORMAT, "count": "3"}, "r.json: its count is not a whole number"),
        ("{", "r.json: not valid JSON"),
    ],
)
def test_a_wrong_record_is_one_unreadable_file_naming_it(tmp_path, content, message):
    with pytest.raises(UnreadableFile) as raised:
        read_record(_written(tmp_path, content), 1000, FORMAT, _parse)
    assert str(raised.value) == message


def test_a_record_of_no_format_is_any_object(tmp_path):
    assert read_record(_written(tmp_path, {"count": 1}), 1000, None, _parse) == ("r.json", 1)
    with pytest.raises(UnreadableFile) as raised:
        read_record(_written(tmp_path, [1]), 1000, None, _parse)
    assert str(raised.value) == "r.json: not an object"


def test_a_fifo_named_like_a_record_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "r.json")
    with pytest.raises(UnreadableFile) as raised:
        read_record(tmp_path / "r.json", 1000, FORMAT, _parse)
    assert str(raised.value) == "r.json: not a regular file"


def test_a_fifo_in_place_of_a_finding_is_no_finding(tmp_path):
    name = next(iter(experiments.EXPERIMENTS))
    path = experiments.finding_path(tmp_path, name)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    assert experiments.saved_findings(tmp_path, name) == []
