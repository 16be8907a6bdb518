"""Reconstruction scores in evaluate: traced NAME.swc against gold SWCs, in tables and the CLI."""

import csv

import numpy as np
import pytest
from helpers import invoke

from dineuro.data.dataset import write_sample
from dineuro.errors import InputError
from dineuro.evaluate import (
    compare_trees,
    evaluate_folder,
    markdown_table,
    read_trace,
    write_tables,
)
from dineuro.io import SwcTree, Volume, read_swc, write_swc, write_volume

SHAPE, SPACING = (10, 16, 18), (2.0, 1.0, 1.0)
BOX = (slice(4, 7), slice(6, 11), slice(2, 16))  # 3 * 5 * 14 = 210 voxels


def line(dy=0.0, dz=0.0):
    """A straight neurite along x from x = 3 to 14, moved by dy, dz voxels."""
    return SwcTree([1, 2], [1, 3], [[3, 8 + dy, 5 + dz], [14, 8 + dy, 5 + dz]], [1.5, 1.5],
                   [-1, 1])


def box_mask():
    mask = np.zeros(SHAPE, np.uint8)
    mask[BOX] = 1
    return mask


def no_nodes():
    """What the tracer returns for a map with nothing above its threshold."""
    return SwcTree([], [], np.zeros((0, 3)), [], [], ["nothing above the high threshold"])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    gold, pred = tmp_path_factory.mktemp("gold"), tmp_path_factory.mktemp("pred")
    image = Volume(np.zeros(SHAPE, np.uint16), SPACING)
    traces = {"same": line(), "shifted_y": line(dy=1.5), "shifted_z": line(dz=1.5),
              "empty": no_nodes(), "no_gold_swc": line()}
    for name in (*traces, "untraced"):
        write_sample(gold, name, image, box_mask(), None if name == "no_gold_swc" else line())
        write_volume(pred / f"{name}_mask.tif", box_mask())
    for name, tree in traces.items():
        write_swc(pred / f"{name}.swc", tree, allow_empty=True)
    return pred, gold


@pytest.fixture(scope="module")
def table(folders):
    return evaluate_folder(*folders)


def traces_by_name(table):
    return {row.name: row.trace for row in table.rows}


def test_a_gold_swc_against_itself_scores_perfectly(table):
    same = traces_by_name(table)["same"]
    assert same.trace == "same.swc"
    assert (same.esa, same.dsa, same.pds, same.precision, same.recall, same.f1,
            same.hairiness_ratio) == (0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)
    assert ("| same | same_mask.tif | 1.000 | 0.00 | 1.000 | 1.000 | 210 | 210 | 0.00 | 0.00 "
            "| 0.000 | 1.000 | 1.00 |  |") in markdown_table(table)


def test_a_parallel_shift_gives_esa_equal_to_the_shift_in_swc_units(folders, table):
    traces = traces_by_name(table)
    # Every point of either line is exactly the shift away from the other line; at threshold 2
    # none is apart, so DSA (the mean over points apart) is 0.
    for name in ("shifted_y", "shifted_z"):  # z not scaled by its spacing of 2: raw SWC units
        shifted = traces[name]
        assert (shifted.esa, shifted.dsa, shifted.pds, shifted.f1) == pytest.approx(
            (1.5, 0.0, 0.0, 1.0)), name
    tighter = traces_by_name(evaluate_folder(*folders, swc_threshold=1.0))
    for name in ("shifted_y", "shifted_z"):  # 1.5 >= 1: every point apart
        shifted = tighter[name]
        assert (shifted.esa, shifted.dsa, shifted.pds, shifted.f1) == pytest.approx(
            (1.5, 1.5, 1.0, 0.0)), name


def test_scores_are_those_of_compare_trees_on_an_anisotropic_stack(tmp_path):
    # Oblique in z, so scaling z by the spacing of 3 would change every distance.
    gold = SwcTree([1, 2, 3], [1, 3, 3], [[2, 8, 1], [9, 8, 4], [15, 9, 8]], [1, 1, 1],
                   [-1, 1, 2])
    traced = SwcTree([1, 2], [1, 3], [[3, 9, 2], [14, 7, 5]], [1, 1], [-1, 1])
    write_volume(tmp_path / "gold" / "a.tif", box_mask(), (3.0, 1.0, 1.0))
    write_swc(tmp_path / "gold" / "a.swc", gold)
    write_volume(tmp_path / "pred" / "a_mask.tif", box_mask())
    write_swc(tmp_path / "pred" / "a.swc", traced)
    (row,) = evaluate_folder(tmp_path / "pred", tmp_path / "gold").rows
    expected = compare_trees(read_swc(tmp_path / "pred" / "a.swc"),
                             read_swc(tmp_path / "gold" / "a.swc"))
    scores = ("esa", "dsa", "pds", "precision", "recall", "f1")
    assert [getattr(row.trace, s) for s in scores] == [getattr(expected, s) for s in scores]
    assert 0 < expected.pds < 1  # some points apart, some not: the threshold matters too


