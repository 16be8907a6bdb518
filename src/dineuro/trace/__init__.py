"""Probability map, mask or raw image -> SWC trees, one per neuron.

:func:`trace` works on (z, y, x) arrays, :func:`trace_file` on files; lengths are physical
lengths in x voxels (the unit of SWC radii), so a z step with spacing (2, 1, 1) counts 2.
Network maps of real stacks are noisy: thousands of isolated specks, a mask a few voxels fatter
than the fibre with a bumpy surface, several neurons or fibres that never meet. Each step below
says what it does against that.

1. **Foreground**: hysteresis threshold (``skimage.filters.apply_hysteresis_threshold``):
   p > ``low`` connected to some p > ``high``, so dim stretches of a bright neurite stay while
   dim specks go. A map that is more than half foreground is refused: neurons fill 0.02-2 %.
   A raw stack (``kind="image"``) is first percentile-normalised as ``dineuro predict`` does.
   Background enclosed by foreground (a hollow soma or neurite) is filled: it would thin to
   loops.
   **Beads** (maps, not raw images): a varicose fibre that the network sees only at its
   swellings is a row of small sure blobs a few voxels apart, each too small to be a neurite
   and without a direction to bridge along; rows of such blobs above ``high``, close to each
   other, turning little and sure on average (the rule and its numbers:
   :mod:`dineuro.trace._beads`), are joined by one-voxel lines (``link_beads``). In dense
   clutter of sure blobs a few rows line up by chance.
2. **Centre lines**: 3D thinning (scikit-image ``skeletonize``) and skan's voxel graph; their
   shortest spanning forest removes thinning's small cycles. Against kimimaro's TEASAR on the
   small synthetic set's gold masks (``compare_trees``, 2 voxels) both score alike (F1 0.978
   against 0.974, ESA 0.58 both), thinning keeps cable length closer to gold on grown trees
   (0.97-0.99 against 1.05-1.12) with fewer false branch points, and TEASAR covers more of
   blurred, dimmed, noisy maps (F1 0.91 against 0.88); kimimaro 5.8 was kept out because it
   does not run as installed here (an undeclared dependency, a numpy 2 casting error).
   ``method="geodesic"`` finds them instead as APP2 and Rivulet do: minimal paths from each
   piece's thickest, brightest point through a cost low on the bright, thick middle, farthest
   tip first, until every voxel is within 1.5 radii of a path (:mod:`dineuro.trace._geodesic`).
   On 8 test stacks of two synthetic sets (``benchmarks/trace_methods.py``) both score alike on
   gold masks (F1 0.979), and geodesic scores higher on blurred, speckled, dimmed maps (F1 0.941
   against 0.929, ESA 0.72 against 0.84) and on raw images (0.61 against 0.54), with a few more
   tips (hairiness 1.34 against 1.27 on the noisy maps) and about twice the time.
3. **Noise**: a connected piece of the foreground with less than ``min_piece_length`` of
   centre line (by default a speck of a few voxels) is removed before anything is
   joined to it. Short pieces stay: a beaded or dim fibre breaks into them, and bridging
   joins them back; those left on their own are dropped as debris at step 5.
4. **Gaps**: an end of one piece is joined to a node of another piece at most ``max_gap``
   away in any direction when the mean probability (for a mask with ``image``, percentile-
   normalised intensity) along the part of the straight segment outside the foreground is at
   least ``gap_floor``; or at most ``follow_gap`` away inside a cone around the direction the
   end points in, when that mean is above a clean background (``FOLLOW_FLOOR``): a beaded or
   dimmed fibre breaks into pieces that point at each other, noise does not. Where the map is
   empty along such a bridge (a fibre too dim for the network), the raw ``image``, when given
   (``dineuro run`` gives it), may still carry it: the image along the line must stand out of
   the background around it by ``follow_contrast`` spreads
   (:func:`dineuro.trace._tree.line_contrast`; averaging along the line lifts a faint fibre
   clear of noise), over a gap of at most ``follow_line_gap`` (longer than ``follow_gap``: a
   measurement along the whole gap, where the map's floor asks for hardly anything). The
   nearest, least turning candidates go first
   (:func:`dineuro.trace._tree.bridge_gaps`). A binary mask alone has no evidence in its gaps,
   so nothing is bridged.
5. **Trees**: every piece left apart after bridging is its own tree (another neuron, or a
   trunk that leaves the stack). The first tree is the one holding a given ``root``, else the
   one with the most cable; it is always kept. Others are kept when their cable is at least
   ``min_tree_length`` both on the foreground alone (bridges add none, so specks chained
   across gaps stay debris) and after pruning and smoothing, and dropped as debris otherwise;
   so are trees that look like speckle: the map's median along the centre line below 0.7 with
   more than 4 tips per 100 voxels of cable, what a network's scattered firing on noisy haze
   chains into (:mod:`dineuro.trace._speckle`). After pruning (step 6), a branch that looks
   like speckle is removed from every tree: at least 4 tips, more than 3.5 per 100 voxels of
   centre line, a map median below 0.75, and less than half its tree's cable (a network's
   tangles hanging off the neuron it traces; maps only: a raw image's dim arbor looks the
   same). ``keep_fragments`` keeps them all. Trees are written largest first.
6. **Spurs**: a terminal branch is removed when it reaches less than ``prune_length`` beyond
   the radius r of the branch point it leaves, or less than ``spur_radii`` * r from that
   point (r at most ``SOMA_RADIUS_RATIO`` times the tree's median radius, so that a soma does
   not swallow its short neurites): thinning grows a twig to every bump of a fat, rough mask,
   about as long as the mask is thick (:func:`dineuro.trace._tree.prune_spurs`).
7. **Roots** (:mod:`dineuro.trace._root`): a given (x, y, z) in voxels (see :func:`trace` for
   snapping); else the tree's soma, its thickest point when that is at least
   ``SOMA_RADIUS_RATIO`` (2) times the median centre-line radius and compact (the part that
   thick lies within ``SOMA_MAX_EXTENT`` (3) soma radii: a thick trunk is long); else, without
   a soma, the thickest end where the tree leaves the stack (it was cut from a neuron whose
   soma lies outside); else its thickest end. A comment line per tree says which, and where:
   ``root: soma at (x, y, z)``, ``root: end leaving the stack at ...``, ``root: thickest end
   at ...``, ``root: given at ...`` (``root: thick blob at ...`` for a soma-like root of a tree
   other than the first).
8. **Nodes and radii**: each stretch between branch points and ends is smoothed along its arc
   by a Gaussian of ``smooth`` x voxels (a voxel skeleton zig-zags, bending the line by up to
   a voxel and lengthening oblique neurites by up to 5 %; the ends stay put) and resampled
   every ``node_step``; radii are the spacing-aware Euclidean distance transform at the centre
   line (distance to the nearest background voxel centre, in x voxels; about the true radius,
   within half a voxel, on rendered tubes), at least 0.5. Before that, each tip (and a root
   that is an end, not a soma) goes on along its direction to where the centre of a round end
   would lie: where the foreground stops, less the tip's radius, as a gold SWC ends a neurite.
   Thinning stops short of it, a voxel on a rendered tube of radius 3 and often more on a
   map's ragged, fading tips (:mod:`dineuro.trace._ends`; thinning only).

The SWC has ids 1..N with parents first, parent -1 at each root, (x, y, z) voxel coordinates
and the spacing in a header comment, so it opens in Vaa3D, neuTube and navis. Type 1 (soma)
marks the first tree's root when it is a soma (found, or given) and nothing else: on other
trees a thick blob is too often a crossing or a clump of noise; all other nodes are type 3. A
map with nothing above ``high`` (or only noise) gives a tree without nodes and an
:class:`EmptyTraceWarning` (written as an SWC of comments only), so a batch goes on.

:func:`traced_mask` gives the mask that goes with a trace: the pieces of a thresholded map the
cable runs through, without the specks and debris the steps above removed (``dineuro run``
writes it as NAME_mask.tif).
"""

