"""Block fragments and their stitching, against the whole map traced in memory.

The maps are drawn here (tubes as capsules around hand-placed segments), cut by a
:class:`BlockPlan`, traced block by block with :func:`block_fragments` and stitched. What the
blocks give together is compared with what the in-memory tracer's own steps give for the whole
map: the same centre-line voxels, the same length, the same radii (a distance transform of the
whole mask). The stitching rules (exact joins, snapping, dropping) are checked on hand-made
fragments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import capsules
from scipy import ndimage
from scipy.sparse import coo_matrix, csgraph

from dineuro.defaults import BEAD_REACH
from dineuro.scale.fragments import SNAP, Fragments, block_fragments, stitch
from dineuro.scale.plan import BlockPlan, halo_for
from dineuro.trace._beads import join_bead_rows
from dineuro.trace._centre_lines import _centre_lines, _fill_cavities, hysteresis
from dineuro.trace._skeleton import skeleton_graph
from dineuro.trace._trace import MIN_RADIUS

HIGH, LOW, MAX_GAP, GAP_FLOOR = 0.5, 0.25, 6.0, 0.15
# A diagonal trunk through 2 x 3 x 3 blocks of (12, 24, 24) and a branch leaving it next to
# the corner (12, 24, 24) that 8 blocks share.
TRUNK = ((3, 4, 4), (20, 50, 52))
BRANCH = ((10.4, 24, 24.7), (5, 55, 20))
Y_SHAPE, Y_BLOCK = (24, 60, 60), (12, 24, 24)


def tube_map(shape, segments, radius: float = 2.0) -> np.ndarray:
    return np.where(capsules(shape, segments, radius), 0.9, 0.0).astype(np.float32)


def by_blocks(prob, plan: BlockPlan, scale, min_piece_length: float) -> list[Fragments]:
    """Each block's fragments, traced from its region of ``prob`` as a task would."""
    out = []
    for b in plan.blocks():
        region = b.region
        out.append(block_fragments(prob[region], b.region_begin, b.begin, b.end, prob.shape,
                                   scale, high=HIGH, low=LOW,
                                   min_piece_length=min_piece_length, max_gap=MAX_GAP,
                                   gap_floor=GAP_FLOOR, follow_gap=0.0, follow_contrast=math.inf,
                                   follow_line_gap=0.0))
    return out


def voxels(zyx) -> set[tuple[int, ...]]:
    return set(map(tuple, np.rint(zyx).astype(np.int64).tolist()))


def cable(zyx, edges, scale) -> float:
    zyx = np.asarray(zyx, np.float64)
    return float(np.linalg.norm((zyx[edges[:, 0]] - zyx[edges[:, 1]]) * scale, axis=1).sum())


def pieces(n: int, edges) -> int:
    matrix = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return csgraph.connected_components(matrix, directed=False)[0]


def fragments(zyx, edges=(), dangling=(), towards=()) -> Fragments:
    """Hand-made fragments: radius 1 and evidence 0.9 at every node."""
    zyx = np.asarray(zyx, np.int64).reshape(-1, 3)
    return Fragments(zyx, np.ones(len(zyx)), np.full(len(zyx), 0.9),
                     np.asarray(edges, np.int64).reshape(-1, 2),
                     np.asarray(dangling, np.int64), np.asarray(towards, np.int64).reshape(-1, 3))


def line(z, y, x0, x1):
    """Voxels (z, y, x) for x in [x0, x1], and the edges of the chain through them."""
    zyx = [(z, y, x) for x in range(x0, x1 + 1)]
    return zyx, [(k, k + 1) for k in range(len(zyx) - 1)]


