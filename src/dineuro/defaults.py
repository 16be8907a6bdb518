"""Defaults and choices shared by the library and the command line, in one place that imports
nothing.

The command line must start without PyTorch, so it cannot take its option defaults from the
modules that use them (:mod:`dineuro.predict` imports torch); typing them again as literals
lets the two drift apart, a bug a tool's users never see coming. Both import them from here,
and ``tests/test_defaults.py`` checks every command-line default against the library's.
"""

# -- prediction ---------------------------------------------------------------------------------
#: Fraction of a window shared with its neighbour along each axis. 0.25 computes 0.49x the
#: windows of 0.5 and, with the default model, traces as well: chosen on 24 train-split stacks,
#: then traced F1 0.851 / 0.802 against 0.849 / 0.791 on the card's bench / noisy test stacks
#: (README, "Speed of `dineuro run`").
DEFAULT_OVERLAP = 0.25
#: Windows per forward pass; None: as many as hold about :data:`PASS_VOXELS` voxels.
DEFAULT_BATCH_SIZE = None
#: Voxels a forward pass holds when the batch size is left to dineuro. Measured fastest for the
#: default network on 2 CPU cores in bf16 (``benchmarks/batch_speed.py``): 4 windows of 48^3
#: (1, 2 and 8 slower by 31, 8 and 15 %), 1 or 2 of 48x96x96 (4 slower by 36 %), 1 of
#: 64x128x128 (2 slower by 20 %). Smaller passes fall off oneDNN's fast path (a single 48^3
#: window takes PyTorch's im2col convolution), larger ones out of the caches.
PASS_VOXELS = 4 * 48**3
#: Probability above which a voxel of a map is foreground, as ``predict`` writes its masks.
DEFAULT_THRESHOLD = 0.5
#: What NAME_mask.tif of ``run`` holds: "traced", the pieces of the thresholded map that the
#: SWC runs through (:func:`dineuro.trace.traced_mask`; the noise and debris the tracer
#: removed are not in it), or "threshold", every voxel above the threshold, as ``predict``
#: writes. Traced masks scored higher Dice on every synthetic set (README, "The mask beside
#: the trace").
RUN_MASKS = ("traced", "threshold")
DEFAULT_RUN_MASK = "traced"
#: How NAME_prob.tif stores probabilities: round(p * 255) in uint8, a quarter of float32's bytes
#: and, with most voxels exactly 0, a small fraction once compressed (float32 noise near 0 hardly
#: compresses). Tracing in ``run`` uses the float map in memory either way.
DEFAULT_PROB_DTYPE = "uint8"
#: How a probability in [0, 1] may be stored. TIFF (ImageJ) cannot hold float16, zarr can.
PROB_DTYPES = ("float32", "float16", "uint8")
TIFF_PROB_DTYPES = ("float32", "uint8")

