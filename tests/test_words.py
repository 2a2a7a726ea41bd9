"""How the engine's sentences count and list things."""

from __future__ import annotations

from interp.words import counted, joined, percent


def test_a_list_reads_as_a_sentence_lists_it():
    assert [joined(x) for x in ([], ["a"], ["a", "b"], ["a", "b", "c"], iter("abcd"))] == [
        "", "a", "a and b", "a, b and c", "a, b, c and d"]  # fmt: skip


def test_counts_take_the_right_number_and_small_shares_are_not_called_zero():
    assert (counted(1, "entry", "entries"), counted(3, "entry", "entries"), counted(1200, "file")) == (
        "1 entry", "3 entries", "1,200 files")  # fmt: skip
    assert (percent(0.0), percent(0.001), percent(0.5)) == ("0%", "less than 1%", "50%")
