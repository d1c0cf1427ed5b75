"""Sets of item indexes as text (`1,3-5,7`), as batch/v1 Indexed Jobs write completedIndexes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from procjob.core.itemset import parse, render
from procjob.models.fanout import MAX_ITEMS


def test_runs_become_ranges_in_order() -> None:
    assert render([7, 3, 4, 5, 1, 4]) == "1,3-5,7"
    assert render([]) == ""
    assert parse("1,3-5,7") == {1, 3, 4, 5, 7}


def test_text_that_is_not_a_set_of_indexes_is_ignored_part_by_part() -> None:
    assert parse("") == set()
    assert parse("x, 2 ,3-,-4,5-3,9-10") == {2, 9, 10}
    assert parse(f"{MAX_ITEMS - 2}-999999999999") == {MAX_ITEMS - 2, MAX_ITEMS - 1}


@given(st.sets(st.integers(0, MAX_ITEMS - 1), max_size=300))
def test_render_and_parse_agree(indexes: set[int]) -> None:
    assert parse(render(indexes)) == indexes


def test_the_longest_text_fits_the_status_field() -> None:
    assert len(render(range(0, MAX_ITEMS, 2))) < 65536