def test_a_trace_with_spurs_has_a_hairiness_ratio_above_1(tmp_path):
    # The gold line (length 11, 2 tips) traced with 2 spurs of length 2: 4 tips along 15.
    spurred = SwcTree([1, 2, 3, 4, 5, 6], [3] * 6, [[3, 8, 5], [7, 8, 5], [11, 8, 5], [14, 8, 5],
                                                    [7, 10, 5], [11, 6, 5]],
                      [1] * 6, [-1, 1, 2, 3, 2, 3])
    write_volume(tmp_path / "gold" / "a.tif", box_mask(), SPACING)
    write_swc(tmp_path / "gold" / "a.swc", line())
    write_volume(tmp_path / "pred" / "a_mask.tif", box_mask())
    write_swc(tmp_path / "pred" / "a.swc", spurred)
    table = evaluate_folder(tmp_path / "pred", tmp_path / "gold")
    expected = (4 / 15) / (2 / 11)
    assert table.rows[0].trace.hairiness_ratio == pytest.approx(expected)
    assert f"| {expected:.2f} |  |" in markdown_table(table)  # the last cell: no note


def test_the_hairiness_median_is_not_moved_by_one_outlying_stack(tmp_path):
    # "a" traced as it is (ratio 1), "b" with 2 spurs of length 2 (4 tips along 15: ratio
    # (4 / 15) / (2 / 11)), "c" a speck of length 1 (2 tips: ratio (2 / 1) / (2 / 11) = 11).
    spurred = SwcTree([1, 2, 3, 4, 5, 6], [3] * 6, [[3, 8, 5], [7, 8, 5], [11, 8, 5], [14, 8, 5],
                                                    [7, 10, 5], [11, 6, 5]],
                      [1] * 6, [-1, 1, 2, 3, 2, 3])
    speck = SwcTree([1, 2], [3, 3], [[3, 8, 5], [4, 8, 5]], [1, 1], [-1, 1])
    for name, traced in (("a", line()), ("b", spurred), ("c", speck)):
        write_volume(tmp_path / "gold" / f"{name}.tif", box_mask(), SPACING)
        write_swc(tmp_path / "gold" / f"{name}.swc", line())
        write_volume(tmp_path / "pred" / f"{name}_mask.tif", box_mask())
        write_swc(tmp_path / "pred" / f"{name}.swc", traced)
    table = evaluate_folder(tmp_path / "pred", tmp_path / "gold")
    summary = table.summary().traces
    ratios = [1.0, (4 / 15) / (2 / 11), 11.0]
    assert [row.trace.hairiness_ratio for row in table.rows] == pytest.approx(ratios)
    assert summary.hairiness_ratio.mean == pytest.approx(sum(ratios) / 3)  # 4.5: the speck's 11
    assert summary.hairiness_median == pytest.approx(ratios[1])
    assert f"median over the stacks, which one outlying stack moves less than the mean, is " \
           f"{ratios[1]:.2f}." in markdown_table(table)


def test_missing_and_empty_traces_are_listed(table):
    traces = traces_by_name(table)
    assert list(traces) == ["empty", "no_gold_swc", "same", "shifted_y", "shifted_z",
                            "untraced"]
    assert (traces["untraced"].note, traces["untraced"].trace, traces["untraced"].f1) == (
        "no trace", "", None)
    assert (traces["no_gold_swc"].note, traces["no_gold_swc"].esa) == ("no gold SWC", None)
    empty = traces["empty"]
    assert (empty.note, empty.recall, empty.f1, empty.esa, empty.precision,
            empty.hairiness_ratio) == ("empty trace", 0.0, 0.0, None, None, None)
    markdown = markdown_table(table)
    assert "| untraced | untraced_mask.tif | 1.000 | 0.00 | 1.000 | 1.000 | 210 | 210 " \
           "|  |  |  |  |  | no trace |" in markdown
    assert "|  |  |  | 0.000 |  | empty trace |" in markdown


def test_summary_and_tables(table, tmp_path):
    summary = table.summary().traces
    assert (summary.n_scored, summary.n_missing, summary.n_empty) == (4, 2, 1)
    assert summary.f1 == pytest.approx((0.75, np.std([1, 1, 1, 0])))  # with the empty's 0
    assert summary.esa == pytest.approx((1.0, np.std([0.0, 1.5, 1.5])))  # without the empty
    assert summary.hairiness_ratio == (1.0, 0.0)  # equal lines, the empty left out
    markdown = markdown_table(table)
    assert "| ESA | DSA | PDS | F1 | hairiness ratio | note |" in markdown
    total = next(row for row in markdown.splitlines() if "**mean ± std**" in row)
    assert "| 1.00 ± 0.71 |" in total and "| 0.750 ± 0.433 | 1.00 ± 0.00 |" in total
    assert "1 empty trace(s), 2 without SWC score" in total
    assert "in SWC units (voxels), as Vaa3D's neuron_distance" in markdown
    assert "at least 2 from" in markdown and "4 stacks with both SWCs" in markdown

    csv_path, _ = write_tables(table, tmp_path)
    with open(csv_path, newline="") as f:
        read = {row["name"]: row for row in csv.DictReader(f)}
    assert list(read["same"])[-10:] == ["trace", "esa", "dsa", "pds", "swc_precision",
                                        "swc_precision_unlabelled_aside", "swc_recall",
                                        "swc_f1", "swc_hairiness_ratio", "note"]
    # no unlabelled/ in this gold folder: nothing to set aside
    assert read["shifted_y"]["swc_precision_unlabelled_aside"] == read["shifted_y"][
        "swc_precision"]
    assert (read["same"]["swc_hairiness_ratio"], read["empty"]["swc_hairiness_ratio"]) == (
        "1.0", "")
    assert float(read["shifted_y"]["esa"]) == pytest.approx(1.5)
    assert (read["same"]["swc_f1"], read["same"]["trace"]) == ("1.0", "same.swc")
    assert (read["empty"]["esa"], read["empty"]["swc_recall"]) == ("", "0.0")
    assert (read["untraced"]["esa"], read["untraced"]["note"]) == ("", "no trace")


