"""SWC read/write/validate: round trips, forests, renumbering, cropping and every error case."""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.errors import InputError
from dineuro.io.swc import (
    SwcTree,
    read_swc,
    swc_to_zyx,
    validate_swc,
    write_swc,
    zyx_to_swc,
)

# A forest written by hand: soma 1 with two branches, and a second tree rooted at 10.
# Ids are not contiguous, and node 7 is listed before its parent 5.
FOREST = """\
# ORIGINAL_SOURCE hand-written
#   indented comment

1 1 10.0 20.0 5.0 4.0 -1
2 3 12.5 20.0 5.0 1.5 1
7 3 16.25 21.0\t6.0 1.0 5
5 3 14.0 20.5 5.5 1.25 2
3 3 8.0 19.0 4.0 1.5 1
# a comment between nodes
10 2 40.0 40.0 9.0 0.75 -1
11 2 42.0 41.0 9.0 0.5 10
"""


def write_text(tmp_path, text, name="tree.swc"):
    path = tmp_path / name
    path.write_text(text)
    return path


def random_tree(n, rng):
    """A random tree: node k hangs off a random earlier node; values at 3 decimals."""
    parents = np.array([-1] + [int(rng.integers(k)) + 1 for k in range(1, n)])
    return SwcTree(ids=np.arange(1, n + 1), types=rng.integers(1, 5, n),
                   xyz=np.round(rng.uniform(-5, 300, (n, 3)), 3),
                   radius=np.round(rng.uniform(0, 5, n), 3), parents=parents,
                   comments=["made by a test", "", "x y z in voxels"])