@pytest.mark.parametrize("scale", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0)])
@pytest.mark.parametrize("block", [Y_BLOCK, (8, 16, 16)])
def test_stitched_blocks_give_the_whole_maps_centre_lines(scale, block):
    scale = np.asarray(scale)
    prob = tube_map(Y_SHAPE, [TRUNK, BRANCH])
    plan = BlockPlan(Y_SHAPE, block, halo_for(MAX_GAP, scale))
    parts = by_blocks(prob, plan, scale, 10.0)
    assert sum(len(f.zyx) > 0 for f in parts) >= 5  # the tree really spans several blocks
    graph = stitch(parts, scale, 10.0)

    whole = _fill_cavities(hysteresis(prob, LOW, HIGH))
    zyx, edges = skeleton_graph(whole, scale)
    assert pieces(len(zyx), edges) == 1  # the reference is one tree, so should the graph be
    assert pieces(len(graph.zyx), graph.edges) == 1
    assert len(graph.edges) == len(graph.zyx) - 1  # a tree: no cycle left
    assert len(voxels(graph.zyx)) == len(graph.zyx)  # no voxel owned twice
    assert voxels(graph.zyx) == voxels(zyx)
    assert cable(graph.zyx, graph.edges, scale) == pytest.approx(cable(zyx, edges, scale),
                                                                 rel=1e-3)
    assert graph.joined > 0 and graph.snapped == 0 and graph.unmatched == 0
    assert graph.removed == 0
    # Radii: the distance to the background of the whole mask (at least MIN_RADIUS); evidence:
    # the map at the node.
    at = tuple(graph.zyx.astype(np.int64).T)
    distance = ndimage.distance_transform_edt(whole, sampling=scale)
    np.testing.assert_allclose(graph.radius, np.maximum(distance[at], MIN_RADIUS))
    np.testing.assert_allclose(graph.evidence, prob[at])


def test_without_a_halo_the_seams_stay_open():
    # The contrast to the test above: a block that reads nothing beyond its box has no edge
    # to a neighbour, so the tree falls apart at every seam it crosses.
    scale = np.ones(3)
    prob = tube_map(Y_SHAPE, [TRUNK, BRANCH])
    parts = by_blocks(prob, BlockPlan(Y_SHAPE, Y_BLOCK, (0, 0, 0)), scale, 10.0)
    assert all(len(f.dangling) == 0 for f in parts)
    graph = stitch(parts, scale, 10.0)
    assert graph.joined == graph.snapped == graph.unmatched == 0
    assert pieces(len(graph.zyx), graph.edges) >= 3


def test_each_block_keeps_only_what_it_owns_and_dangles_to_its_neighbours():
    scale = np.ones(3)
    prob = tube_map(Y_SHAPE, [TRUNK, BRANCH])
    plan = BlockPlan(Y_SHAPE, Y_BLOCK, halo_for(MAX_GAP, scale))
    blocks = list(plan.blocks())
    parts = by_blocks(prob, plan, scale, 10.0)
    owner = {}
    for b, part in zip(blocks, parts, strict=True):
        inside = np.all((part.zyx >= b.begin) & (part.zyx < b.end), axis=1)
        assert inside.all()
        assert part.edges.min(initial=0) >= 0 and part.edges.max(initial=-1) < len(part.zyx)
        outside = np.any((part.towards < b.begin) | (part.towards >= b.end), axis=1)
        assert outside.all()
        assert len(part.dangling) == len(part.towards)
        owner.update({v: b.name for v in voxels(part.zyx)})
        for name in ("zyx", "edges", "dangling", "towards"):
            assert getattr(part, name).dtype == np.int64
        assert part.radius.dtype == part.evidence.dtype == np.float64
    # Every dangling edge points at a node another block has, one voxel step away.
    dangling = 0
    for b, part in zip(blocks, parts, strict=True):
        for node, far in zip(part.dangling, part.towards, strict=True):
            assert owner[tuple(far.tolist())] != b.name
            assert np.abs(part.zyx[node] - far).max() == 1
            dangling += 1
    assert dangling >= 4


