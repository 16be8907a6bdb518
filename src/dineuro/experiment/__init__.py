"""The transfer ablation: every transfer strategy trained, predicted and scored alike.

One experiment trains a run per (transfer, seed) from one shared training config ``base``, so
the runs differ in ``transfer`` and ``seed`` only: same dataset, same split, same step budget,
same schedule, same teacher file (``scratch`` ignores it). ``teacher`` may also name several
teachers (``{photos: a.pth, mips: b.pth}``) to compare them: every transfer but ``scratch`` is
then trained once per (teacher, seed), ``scratch`` once per seed. Each run's best checkpoint
predicts the evaluation split, :func:`~dineuro.evaluate.evaluate_folder` scores it (Dice,
HD95), and one row per transfer (and teacher) summarises the seeds. The experiment folder
``OUT``::

    OUT/
      experiment.yaml          the resolved experiment config (base inlined)
      ablation.csv             a row per transfer (and teacher): mean/std over seeds, seconds, ...
      ablation.md              a row per transfer, Dice and HD95 columns per teacher, with notes
      runs.csv                 a row per run (transfer, teacher, seed): its own Dice, HD95, ...,
                               for statistics of one's own (paired tests, other experiments)
      val_curves.png           validation Dice against step, one line per run
      overlays.png             x-y MIP of the first evaluation stack, a panel per transfer
                               (and teacher)
      runs/TRANSFER-seedS/     a training run folder (config.yaml, metrics.csv, best.pt, ...);
                               TRANSFER-TEACHER-seedS with named teachers (scratch-seedS still)
        predictions/           NAME_prob.tif, NAME_mask.tif per stack; prediction.json

Re-running is safe and cheap: a complete run (its ``last.pt`` at the full step budget) is not
trained again; an interrupted run (a ``last.pt`` before the budget) is resumed; predictions are
kept while ``prediction.json`` still matches the checkpoint that made them. A finished
experiment re-run therefore only re-scores and re-writes the tables and figures.

- :mod:`~dineuro.experiment.config`: :class:`ExperimentConfig` and :func:`load_experiment`,
  the experiment's keys checked and resolved.
- :mod:`~dineuro.experiment.running`: :func:`run_experiment`, runs trained, resumed or reused.
- :mod:`~dineuro.experiment.predictions`: a run's checkpoint predicting the evaluation split.
- :mod:`~dineuro.experiment.results`: what one run produced, the record tables and figures use.
- :mod:`~dineuro.experiment.tables`: ``ablation.csv``, ``ablation.md`` and ``runs.csv``, and
  the differences to scratch paired by seed.
- :mod:`~dineuro.experiment.figures`: ``val_curves.png`` and ``overlays.png``.
"""

from dineuro.experiment.config import TRANSFERS, ExperimentConfig, load_experiment
from dineuro.experiment.running import run_experiment
from dineuro.experiment.tables import (
    CSV_COLUMNS,
    RUN_CSV_COLUMNS,
    RUNS_CSV_NAME,
    TEACHER_CSV_COLUMNS,
    paired_difference,
)

__all__ = [
    "CSV_COLUMNS",
    "RUNS_CSV_NAME",
    "RUN_CSV_COLUMNS",
    "TEACHER_CSV_COLUMNS",
    "TRANSFERS",
    "ExperimentConfig",
    "load_experiment",
    "paired_difference",
    "run_experiment",
]