def assert_trees_equal(a, b):
    for name in ("ids", "types", "xyz", "radius", "parents"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.comments == b.comments


def test_read_forest_keeps_order_comments_and_values(tmp_path):
    tree = read_swc(write_text(tmp_path, FOREST))
    assert len(tree) == 7
    assert tree.ids.tolist() == [1, 2, 7, 5, 3, 10, 11]
    assert tree.parents.tolist() == [-1, 1, 5, 2, 1, -1, 10]
    assert tree.comments == ["ORIGINAL_SOURCE hand-written", "  indented comment",
                             "a comment between nodes"]
    np.testing.assert_array_equal(tree.xyz[2], [16.25, 21.0, 6.0])
    assert tree.radius[3] == 1.25
    assert tree.roots.tolist() == [0, 5]
    assert tree.parent_index.tolist() == [-1, 0, 3, 1, 0, -1, 5]
    child, parent = tree.edges()
    assert list(zip(tree.ids[child].tolist(), tree.ids[parent].tolist(), strict=True)) == [
        (2, 1), (7, 5), (5, 2), (3, 1), (11, 10)]


def test_round_trip_is_exact_at_three_decimals(tmp_path):
    tree = random_tree(500, np.random.default_rng(0))
    path = write_swc(tmp_path / "out.swc", tree)
    assert_trees_equal(read_swc(path), tree)


def test_round_trip_of_a_read_forest(tmp_path):
    tree = read_swc(write_text(tmp_path, FOREST))
    assert_trees_equal(read_swc(write_swc(tmp_path / "again.swc", tree)), tree)


def test_write_puts_comments_first_and_numbers_compact(tmp_path):
    tree = SwcTree([1, 2], [1, 3], [[1.0, 2.5, -0.0], [1.23456, 100.0, 7.1]], [2.0, 0.5],
                   [-1, 1], comments=["first", ""])
    path = write_swc(tmp_path / "out.swc", tree)
    assert path.read_text().splitlines() == [
        "# first",
        "#",
        "1 1 1 2.5 0 2 -1",
        "2 3 1.235 100 7.1 0.5 1",
    ]


def test_write_refuses_an_existing_path(tmp_path):
    path = write_text(tmp_path, "keep me")
    tree = SwcTree([1], [1], [[0, 0, 0]], [1], [-1])
    with pytest.raises(InputError, match="already exists"):
        write_swc(path, tree)
    assert path.read_text() == "keep me"


def test_write_validates_first_and_leaves_no_file(tmp_path):
    tree = SwcTree([1, 2], [1, 3], [[0, 0, 0], [1, 1, 1]], [1, 1], [-1, 9])
    with pytest.raises(InputError, match=r"bad\.swc: node 2 has parent 9, which does not exist"):
        write_swc(tmp_path / "bad.swc", tree)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_a_comment_with_a_line_break(tmp_path):
    tree = SwcTree([1], [1], [[0, 0, 0]], [1], [-1], comments=["two\nlines"])
    with pytest.raises(InputError, match="line break"):
        write_swc(tmp_path / "out.swc", tree)



def test_an_empty_tree_is_written_only_when_allowed(tmp_path):
    empty = SwcTree([], [], np.zeros((0, 3)), [], [], comments=["nothing traced"])
    with pytest.raises(InputError, match="contains no nodes"):
        write_swc(tmp_path / "refused.swc", empty)
    assert list(tmp_path.iterdir()) == []
    write_swc(tmp_path / "empty.swc", empty, allow_empty=True)
    assert (tmp_path / "empty.swc").read_text() == "# nothing traced\n"
    with pytest.raises(InputError, match="line break"):
        write_swc(tmp_path / "bad.swc", SwcTree([], [], np.zeros((0, 3)), [], [], ["a\nb"]),
                  allow_empty=True)


def test_an_empty_tree_is_read_only_when_allowed(tmp_path):
    empty = write_swc(tmp_path / "empty.swc", SwcTree([], [], np.zeros((0, 3)), [], [],
                                                       comments=["nothing traced", ""]),
                      allow_empty=True)
    with pytest.raises(InputError, match="empty.swc: contains no nodes"):
        read_swc(empty)
    tree = read_swc(empty, allow_empty=True)
    assert (len(tree), tree.xyz.shape, tree.comments) == (0, (0, 3), ["nothing traced", ""])
    # Only the count of nodes is relaxed: a bad node line is refused all the same.
    bad = write_text(tmp_path, "# header\n1 1 0 0 0 1\n", name="bad.swc")
    with pytest.raises(InputError, match="line 2: expected 7 columns"):
        read_swc(bad, allow_empty=True)


NODE = "1 1 0 0 0 1 -1\n"


@pytest.mark.parametrize(("text", "message"), [
    ("", "contains no nodes"),
    ("# only a header\n\n   \n", "contains no nodes"),
    (NODE + "2 3 1 1 1 1\n", r"line 2: expected 7 columns .* found 6"),
    (NODE + "2 3 1 1 1 1 1 9\n", r"line 2: expected 7 columns .* found 8"),
    (NODE + "2 3 1 one 1 1 1\n", r"line 2: y 'one' is not a number"),
    ("# c\n" + NODE + "2.5 3 1 1 1 1 1\n", r"line 3: id '2.5' is not an integer"),
    (NODE + "2 3 1 1 1 1 1.5\n", r"line 2: parent '1.5' is not an integer"),
    (NODE + "2 3 nan 1 1 1 1\n", r"node 2 \(line 2\) has a NaN or infinite coordinate"),
    (NODE + "2 3 1 1 -inf 1 1\n", r"node 2 \(line 2\) has a NaN or infinite coordinate"),
    (NODE + "2 3 1 1 1 inf 1\n", r"node 2 \(line 2\) has a NaN or infinite radius"),
    (NODE + "2 3 1 1 1 -0.5 1\n", r"node 2 \(line 2\) has a negative radius \(-0.5\)"),
    (NODE + "\n1 3 1 1 1 1 -1\n", r"node id 1 appears more than once \(lines 1 and 3\)"),
    (NODE + "2 3 1 1 1 1 4\n", r"node 2 \(line 2\) has parent 4, which does not exist"),
    (NODE + "2 3 1 1 1 1 -2\n", r"node 2 \(line 2\) has parent -2, which does not exist"),
    (NODE + "-3 3 1 1 1 1 1\n", r"node id -3 \(line 2\) is negative"),
    (NODE + "2 3 1 1 1 1 3\n3 3 1 1 1 1 4\n4 3 1 1 1 1 2\n5 3 1 1 1 1 4\n",
     r"node [234] is on a cycle"),
    (NODE + "2 3 1 1 1 1 1\n6 3 1 1 1 1 6\n", r"node 6 is on a cycle"),
])
def test_read_errors_name_the_file_and_the_problem(tmp_path, text, message):
    path = write_text(tmp_path, text, name="broken_neuron.swc")
    with pytest.raises(InputError, match=r"^.*broken_neuron\.swc: " + message) as info:
        read_swc(path)
    assert info.value.path == str(path)


def test_read_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.swc: does not exist"):
        read_swc(tmp_path / "nothere.swc")


def test_cycle_names_a_node_that_is_on_it(tmp_path):
    # 5 hangs below the cycle 2 -> 3 -> 4 -> 2 but is not on it; the message must not name it.
    text = NODE + "5 3 1 1 1 1 4\n2 3 1 1 1 1 3\n3 3 1 1 1 1 4\n4 3 1 1 1 1 2\n"
    with pytest.raises(InputError, match=r"node [234] is on a cycle"):
        read_swc(write_text(tmp_path, text))


def test_validate_swc_without_a_path():
    tree = SwcTree([1, 2], [1, 3], [[0, 0, 0], [1, 1, 1]], [1, -1], [-1, 1])
    with pytest.raises(InputError, match=r"^node 2 has a negative radius"):
        validate_swc(tree)
    validate_swc(SwcTree([1, 2], [1, 3], [[0, 0, 0], [1, 1, 1]], [1, 1], [-1, 1]))


def test_constructor_rejects_inconsistent_arrays():
    with pytest.raises(ValueError, match="same length"):
        SwcTree([1, 2], [1], [[0, 0, 0]], [1], [-1])
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        SwcTree([1], [1], [[0, 0]], [1], [-1])
    with pytest.raises(ValueError, match="integers"):
        SwcTree([1.5], [1], [[0, 0, 0]], [1], [-1])


def test_renumbered_puts_parents_first_and_keeps_geometry(tmp_path):
    rng = np.random.default_rng(3)
    tree = random_tree(300, rng)
    # Shuffle the rows and give the nodes scattered ids, so parents often come after children.
    perm = rng.permutation(len(tree))
    new_ids = rng.choice(10_000, size=len(tree), replace=False) + 5
    id_map = dict(zip(tree.ids.tolist(), new_ids.tolist(), strict=True))
    id_map[-1] = -1
    shuffled = SwcTree(new_ids[perm], tree.types[perm], tree.xyz[perm], tree.radius[perm],
                       [id_map[p] for p in tree.parents[perm].tolist()], tree.comments)
    out = shuffled.renumbered()
    assert out.ids.tolist() == list(range(1, len(tree) + 1))
    assert out.parents[0] == -1
    nonroot = out.parents != -1
    assert np.all(out.parents[nonroot] < out.ids[nonroot])  # parent listed earlier
    # Same geometry: every node (found by its unique position) keeps radius, type and the
    # position of its parent.
    def by_position(t):
        pos = {tuple(p): k for k, p in enumerate(t.xyz.tolist())}
        parent = t.parent_index
        return {xyz: (t.radius[k], t.types[k],
                      None if parent[k] < 0 else tuple(t.xyz[parent[k]].tolist()))
                for xyz, k in pos.items()}
    assert len({tuple(p) for p in tree.xyz.tolist()}) == len(tree)
    assert by_position(out) == by_position(shuffled)
    assert out.comments == tree.comments
    # And it survives a file round trip unchanged.
    assert_trees_equal(read_swc(write_swc(tmp_path / "renumbered.swc", out)), out)


def test_renumbered_forest_is_depth_first_from_each_root(tmp_path):
    out = read_swc(write_text(tmp_path, FOREST)).renumbered()
    # Original ids in the new order: tree at 1 depth-first (siblings in file order), then 10.
    assert out.xyz[:, 0].tolist() == [10.0, 12.5, 14.0, 16.25, 8.0, 40.0, 42.0]
    assert out.parents.tolist() == [-1, 1, 2, 3, 1, -1, 6]


def test_subset_turns_orphans_into_roots(tmp_path):
    tree = read_swc(write_text(tmp_path, FOREST))
    keep = ~np.isin(tree.ids, [2, 10])  # drop a mid-branch node and a root
    sub = tree.subset(keep)
    assert sub.ids.tolist() == [1, 7, 5, 3, 11]
    assert sub.parents.tolist() == [-1, 5, -1, 1, -1]
    np.testing.assert_array_equal(sub.xyz, tree.xyz[keep])
    validate_swc(sub)
    # Row indices work too, in the given order.
    assert tree.subset([4, 0]).parents.tolist() == [1, -1]


def test_crop_keeps_nodes_whose_voxel_is_in_the_stack(tmp_path):
    tree = read_swc(write_text(tmp_path, FOREST))
    # (z, y, x) shape: x < 14.5 keeps x in {10, 12.5, 14, 8}; z, y are all inside.
    sub = tree.crop((50, 50, 15))
    assert sub.ids.tolist() == [1, 2, 5, 3]
    assert sub.parents.tolist() == [-1, 1, 2, 1]


def test_axis_conversion_reverses_columns_and_is_its_own_inverse():
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(10, 3))
    zyx = swc_to_zyx(xyz)
    np.testing.assert_array_equal(zyx[:, 0], xyz[:, 2])
    np.testing.assert_array_equal(zyx[:, 1], xyz[:, 1])
    np.testing.assert_array_equal(zyx[:, 2], xyz[:, 0])
    np.testing.assert_array_equal(zyx_to_swc(zyx), xyz)
    np.testing.assert_array_equal(swc_to_zyx(zyx_to_swc(xyz)), xyz)
    tree = SwcTree(np.arange(10), np.ones(10), xyz, np.ones(10), np.full(10, -1))
    np.testing.assert_array_equal(tree.zyx, zyx)
    with pytest.raises(ValueError, match="3 columns"):
        swc_to_zyx(np.zeros((4, 2)))


def test_read_skips_a_byte_order_mark_and_accepts_latin1_comments(tmp_path):
    path = tmp_path / "old.swc"
    path.write_bytes(b"\xef\xbb\xbf# made in 2004\n" + NODE.encode())
    assert read_swc(path).comments == ["made in 2004"]
    path = tmp_path / "latin1.swc"
    path.write_bytes(b"# scale 0.3 \xb5m\n" + NODE.encode())
    tree = read_swc(path)
    assert tree.comments == ["scale 0.3 \u00b5m"]
    assert tree.ids.tolist() == [1]