def test_trace_on_a_datasets_unlabelled_neurites_is_set_aside_in_the_csv(tmp_path):
    # Gold: the line at y = 8. The trace also follows a line at y = 12 that the dataset lists
    # in unlabelled/, as synth does for the fragments of other neurons it draws: plain
    # precision is 1/2, with that line set aside 1.
    traced = SwcTree([1, 2, 3, 4], [3] * 4, [[3, 8, 5], [14, 8, 5], [3, 12, 5], [14, 12, 5]],
                     [1] * 4, [-1, 1, -1, 3])
    other = SwcTree([1, 2], [3, 3], [[3, 12, 5], [14, 12, 5]], [1, 1], [-1, 1])
    write_sample(tmp_path / "gold", "a", Volume(np.zeros(SHAPE, np.uint16), SPACING),
                 box_mask(), line())
    write_swc(tmp_path / "gold" / "unlabelled" / "a.swc", other)
    write_volume(tmp_path / "pred" / "a_mask.tif", box_mask())
    write_swc(tmp_path / "pred" / "a.swc", traced)
    (row,) = evaluate_folder(tmp_path / "pred", tmp_path / "gold").rows
    assert (row.trace.precision, row.trace.labelled_precision) == pytest.approx((0.5, 1.0))
    csv_path, _ = write_tables(evaluate_folder(tmp_path / "pred", tmp_path / "gold"),
                               tmp_path / "out")
    with open(csv_path, newline="") as f:
        (written,) = csv.DictReader(f)
    assert float(written["swc_precision_unlabelled_aside"]) == pytest.approx(1.0)
    assert float(written["swc_precision"]) == pytest.approx(0.5)


def test_without_traces_the_table_has_no_swc_columns(folders, tmp_path):
    pred, gold = folders
    write_volume(tmp_path / "same_mask.tif", box_mask())
    table = evaluate_folder(tmp_path, gold)
    assert table.swc_threshold is None and table.summary().traces is None
    assert all(row.trace is None for row in table.rows)
    assert "ESA" not in markdown_table(table)


def test_a_plain_gold_folder_takes_the_swc_beside_the_mask(tmp_path):
    write_volume(tmp_path / "gold" / "a.tif", box_mask(), SPACING)
    write_swc(tmp_path / "gold" / "a.swc", line())
    write_volume(tmp_path / "pred" / "a_mask.tif", box_mask())
    write_swc(tmp_path / "pred" / "a.swc", line(dy=1.0))
    (row,) = evaluate_folder(tmp_path / "pred", tmp_path / "gold").rows
    assert row.trace.esa == pytest.approx(1.0)


def test_bad_swc_input_is_refused(folders, tmp_path):
    with pytest.raises(InputError, match="swc_threshold"):
        evaluate_folder(*folders, swc_threshold=0.0)
    write_volume(tmp_path / "same_mask.tif", box_mask())
    (tmp_path / "same.swc").write_text("1 1 0 0 0 1\n")
    with pytest.raises(InputError, match="same.swc"):
        evaluate_folder(tmp_path, folders[1])


def test_read_trace_takes_a_comment_only_file_as_empty(tmp_path):
    (tmp_path / "empty.swc").write_text("# traced from a_prob.tif\n\n# spacing\n")
    assert read_trace(tmp_path / "empty.swc") is None
    write_swc(tmp_path / "a.swc", line())
    assert len(read_trace(tmp_path / "a.swc")) == 2


def test_cli_evaluate_shows_reconstruction_scores(folders, tmp_path):
    pred, gold = folders
    result = invoke("evaluate", pred, gold, "-o", tmp_path, "--swc-threshold", "1")
    assert result.code == 0, result.err
    header = next(line for line in result.out.splitlines() if line.startswith("| stack"))
    assert header.endswith("| ESA | DSA | PDS | F1 | hairiness ratio | note |")
    assert "empty trace" in result.out and "no trace" in result.out
    assert "at least 1 from" in (tmp_path / "metrics.md").read_text()
    for value in ("0", "-1", "nan"):
        bad = invoke("evaluate", pred, gold, "-o", tmp_path / "bad", "--swc-threshold", value)
        assert bad.code == 2 and "--swc-threshold should be a positive" in bad.err, value
