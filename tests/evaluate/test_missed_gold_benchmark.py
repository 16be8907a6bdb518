"""``benchmarks/missed_gold.py``: its table against shares worked out by hand."""

from __future__ import annotations

from helpers import load_benchmark

from dineuro.evaluate.missed import MissedGold


def _missed(**lengths) -> dict[str, float]:
    """Every class, 0 unless given (keyword names with _ for spaces)."""
    classes = ("blind", "unsure", "short of a tip", "alongside", "traced piece",
               "untraced piece")
    return {key: lengths.get(key.replace(" ", "_"), 0.0) for key in classes}


def test_the_table_gives_each_stacks_shares_the_pooled_ones_and_the_ceiling():
    benchmark = load_benchmark("missed_gold")
    a = MissedGold(10.0, 6.0, _missed(blind=2.0, alongside=0.5, short_of_a_tip=0.5,
                                      untraced_piece=1.0))
    b = MissedGold(30.0, 27.0, _missed(unsure=3.0))
    ceiling = MissedGold(40.0, 39.0, _missed(short_of_a_tip=1.0))
    lines = benchmark.table({"s1": a, "s2": b}, ceiling).splitlines()
    assert lines[0] == ("| stack | gold length | recalled | blind | unsure | short of a tip "
                        "| alongside | traced piece | untraced piece |")
    assert lines[2] == "| s1 | 10 | 0.600 | 0.200 | 0.000 | 0.050 | 0.050 | 0.000 | 0.100 |"
    assert lines[3] == "| s2 | 30 | 0.900 | 0.000 | 0.100 | 0.000 | 0.000 | 0.000 | 0.000 |"
    # pooled by length: 33 of 40 recalled, 2 blind, 3 unsure, 0.5 + 0.5 beside, 1 untraced
    assert lines[4] == ("| all (pooled by length) | 40 | 0.825 | 0.050 | 0.075 | 0.013 | 0.013 "
                        "| 0.000 | 0.025 |")
    assert lines[5] == ("| all, gold mask traced | 40 | 0.975 | 0.000 | 0.000 | 0.025 | 0.000 "
                        "| 0.000 | 0.000 |")
