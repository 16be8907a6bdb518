"""Evaluation, the last stage: predicted masks and traced SWCs scored against gold.

- :mod:`~dineuro.evaluate.voxels`: Dice, precision, recall and HD95 of two (z, y, x) masks.
- :mod:`~dineuro.evaluate.reconstruction`: ESA, DSA, PDS, length F1 and hairiness between two
  SWC trees.
- :mod:`~dineuro.evaluate.contrast`: a trace's recall split by how clearly the gold shows in
  the image.
- :mod:`~dineuro.evaluate.predictions`: ``NAME_mask.tif`` / ``NAME_prob.tif`` found and read as
  masks.
- :mod:`~dineuro.evaluate.traces`: a stack's traced ``NAME.swc`` scored against its gold SWC.
- :mod:`~dineuro.evaluate.gold`: the gold masks of a dataset or a folder, read per stack.
- :mod:`~dineuro.evaluate.folder`: a folder of predictions (and traces) scored against gold,
  one row per stack, and their summary.
- :mod:`~dineuro.evaluate.metrics_files`: a scored folder written as ``metrics.csv`` and
  ``metrics.md``.
- :mod:`~dineuro.evaluate.tables`: mean ± std over finite values and CSV cells, shared with the
  transfer ablation (:mod:`dineuro.experiment`).
"""

from dineuro.defaults import DEFAULT_SWC_THRESHOLD
from dineuro.evaluate.folder import (
    EvaluationTable,
    StackScore,
    Summary,
    TraceSummary,
    evaluate_folder,
    score_stack,
    xy_voxel_units,
)
from dineuro.evaluate.gold import names_in_split
from dineuro.evaluate.metrics_files import markdown_table, write_tables
from dineuro.evaluate.predictions import find_predictions, read_prediction
from dineuro.evaluate.reconstruction import (
    ReconstructionScores,
    compare_swc_files,
    compare_trees,
    labelled_precision,
)
from dineuro.evaluate.tables import MeanStd, mean_std
from dineuro.evaluate.traces import TraceScore, read_trace, score_trace
from dineuro.evaluate.voxels import dice, hd95
from dineuro.outputs import MASK_SUFFIX, PROB_SUFFIX

__all__ = [
    "DEFAULT_SWC_THRESHOLD",
    "MASK_SUFFIX",
    "PROB_SUFFIX",
    "EvaluationTable",
    "MeanStd",
    "ReconstructionScores",
    "StackScore",
    "Summary",
    "TraceScore",
    "TraceSummary",
    "compare_swc_files",
    "compare_trees",
    "labelled_precision",
    "dice",
    "evaluate_folder",
    "find_predictions",
    "hd95",
    "markdown_table",
    "names_in_split",
    "mean_std",
    "read_prediction",
    "read_trace",
    "score_stack",
    "score_trace",
    "write_tables",
    "xy_voxel_units",
]
