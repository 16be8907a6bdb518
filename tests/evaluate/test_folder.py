"""evaluate_folder and write_tables on a tiny gold dataset and hand-made predictions."""

import csv
import math

import numpy as np
import pytest

from dineuro.data.dataset import write_sample
from dineuro.data.render import render_mask
from dineuro.errors import InputError
from dineuro.evaluate import evaluate_folder, markdown_table, read_prediction, voxels, write_tables
from dineuro.io import SwcTree, Volume, write_volume

SHAPE, SPACING = (10, 16, 18), (2.0, 1.0, 1.0)
BOX = (slice(2, 6), slice(3, 11), slice(4, 12))  # 4 * 8 * 8 = 256 voxels
TREE = SwcTree([1, 2], [1, 3], [[3, 8, 5], [14, 8, 5]], [1.5, 1.5], [-1, 1])


def box_mask():
    mask = np.zeros(SHAPE, bool)
    mask[BOX] = True
    return mask


def plate(z):
    mask = np.zeros(SHAPE, bool)
    mask[z, 3:11, 4:12] = True
    return mask


def write_pred(folder, name, array):
    write_volume(folder / name, array)  # spacing 1.0: evaluation must take the gold's


@pytest.fixture(scope="module")
def gold_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gold") / "data"
    image = Volume(np.zeros(SHAPE, np.uint16), SPACING)
    for name in ("perfect", "shifted", "empty", "prob", "prob8", "unpredicted"):
        write_sample(root, name, image, box_mask(), None)
    write_sample(root, "plate", image, plate(3), None)
    write_sample(root, "traced", image, None, TREE)  # gold rendered from the SWC
    write_sample(root, "unlabelled", image, None, None)  # no gold at all
    return root


@pytest.fixture(scope="module")
def pred_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predictions")
    gold = box_mask()
    write_pred(folder, "perfect_mask.tif", gold.astype(np.uint8) * 255)
    write_pred(folder, "perfect_prob.tif", np.zeros(SHAPE, np.float32))  # scored if threshold
    write_pred(folder, "shifted_mask.tif", np.roll(gold, 1, axis=2).astype(np.uint8))
    write_pred(folder, "plate_mask.tif", plate(5).astype(np.uint8))
    write_pred(folder, "empty_mask.tif", np.zeros(SHAPE, np.uint8))
    prob = np.where(gold, 0.9, 0.0).astype(np.float32)
    prob[0, 0, :5] = 0.5  # at the threshold: background, as in predict (p > threshold)
    prob[9, 15, 17] = 0.5001
    write_pred(folder, "prob_prob.tif", prob)
    prob8 = np.where(gold, 128, 0).astype(np.uint8)  # 128 / 255 >= 0.5 > 127 / 255
    prob8[0] = 127
    write_pred(folder, "prob8_prob.tif", prob8)
    write_pred(folder, "traced_mask.tif", render_mask(TREE, SHAPE, SPACING).astype(np.uint8))
    write_pred(folder, "orphan_mask.tif", gold.astype(np.uint8))
    (folder / ".perfect2_mask.partial.tif").write_bytes(b"")  # half-written: ignored
    return folder


@pytest.fixture(scope="module")
def table(pred_dir, gold_dir):
    return evaluate_folder(pred_dir, gold_dir)


def rows_by_name(table):
    return {row.name: row for row in table.rows}


def test_every_stack_is_a_row_and_missing_ones_are_marked(table):
    rows = rows_by_name(table)
    assert list(rows) == sorted(rows)
    assert set(rows) == {"perfect", "shifted", "plate", "empty", "prob", "prob8", "traced",
                         "orphan", "unpredicted"}  # "unlabelled" has no gold and no prediction
    assert rows["orphan"].note == "no gold" and rows["orphan"].dice is None
    assert rows["unpredicted"].note == "no prediction" and rows["unpredicted"].hd95 is None
    assert [row.name for row in table.missing] == ["orphan", "unpredicted"]