def test_an_isolated_speck_is_removed_while_a_long_line_cut_short_by_blocks_is_kept():
    # Blocks 16 wide along x read 48 voxels at most, less than min_piece_length 60: each sees
    # only a short stretch of the long line, which they must keep since it is cut by their
    # region's border. The 6-voxel speck lies wholly inside one region and is noise.
    scale, min_piece_length = np.ones(3), 60.0
    shape = (12, 28, 96)
    speck = ((6, 20, 40), (6, 20, 46))
    prob = tube_map(shape, [((6, 7, 2), (6, 7, 93)), speck])
    plan = BlockPlan(shape, (12, 28, 16), halo_for(MAX_GAP, scale))
    assert all(e - s < min_piece_length
               for b in plan.blocks() for s, e in [(b.region_begin[2], b.region_end[2])])
    parts = by_blocks(prob, plan, scale, min_piece_length)
    near_speck = [np.abs(f.zyx[:, 1] - 20) <= 3 for f in parts]
    assert not any(n.any() for n in near_speck)  # removed by the block itself
    assert all(len(f.zyx) for f in parts)  # every block kept its stretch of the line
    graph = stitch(parts, scale, min_piece_length)
    assert graph.removed == 0
    assert pieces(len(graph.zyx), graph.edges) == 1
    assert graph.zyx[:, 2].min() <= 4 and graph.zyx[:, 2].max() >= 91
    # The in-memory steps 1-3 on the whole map agree: the speck is their only noise.
    _, _, zyx, _, removed = _centre_lines(hysteresis(prob, LOW, HIGH), scale, min_piece_length,
                                          "thinning", prob)
    assert removed == 1
    assert voxels(graph.zyx) == voxels(zyx)


def test_a_short_piece_cut_by_the_blocks_is_removed_once_stitched():
    # Each block sees part of a 12-voxel line cut by its region's border (halo 2), so neither
    # can judge it; over the stitched graph it is too short.
    scale = np.ones(3)
    prob = tube_map((12, 20, 40), [((6, 10, 10), (6, 10, 22))], radius=1.5)
    parts = by_blocks(prob, BlockPlan(prob.shape, (12, 20, 16), (2, 2, 2)), scale, 20.0)
    assert sum(len(f.zyx) > 0 for f in parts) == 2
    graph = stitch(parts, scale, 20.0)
    assert graph.removed == 1
    assert len(graph.zyx) == len(graph.radius) == len(graph.evidence) == 0
    assert graph.edges.shape == (0, 2)
    # The same pieces pass a lower minimum.
    kept = stitch(parts, scale, 5.0)
    assert kept.removed == 0 and pieces(len(kept.zyx), kept.edges) == 1


def test_a_block_without_foreground_has_no_fragments():
    prob = np.full((8, 8, 8), 0.2, np.float32)  # below low everywhere
    empty = block_fragments(prob, (0, 0, 0), (0, 0, 0), (8, 8, 8), (8, 8, 8), np.ones(3),
                            high=HIGH, low=LOW, min_piece_length=10.0, max_gap=MAX_GAP,
                            gap_floor=GAP_FLOOR, follow_gap=0.0, follow_contrast=math.inf,
                            follow_line_gap=0.0)
    assert empty.zyx.shape == (0, 3) and empty.edges.shape == (0, 2)
    assert empty.towards.shape == (0, 3) and len(empty.dangling) == 0
    graph = stitch([empty, Fragments.empty()], np.ones(3), 10.0)
    assert graph.zyx.shape == (0, 3) and graph.edges.shape == (0, 2)
    assert stitch([], np.ones(3), 10.0).zyx.shape == (0, 3)


