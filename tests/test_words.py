"""How the engine's sentences count and list things."""

from __future__ import annotations

from interp.words import counted, duration, epoch_line, joined, percent, plus_minus


def test_a_list_reads_as_a_sentence_lists_it():
    assert [joined(x) for x in ([], ["a"], ["a", "b"], ["a", "b", "c"], iter("abcd"))] == [
        "", "a", "a and b", "a, b and c", "a, b, c and d"]  # fmt: skip


def test_counts_take_the_right_number_and_small_shares_are_not_called_zero():
    assert (counted(1, "entry", "entries"), counted(3, "entry", "entries"), counted(1200, "file")) == (
        "1 entry", "3 entries", "1,200 files")  # fmt: skip
    assert (percent(0.0), percent(0.001), percent(0.5)) == ("0%", "less than 1%", "50%")


def test_a_training_line_says_the_time_so_far_and_about_how_long_is_left():
    assert [duration(s) for s in (0.4, 45, 89, 90, 192, 5399, 5400, 7560)] == [
        "0 s", "45 s", "89 s", "1.5 min", "3.2 min", "90.0 min", "1.5 h", "2.1 h"]  # fmt: skip
    # three epochs of twelve in 2 minutes: nine more take about six
    assert epoch_line(3, 12, 0.41234, 120) == "epoch 3/12: loss 0.4123, 2.0 min so far, about 6.0 min left"
    assert epoch_line(12, 12, 0.1, 480) == "epoch 12/12: loss 0.1000, 8.0 min so far"  # nothing left to guess


def test_a_mean_without_an_interval_is_written_alone():
    assert plus_minus(0.24, 0.05) == "0.240 ± 0.050" and plus_minus(0.3, float("nan")) == "0.300"
    assert plus_minus(0.7921, 0.1234, digits=2) == "0.79 ± 0.12"
