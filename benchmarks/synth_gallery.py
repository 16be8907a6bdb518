"""The look of the synthetic presets side by side: z maximum projections of a few stacks each.

Each row is a preset (``bench``: one fixed image model; ``realistic``: every stack draws its
own microscope; ``realistic`` at difficulty 0.9: the noisy evaluation set), each panel one stack
with what the realistic preset drew for it. The README's picture is made by::

    python benchmarks/synth_gallery.py -o docs/synth_presets.png
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dineuro.data.synth import PRESETS, synthesize_stack  # noqa: E402
from dineuro.report import CONTRAST_PERCENTILES, save_figure  # noqa: E402

ROWS = {
    "bench": PRESETS["bench"],
    "realistic": PRESETS["realistic"],
    "realistic, difficulty 0.9, seed 1": replace(PRESETS["realistic"], difficulty=0.9, seed=1),
}


def caption(stack) -> str:
    """What a panel shows, in a few words."""
    if stack.recipe is None:
        return stack.source
    r = stack.recipe
    camera = f"{r.imaging.bits or (8 if r.imaging.dtype == 'uint8' else 12)}-bit"
    beads = ", beaded" if r.imaging.bead_fraction else ""
    soma = "no soma" if not (stack.tree.types == 1).any() else "soma"
    return (f"z/xy {r.spacing[0] / r.spacing[2]:.1f}, {camera}, difficulty {r.difficulty:.2f}"
            f"\n{len(stack.tree.roots)} tree(s), {soma}{beads}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="picture to write")
    parser.add_argument("--per-row", type=int, default=4, help="stacks per preset")
    args = parser.parse_args()
    fig, axes = plt.subplots(len(ROWS), args.per_row, figsize=(3 * args.per_row, 3.3 * len(ROWS)),
                             layout="constrained")
    for row, (name, config) in zip(axes, ROWS.items(), strict=True):
        for index, ax in enumerate(row):
            stack = synthesize_stack(config, index)
            projection = stack.image.max(axis=0).astype(np.float32)
            low, high = np.percentile(projection, CONTRAST_PERCENTILES)
            ax.imshow(projection, cmap="gray", vmin=low, vmax=max(high, low + 1))
            ax.set_title(f"{name} #{index}\n{caption(stack)}", fontsize=7)
            ax.axis("off")
    save_figure(fig, args.out, dpi=64)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