def test_scores_match_hand_expectations(table):
    rows = rows_by_name(table)
    perfect = rows["perfect"]
    assert perfect.prediction == "perfect_mask.tif"
    assert (perfect.dice, perfect.hd95, perfect.precision, perfect.recall) == (1.0, 0.0, 1.0, 1.0)
    assert (perfect.pred_voxels, perfect.gold_voxels, perfect.note) == (256, 256, "")
    assert perfect.spacing == SPACING
    assert rows["shifted"].dice == pytest.approx(2 * 4 * 8 * 7 / 512)
    assert rows["shifted"].precision == pytest.approx(7 / 8)
    assert rows["plate"].dice == 0.0
    assert rows["plate"].hd95 == pytest.approx(2 * SPACING[0])  # two slices of 2 apart
    empty = rows["empty"]
    assert (empty.dice, empty.hd95, empty.pred_voxels) == (0.0, math.inf, 0)
    assert empty.note == "empty prediction"
    assert rows["prob"].pred_voxels == 257 and rows["prob"].recall == 1.0
    assert rows["prob"].precision == pytest.approx(256 / 257)
    assert (rows["prob8"].dice, rows["prob8"].pred_voxels) == (1.0, 256)
    assert rows["traced"].dice == 1.0
    assert rows["traced"].gold_voxels == np.count_nonzero(render_mask(TREE, SHAPE, SPACING))


def test_scores_match_metrics_called_directly(table, pred_dir, gold_dir):
    from dineuro.data import open_dataset

    dataset = open_dataset(gold_dir)
    for row in table.scored:
        pred = read_prediction(pred_dir / row.prediction)
        gold = dataset.label(row.name)
        assert row.dice == voxels.dice(pred, gold)
        assert row.hd95 == voxels.hd95(pred, gold, SPACING)
        assert row.precision == voxels.precision(pred, gold)
        assert row.recall == voxels.recall(pred, gold)
        assert (row.pred_voxels, row.gold_voxels) == (pred.sum(), gold.sum())


def test_summary(table):
    summary = table.summary()
    dice = [row.dice for row in table.scored]
    finite_hd = [row.hd95 for row in table.scored if math.isfinite(row.hd95)]
    assert (summary.n_scored, summary.n_missing, summary.n_empty_prediction) == (7, 2, 1)
    assert summary.dice == pytest.approx((np.mean(dice), np.std(dice)))
    assert summary.hd95 == pytest.approx((np.mean(finite_hd), np.std(finite_hd)))
    assert len(finite_hd) == 6 and summary.n_hd95_infinite == 1


def test_tables_are_written_and_read_back(table, tmp_path):
    csv_path, md_path = write_tables(table, tmp_path / "eval")
    assert (csv_path.name, md_path.name) == ("metrics.csv", "metrics.md")
    with open(csv_path, newline="") as f:
        read = {row["name"]: row for row in csv.DictReader(f)}
    assert list(read) == [row.name for row in table.rows]
    for row in table.scored:
        assert float(read[row.name]["dice"]) == row.dice
        assert float(read[row.name]["hd95"]) == row.hd95  # "inf" parses back to inf
        assert int(read[row.name]["gold_voxels"]) == row.gold_voxels
        assert float(read[row.name]["spacing_z"]) == SPACING[0]
    assert read["empty"]["note"] == "empty prediction"
    assert read["orphan"]["dice"] == "" and read["orphan"]["note"] == "no gold"

    markdown = md_path.read_text()
    assert markdown == markdown_table(table)
    summary = table.summary()
    summary_line = next(line for line in markdown.splitlines() if "**mean ± std**" in line)
    assert f"{summary.dice.mean:.3f} ± {summary.dice.std:.3f}" in summary_line
    assert f"{summary.hd95.mean:.2f} ± {summary.hd95.std:.2f}" in summary_line
    assert "1 empty prediction(s)" in summary_line and "1 infinite HD95" in summary_line
    assert "| empty | empty_mask.tif | 0.000 | inf |" in markdown
    assert "Masks scored as written" in markdown

    with pytest.raises(InputError, match="already exists"):
        write_tables(table, tmp_path / "eval")
    assert md_path.read_text() == markdown


def test_names_restrict_the_evaluation(pred_dir, gold_dir):
    table = evaluate_folder(pred_dir, gold_dir, names=["perfect", "unpredicted", "nowhere"])
    notes = {row.name: row.note for row in table.rows}
    assert notes == {"perfect": "", "unpredicted": "no prediction",
                     "nowhere": "no prediction, no gold"}