# -- tracing (lengths in x voxels) ----------------------------------------------------------------
#: Hysteresis: foreground is probability above the low threshold connected to some above high.
DEFAULT_HIGH = 0.5
DEFAULT_LOW = 0.25
#: Longest gap bridged, in x voxels between the two centre-line nodes it joins.
DEFAULT_MAX_GAP = 6.0
#: Least mean probability (or normalised intensity) along the part of a bridge outside the mask.
DEFAULT_GAP_FLOOR = 0.15
#: Longest bridge along the direction a centre line ends in, in x voxels: a beaded or dimmed
#: fibre breaks into pieces that point at each other (:func:`dineuro.trace._tree.bridge_gaps`).
DEFAULT_FOLLOW_GAP = 20.0
#: Such a bridge over a gap the map leaves empty (a fibre too dim for the network) is still taken
#: when the raw image, given beside the map, stands out along it by this many spreads of the
#: background around it (:func:`dineuro.trace._tree.line_contrast`). Chosen on held-out train
#: maps, as they are and with their stacks clipped at zero (README, "Following a fibre the
#: network lost").
DEFAULT_FOLLOW_CONTRAST = 1.0
#: And such a bridge carried by the image alone may be this long (x voxels): its line test is a
#: measurement along the whole gap, where the map's floor above asks for hardly anything (README,
#: "Following a fibre the network lost").
DEFAULT_FOLLOW_LINE_GAP = 30.0
#: Shortest reach of a terminal branch kept, in x voxels beyond the radius of its branch point.
DEFAULT_PRUNE_LENGTH = 4.0
#: Shortest reach of a terminal branch kept, in radii of its branch point (from that point).
DEFAULT_SPUR_RADII = 3.0
#: Pieces of the foreground whose centre lines are shorter than this (x voxels) are noise:
#: removed before bridging. 3 removes specks of one to three noise voxels, which would be
#: bridged onto a neurite as spurs, and keeps the short pieces a beaded or dim fibre breaks
#: into, for bridges to join; debris is judged on each tree after bridging
#: (``DEFAULT_MIN_TREE_LENGTH``). At 10 such pieces were lost (README, "The default model").
DEFAULT_MIN_PIECE_LENGTH = 3.0
#: Beads: rows of small sure blobs a network leaves along a varicose fibre are joined into lines
#: (:mod:`dineuro.trace._beads`): pieces of 2 to BEAD_MAX_VOXELS voxels, neighbours within
#: BEAD_REACH x voxels, rows cut where they turn by more than BEAD_MAX_TURN degrees, kept with at
#: least BEAD_MIN_COUNT beads and a mean map over them of at least BEAD_MIN_MAP. Chosen on traced
#: maps of train and validation stacks (README, "Beaded fibres").
BEAD_MAX_VOXELS = 60
BEAD_REACH = 14.0
BEAD_MAX_TURN = 60.0
BEAD_MIN_COUNT = 3
BEAD_MIN_MAP = 0.75
#: A separate tree shorter than this (x voxels of cable) is debris, unless it is the largest.
DEFAULT_MIN_TREE_LENGTH = 30.0
#: A separate tree is speckle, dropped as debris, when the median map value (normalised intensity
#: for a raw image) on its centre line is below SPECKLE_MAP and it has more than SPECKLE_TIPS tips
#: per 100 x voxels of cable; how they were chosen: :mod:`dineuro.trace._speckle`.
SPECKLE_MAP = 0.7
SPECKLE_TIPS = 4.0
#: A branch (the subtree beyond a branch point, with less than half its tree's cable) is speckle,
#: removed, when it has at least SPECKLE_BRANCH_MIN_TIPS tips, more than SPECKLE_BRANCH_TIPS per
#: 100 x voxels of centre line and a median map value below SPECKLE_BRANCH_MAP:
#: :mod:`dineuro.trace._speckle`.
SPECKLE_BRANCH_MAP = 0.75
SPECKLE_BRANCH_TIPS = 3.5
SPECKLE_BRANCH_MIN_TIPS = 4
#: Gaussian sigma (x voxels along the arc) that smooths the voxel staircase of centre lines.
DEFAULT_SMOOTH = 1.5
#: Distance between resampled nodes along a branch, in x voxels.
DEFAULT_NODE_STEP = 2.0
#: SWC coordinates: voxels (x, y, z), as BigNeuron's gold SWCs and Vaa3D, or micrometres from
#: the stack's spacing, for morphometry tools (NeuroM, navis) on anisotropic stacks.
SWC_UNITS = ("voxel", "um")
DEFAULT_SWC_UNITS = "voxel"
#: The SWC type column of traced neurites (a soma root is 1 whatever it is): 3 (dendrite), what
#: every tool reads, unless the user knows better; "neurite" writes 0, SWC's "undefined".
NEURITE_TYPES = {"dendrite": 3, "axon": 2, "apical": 4, "neurite": 0}
DEFAULT_NEURITE_TYPE = "dendrite"
#: A --root point outside the foreground snaps to a centre-line node at most this far (x voxels).
DEFAULT_ROOT_SNAP = 5.0

# -- scoring reconstructions ----------------------------------------------------------------------
#: Distance (SWC units) from which a sample point counts as apart from the other tree; Vaa3D's.
DEFAULT_SWC_THRESHOLD = 2.0
#: Block of a zarr stack predicted at a time (z, y, x), and the task of a distributed run
#: (:mod:`dineuro.scale`); memory scales with (block + 2 crop): about 1.3 GB per worker there.
DEFAULT_BLOCK = (128, 256, 256)
