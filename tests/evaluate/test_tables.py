"""The one mean ± std and CSV cell that the folder scores and the ablation tables share."""

import csv
import math

from dineuro.evaluate.tables import MeanStd, csv_cell, mean_std, plus_minus, write_csv


def test_mean_std_is_over_the_finite_values_with_ddof_0():
    assert mean_std([1.0, 3.0, math.inf, math.nan]) == MeanStd(2.0, 1.0)
    assert mean_std(iter([0.5])) == (0.5, 0.0)
    assert all(math.isnan(v) for v in mean_std([math.inf]))
    assert all(math.isnan(v) for v in mean_std([]))


def test_plus_minus_rounds_and_says_when_nothing_was_averaged():
    assert plus_minus(MeanStd(0.8125, 0.25), 2) == "0.81 ± 0.25"
    assert plus_minus(mean_std([]), 3) == "n/a"


def test_csv_cells_are_empty_only_where_undefined(tmp_path):
    assert [csv_cell(v) for v in (None, math.nan, math.inf, 0, "")] == ["", "", math.inf, 0, ""]
    path = write_csv(tmp_path / "t.csv", ("a", "b"), [(1.5, None), (math.nan, math.inf)])
    with path.open(newline="") as f:
        assert list(csv.reader(f)) == [["a", "b"], ["1.5", ""], ["", "inf"]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