def test_plain_folder_of_gold_masks(pred_dir, tmp_path):
    write_volume(tmp_path / "plate.tif", plate(3).astype(np.uint8), SPACING)
    write_volume(tmp_path / "shifted.tiff", box_mask().astype(np.uint8) * 255, SPACING)
    table = evaluate_folder(pred_dir, tmp_path)
    rows = rows_by_name(table)
    assert rows["plate"].hd95 == pytest.approx(4.0)
    assert rows["shifted"].dice == pytest.approx(0.875)
    assert rows["perfect"].note == "no gold"


def test_a_threshold_rescores_probability_maps_where_there_are_any(pred_dir, gold_dir):
    table = evaluate_folder(pred_dir, gold_dir, threshold=0.85)
    rows = rows_by_name(table)
    assert (rows["prob"].pred_voxels, rows["prob"].dice) == (256, 1.0)  # 0.9 > 0.85 only
    assert rows["perfect"].prediction == "perfect_prob.tif"  # the map, not the mask
    assert rows["perfect"].note == "empty prediction"
    assert rows["shifted"].prediction == "shifted_mask.tif"  # no map: the mask
    assert rows["prob8"].pred_voxels == 0
    assert "Probability maps scored at p > 0.85" in markdown_table(table)
    assert table.threshold == 0.85


def test_shape_mismatch_names_both_files(gold_dir, tmp_path):
    write_pred(tmp_path, "perfect_mask.tif", np.ones((10, 16, 17), np.uint8))
    with pytest.raises(InputError) as info:
        evaluate_folder(tmp_path, gold_dir)
    message = str(info.value)
    assert "perfect_mask.tif" in message and str(gold_dir / "images" / "perfect.tif") in message
    assert "(10, 16, 17)" in message and str(SHAPE) in message


@pytest.mark.parametrize("file_name, array, match", [
    ("a_prob.tif", np.full(SHAPE, 1.5, np.float32), r"from 1.5 to 1.5"),
    ("a_prob.tif", np.full(SHAPE, np.nan, np.float32), "NaN or infinite voxel"),
    ("a_prob.tif", np.zeros(SHAPE, np.uint16), "uint16"),
    ("a_mask.tif", np.arange(np.prod(SHAPE)).reshape(SHAPE).astype(np.uint16) % 3,
     "not a binary mask"),
])
def test_bad_predictions_are_refused(tmp_path, file_name, array, match):
    write_pred(tmp_path, file_name, array)
    with pytest.raises(InputError, match=match):
        read_prediction(tmp_path / file_name)


def test_unusable_folders_are_refused(pred_dir, gold_dir, tmp_path):
    with pytest.raises(InputError, match="not a folder of predictions"):
        evaluate_folder(tmp_path / "nowhere", gold_dir)
    with pytest.raises(InputError, match="has no NAME_mask.tif"):
        evaluate_folder(tmp_path, gold_dir)
    write_pred(tmp_path, "other_mask.tif", box_mask().astype(np.uint8))
    with pytest.raises(InputError, match="matches a gold mask"):
        evaluate_folder(tmp_path, gold_dir)
    (tmp_path / "no_gold").mkdir()
    with pytest.raises(InputError, match="no NAME.tif gold masks"):
        evaluate_folder(pred_dir, tmp_path / "no_gold")
    with pytest.raises(InputError, match="neither a dataset folder"):
        evaluate_folder(pred_dir, tmp_path / "nowhere")
    with pytest.raises(InputError, match="threshold"):
        evaluate_folder(pred_dir, gold_dir, threshold=1.5)


def test_hd95_is_reported_in_xy_voxels_with_z_scaled(tmp_path):
    # A plate displaced by 2 slices; z spacing 2 um, x/y 0.5 um: 2 slices = 4 um = 8 x voxels.
    gold = np.zeros((12, 10, 10), np.uint8)
    gold[4] = 1
    pred = np.roll(gold, 2, axis=0)
    write_volume(tmp_path / "gold" / "a.tif", gold, (2.0, 0.5, 0.5))
    write_volume(tmp_path / "pred" / "a_mask.tif", pred, (2.0, 0.5, 0.5))
    (row,) = evaluate_folder(tmp_path / "pred", tmp_path / "gold").rows
    assert row.hd95 == pytest.approx(8.0)