def test_fragments_save_and_load_round_trip(tmp_path):
    scale = np.ones(3)
    prob = tube_map(Y_SHAPE, [TRUNK, BRANCH])
    plan = BlockPlan(Y_SHAPE, Y_BLOCK, halo_for(MAX_GAP, scale))
    part = next(f for f in by_blocks(prob, plan, scale, 10.0) if len(f.dangling))
    part.meta = {"block": "z0_y1_x1", "seconds": 1.5, "windows": 3, "precision": None}
    path = part.save(tmp_path / "z0_y1_x1.npz")
    assert path == tmp_path / "z0_y1_x1.npz"
    assert [p.name for p in tmp_path.iterdir()] == ["z0_y1_x1.npz"]  # no temporary left
    back = Fragments.load(path)
    for name in ("zyx", "radius", "evidence", "edges", "dangling", "towards", "ends"):
        np.testing.assert_array_equal(getattr(back, name), getattr(part, name))
        assert getattr(back, name).dtype == getattr(part, name).dtype
    assert back.meta == part.meta
    assert part.ends.shape == part.zyx.shape

    # A block saved before blocks kept their end points loads without them.
    with np.load(path) as data:
        np.savez(tmp_path / "old.npz", **{k: data[k] for k in data.files if k != "ends"})
    assert Fragments.load(tmp_path / "old.npz").ends is None

    empty = Fragments.load(Fragments.empty().save(tmp_path / "empty.npz"))
    assert empty.zyx.shape == (0, 3) and empty.towards.shape == (0, 3)
    assert empty.edges.shape == (0, 2) and empty.meta == {}
    assert empty.ends.shape == (0, 3)  # not known: no rows for no nodes


def test_a_failed_save_leaves_no_file(tmp_path):
    bad = Fragments.empty({"block": object()})  # not JSON: fails while writing
    with pytest.raises(TypeError):
        bad.save(tmp_path / "z0_y0_x0.npz")
    assert list(tmp_path.iterdir()) == []


def test_stitch_joins_dangling_edges_at_the_exact_voxel_once():
    # A line along x cut at x = 5; both blocks propose the edge across the seam.
    left_zyx, left_edges = line(3, 3, 0, 4)
    right_zyx, right_edges = line(3, 3, 5, 12)
    left = fragments(left_zyx, left_edges, [4], [(3, 3, 5)])
    right = fragments(right_zyx, right_edges, [0], [(3, 3, 4)])
    graph = stitch([left, right], np.ones(3), 0.0)
    assert (graph.joined, graph.snapped, graph.unmatched) == (2, 0, 0)
    assert len(graph.edges) == 12 and pieces(len(graph.zyx), graph.edges) == 1
    assert cable(graph.zyx, graph.edges, np.ones(3)) == pytest.approx(12.0)


def seam(step, aside):
    """Two blocks split at x = 5: the left one owns a line ending at (3, 3, 4), with a dangling
    edge to the voxel ``step`` from that end; the right one's line starts ``aside`` of that
    voxel and runs on along x to 12."""
    left_zyx, left_edges = line(3, 3, 0, 4)
    far = np.array([3, 3, 4]) + step
    start = far + aside
    right_zyx, right_edges = line(int(start[0]), int(start[1]), int(start[2]), 12)
    return (fragments(left_zyx, left_edges, [4], [far]), fragments(right_zyx, right_edges),
            tuple(start.tolist()))


def joined_across(graph, a, b) -> bool:
    """Whether the graph has an edge between the nodes at voxels ``a`` and ``b``."""
    at = {v: k for k, v in enumerate(map(tuple, graph.zyx.astype(np.int64).tolist()))}
    return sorted([at[a], at[b]]) in np.sort(graph.edges, axis=1).tolist()


@pytest.mark.parametrize(("step", "aside"), [
    ((0, 0, 1), (0, 1, 0)),  # the neighbour's line a voxel aside, in y
    ((0, 0, 1), (1, 1, 0)),  # ... diagonally in z and y
    ((0, 1, 1), (0, -1, 0)),  # a diagonal step; the neighbour's line goes straight on
    ((1, 1, 1), (-1, -1, 0)),
])
def test_stitch_snaps_a_dangling_edge_to_the_neighbours_node_a_voxel_aside(step, aside):
    left, right, start = seam(step, aside)
    graph = stitch([left, right], np.ones(3), 0.0)
    assert (graph.joined, graph.snapped, graph.unmatched) == (0, 1, 0)
    assert pieces(len(graph.zyx), graph.edges) == 1
    assert joined_across(graph, (3, 3, 4), start)


