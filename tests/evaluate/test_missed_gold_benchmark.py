"""``benchmarks/missed_gold.py``: its table against shares worked out by hand."""

from __future__ import annotations

from helpers import load_benchmark

from dineuro.evaluate.missed import MissedGold


def test_the_table_gives_each_stacks_shares_the_pooled_ones_and_the_ceiling():
    benchmark = load_benchmark("missed_gold")
    a = MissedGold(10.0, 6.0, {"blind": 2.0, "unsure": 0.0, "beside": 1.0, "traced piece": 0.0,
                               "untraced piece": 1.0})
    b = MissedGold(30.0, 27.0, {"blind": 0.0, "unsure": 3.0, "beside": 0.0,
                                "traced piece": 0.0, "untraced piece": 0.0})
    ceiling = MissedGold(40.0, 39.0, {"blind": 0.0, "unsure": 0.0, "beside": 1.0,
                                      "traced piece": 0.0, "untraced piece": 0.0})
    lines = benchmark.table({"s1": a, "s2": b}, ceiling).splitlines()
    assert lines[0] == ("| stack | gold length | recalled | blind | unsure | beside | traced piece "
                        "| untraced piece |")
    assert lines[2] == "| s1 | 10 | 0.600 | 0.200 | 0.000 | 0.100 | 0.000 | 0.100 |"
    assert lines[3] == "| s2 | 30 | 0.900 | 0.000 | 0.100 | 0.000 | 0.000 | 0.000 |"
    # pooled by length: 33 of 40 recalled, 2 blind, 3 unsure, 1 beside, 1 untraced
    assert lines[4] == ("| all (pooled by length) | 40 | 0.825 | 0.050 | 0.075 | 0.025 | 0.000 "
                        "| 0.025 |")
    assert lines[5] == ("| all, gold mask traced | 40 | 0.975 | 0.000 | 0.000 | 0.025 | 0.000 "
                        "| 0.000 |")
