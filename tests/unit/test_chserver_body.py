"""A request body held in pieces: its head and tail equal the same slices of the whole, wherever the pieces end;
an insert's statement is found in its first bytes only when that is safe."""

from __future__ import annotations

import itertools
import random

import pytest

from gwtel.allocator import ALLOCATOR_ENV, missing_settings
from gwtel.chserver import executor
from gwtel.chserver.body import Body
from gwtel.chserver.errors import ChError
from gwtel.chserver.sqltext import plan_insert


def split(data: bytes, rng: random.Random) -> Body:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 6)))) if len(data) > 1 else []
    bounds = [0, *cuts, len(data)]
    return Body([data[a:b] for a, b in itertools.pairwise(bounds)] if data else [])


def test_head_tail_whole_equal_slices_of_the_whole() -> None:
    rng = random.Random(5)
    for _ in range(500):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 60)))
        body = split(data, rng)
        assert len(body) == len(data) and body.whole() == data
        for n in range(len(data) + 2):
            assert body.head(n) == data[:n]
            assert b"".join(body.tail(n)) == data[n:]
            assert all(body.tail(n))  # no empty piece is handed to the engine


def test_tail_hands_on_the_later_pieces_as_read() -> None:
    pieces = [b"INSERT INTO t FORMAT TSV\n1\n", b"2\n3\n", b"4\n"]
    tail = list(Body(pieces).tail(len(b"INSERT INTO t FORMAT TSV\n")))
    assert tail == [b"1\n", b"2\n3\n", b"4\n"]
    assert tail[1] is pieces[1] and tail[2] is pieces[2]  # not copied


def big(head: str, rows: int = 40_000) -> Body:
    return Body([head.encode(), b"1\t\xe6\x97\xa5\xe6\x9c\xac\n" * rows])


def test_split_insert_agrees_with_the_whole_text() -> None:
    head = "INSERT INTO db.t (a, b) SETTINGS x = 1 FORMAT TSV\n"
    body = big(head)
    header, start, fmt = executor._split_insert(body) or ("", -1, "")
    whole = plan_insert(body.whole().decode("latin-1"), "")
    assert (fmt, start) == (whole.fmt, whole.data_start) == ("TSV", len(head))
    assert header == head[:start]


@pytest.mark.parametrize(
    "head",
    [
        "/*" + "x" * (70 << 10) + "*/ INSERT INTO t FORMAT TSV\n",  # the statement beyond the first bytes
        "INSERT INTO t FORMAT" + " " * (64 << 10) + "TSV\n",  # the format name after them
        "INSERT INTO t FORMAT TSV\n",  # a small body: the first bytes are the whole
    ],
)
def test_a_statement_not_in_the_first_bytes_is_found_in_the_whole(head: str) -> None:
    body = big(head, rows=10) if len(head) < 100 else big(head)
    assert executor._split_insert(body) == (head, len(head), "TSV")


@pytest.mark.parametrize("head", ["SELECT 1 FORMAT TSV\n", "INSERT INTO t SELECT * FROM s\n"])
def test_other_statements_run_as_text(head: str) -> None:
    assert executor._split_insert(big(head)) is None


def test_an_insert_without_data_has_its_data_at_the_end() -> None:
    assert executor._split_insert(Body.of(b"INSERT INTO t FORMAT TSV")) == ("INSERT INTO t FORMAT TSV", 24, "TSV")


def test_an_empty_body_is_an_empty_query() -> None:
    with pytest.raises(ChError, match="Empty query"):
        executor._split_insert(Body.of(b"  \n"))


def test_allocator_settings_left_as_the_operator_set_them() -> None:
    assert missing_settings({}) == ALLOCATOR_ENV
    assert missing_settings({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {
        "JE_MALLOC_CONF": ALLOCATOR_ENV["JE_MALLOC_CONF"]
    }