@pytest.mark.parametrize("aside", [(0, 3, 0), (2, 2, 1), (0, 0, 3)])
def test_stitch_drops_a_dangling_edge_with_no_node_within_snap(aside):
    assert np.linalg.norm(aside) > SNAP
    left, right, _ = seam((0, 0, 1), aside)
    graph = stitch([left, right], np.ones(3), 0.0)
    assert pieces(len(graph.zyx), graph.edges) == 2
    assert len(graph.edges) == len(left.edges) + len(right.edges)
    assert (graph.joined, graph.snapped, graph.unmatched) == (0, 0, 1)


def test_stitch_snaps_at_exactly_snap_voxels():
    # SNAP is "the farthest a dangling edge's far end may be from the neighbour's node it is
    # joined to": a node exactly SNAP (2) voxels aside along one axis is within reach.
    assert SNAP == 2.0
    left, right, start = seam((0, 0, 1), (0, 2, 0))
    graph = stitch([left, right], np.ones(3), 0.0)
    assert (graph.joined, graph.snapped, graph.unmatched) == (0, 1, 0)
    assert joined_across(graph, (3, 3, 4), start)


def test_stitch_cuts_a_cycle_the_join_makes_by_the_shortest_forest():
    # Two blocks each bridge the same two lines a different way: joined, the edges make a
    # cycle, which the shortest spanning forest cuts at its longest edge.
    a_zyx, a_edges = line(3, 3, 0, 9)  # owned by the first block (x < 10)
    b_zyx, b_edges = line(3, 3, 10, 19)
    top_zyx, top_edges = line(3, 6, 0, 19)  # a second line, split the same way
    first = fragments(a_zyx + top_zyx[:10], a_edges + [(10 + i, 10 + j) for i, j in
                                                      top_edges[:9]] + [(0, 10)],
                      [9, 19], [(3, 3, 10), (3, 6, 10)])
    second = fragments(b_zyx + top_zyx[10:], b_edges + [(10 + i, 10 + j) for i, j in
                                                       top_edges[:9]] + [(9, 19)],
                       [0, 10], [(3, 3, 9), (3, 6, 9)])
    graph = stitch([first, second], np.ones(3), 0.0)
    assert graph.joined == 4
    n = len(graph.zyx)
    assert n == 40 and len(graph.edges) == n - 1 and pieces(n, graph.edges) == 1
    # The 3-voxel bridges are the longest edges: one of them was cut, the other kept.
    lengths = np.linalg.norm(graph.zyx[graph.edges[:, 0]] - graph.zyx[graph.edges[:, 1]], axis=1)
    assert np.sort(lengths)[-1] == 3.0 and np.sort(lengths)[-2] == 1.0


@pytest.mark.parametrize("block", [Y_BLOCK, (8, 16, 16)])
def test_a_row_of_beads_across_blocks_is_joined_as_in_the_whole_map(block):
    """Beads 9 voxels apart on a diagonal through several blocks, with a halo that reaches as
    far as the bead rule does: the stitched centre lines are the whole map's, beads joined."""
    scale = np.ones(3)
    prob = np.zeros(Y_SHAPE, np.float32)
    for k in range(6):
        z, y, x = 4 + 3 * k, 6 + 9 * k, 8 + 8 * k
        prob[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = 0.9
    plan = BlockPlan(Y_SHAPE, block, halo_for(BEAD_REACH, scale))
    parts = by_blocks(prob, plan, scale, 10.0)
    assert sum(len(f.zyx) > 0 for f in parts) >= 3
    graph = stitch(parts, scale, 10.0)
    joined, rows = join_bead_rows(hysteresis(prob, LOW, HIGH), prob, scale, HIGH)
    assert rows == 1
    zyx, edges = skeleton_graph(_fill_cavities(joined), scale)
    assert pieces(len(graph.zyx), graph.edges) == 1
    assert voxels(graph.zyx) == voxels(zyx)
    assert cable(graph.zyx, graph.edges, scale) == pytest.approx(cable(zyx, edges, scale),
                                                                 rel=1e-3)