from dineuro.defaults import (
    DEFAULT_GAP_FLOOR,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_PIECE_LENGTH,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_NODE_STEP,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_ROOT_SNAP,
    DEFAULT_SMOOTH,
    DEFAULT_SPUR_RADII,
)
from dineuro.trace._centre_lines import METHODS
from dineuro.trace._files import trace_file, trace_volume, untraced, write_trace
from dineuro.trace._mask import traced_mask
from dineuro.trace._probability import KINDS, as_probability
from dineuro.trace._trace import EmptyTraceWarning, trace

__all__ = [
    "DEFAULT_GAP_FLOOR",
    "DEFAULT_HIGH",
    "DEFAULT_LOW",
    "DEFAULT_MAX_GAP",
    "DEFAULT_MIN_PIECE_LENGTH",
    "DEFAULT_MIN_TREE_LENGTH",
    "DEFAULT_NODE_STEP",
    "DEFAULT_PRUNE_LENGTH",
    "DEFAULT_ROOT_SNAP",
    "DEFAULT_SMOOTH",
    "DEFAULT_SPUR_RADII",
    "KINDS",
    "METHODS",
    "EmptyTraceWarning",
    "as_probability",
    "trace",
    "trace_file",
    "trace_volume",
    "traced_mask",
    "untraced",
    "write_trace",
]
