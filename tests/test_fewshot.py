"""Few-shot NAS: the split tree, sub-supernets (inherit / restart) and training the leaves with exact resume."""
import json
import shutil

import numpy as np
import pytest
import torch

from nastk.paths import LOCK_FILE
from nastk.errors import ArchitectureError, ConfigError, RunError
from nastk.datasets import load_dataset
from nastk.oneshot.split_tree import (ROOT_STATE, TREE, FewShotSupernets, SplitTree, load_leaf, node_dir,
                                   route_and_load, split_supernet, sub_supernet, train_leaves)
from nastk.oneshot.ranking import inherited_accuracies
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.space import get_space

CONFIG = dict(space="nb201", dataset="digits", supernet={"C": 4, "N": 1}, epochs=2, train_size=64, batch_size=32,
              valid_size=32, eval_batch_size=32, augment=False)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny(space, seed=0):
    torch.manual_seed(seed)
    supernet = space.supernet(10, C=4, N=1)
    with torch.no_grad():  # non-trivial weights everywhere
        for p in supernet.parameters():
            p.normal_(0, 0.3)
    return supernet


def two_level_tree(supernet, final_inherit=False):
    """root -> edge 2 into {convs} / {none, skip, pool}; root.0 -> edge 5 in two; root.1 -> edge 0 exhaustively (7 leaves)."""
    tree = SplitTree.of(supernet)
    tree.split("root", 2, [[2, 3], [0, 1, 4]], epoch=3, info={"distances": np.eye(5), "score": np.float64(1.5)})
    tree.exhaustive("root.1", 0, inherit=final_inherit, epoch=6)
    tree.split("root.0", 5, [[0, 1, 2], [3, 4]], inherit=final_inherit)
    return tree


# --- the tree -------------------------------------------------------------------------------------------
def test_split_validation_errors(space):
    supernet = space.supernet(10, C=4, N=1)
    tree = SplitTree.of(supernet)
    tree.split("root", 2, [[0, 1], [2, 3, 4]])
    bad = [("root", 2, [[0], [1, 2, 3, 4]], "already split"),
           ("root.0", 2, [[0], [2]], "not allowed at this node"),
           ("root.0", 2, [[0], [1, 5]], "out of range"),
           ("root.0", 2, [[0, 1]], "at least two"),
           ("root.0", 2, [[0, 1], []], "empty"),
           ("root.1", 0, [[0, 1], [1, 2, 3, 4]], "disjoint"),
           ("root.1", 0, [[0, 1], [2, 3]], "in no group"),
           ("root.1", 6, [[0], [1, 2, 3, 4]], "out of range"),
           ("root.1", 0, [[0.5], [1, 2, 3, 4]], "must be an integer"),
           ("root.9", 0, [[0], [1, 2, 3, 4]], "no node")]
    for node, decision, groups, words in bad:
        with pytest.raises(ConfigError, match=words) as error:
            tree.split(node, decision, groups)
        assert "\n" not in str(error.value)
    assert [n.id for n in tree.nodes()] == ["root", "root.0", "root.1"]  # failed splits left no trace
    with pytest.raises(ConfigError, match="JSON"):
        tree.split("root.1", 0, [[0], [1, 2, 3, 4]], info={"f": object()})
    assert tree.node("root.1").is_leaf
    with pytest.raises(ConfigError, match="allows no option"):
        SplitTree(np.zeros((2, 3), dtype=bool))


def test_exhaustive_split_partitions_the_edge(space):
    supernet = space.supernet(10, C=4, N=1)
    tree = SplitTree.of(supernet)
    leaves = tree.exhaustive("root", 2)
    assert [leaf.id for leaf in tree.leaves()] == [f"root.{i}" for i in range(5)] and leaves == tree.leaves()
    masks = np.stack([leaf.allowed for leaf in leaves])
    assert (masks[:, 2].sum(axis=0) == 1).all() and np.array_equal(masks[:, 2].any(axis=0), tree.root.allowed[2])
    assert all(np.array_equal(np.delete(m, 2, axis=0), np.delete(tree.root.allowed, 2, axis=0)) for m in masks)
    assert all(leaf.options(2) == (i,) and leaf.allows(2, i) and not leaf.allows(2, (i + 1) % 5)
               for i, leaf in enumerate(leaves))
    assert tree.root.split.groups == ((0,), (1,), (2,), (3,), (4,)) and tree.root.split.inherit
    # a restricted root: the exhaustive split only covers what it allows
    (convs, _) = supernet.split(2, [[2, 3], [0, 1, 4]])
    sub = SplitTree.of(convs)
    assert [leaf.options(2) for leaf in sub.exhaustive("root", 2)] == [(2,), (3,)]


def test_route_is_unique_and_correct(space):
    supernet = space.supernet(10, C=4, N=1)
    tree = two_level_tree(supernet)
    leaves = tree.leaves()
    assert [leaf.id for leaf in leaves] == ["root.0.0", "root.0.1"] + [f"root.1.{i}" for i in range(5)]
    rng = np.random.default_rng(0)
    hit = set()
    for _ in range(300):
        choices = supernet.path_of_arch(space.sample(rng))
        leaf = tree.route(choices)
        assert leaf.contains(choices) and [other.contains(choices) for other in leaves].count(True) == 1
        assert leaf.allowed[np.arange(6), list(choices)].all()
        hit.add(leaf.id)
    assert hit == {leaf.id for leaf in leaves}
    # an architecture that no leaf allows (the root is a sub-supernet without conv1x1 on edge 2)
    (others,) = supernet.split(2, [[0, 1, 4]])
    small = SplitTree.of(others)
    small.exhaustive("root", 0)
    with pytest.raises(ArchitectureError, match="option 2"):
        small.route((0, 0, 2, 0, 0, 0))
    with pytest.raises(ArchitectureError, match="expected 6 choices"):
        tree.route((0, 0, 0))
    assert small.route((3, 0, 4, 0, 0, 0)).id == "root.3"


def test_two_level_tree_round_trips_and_bad_files_fail(space, tmp_path):
    tree = two_level_tree(space.supernet(10, C=4, N=1))
    tree.node("root.1.3").info["valid_acc"] = 12.5
    path = tree.save(tmp_path / TREE)
    assert [p.name for p in tmp_path.iterdir()] == [TREE]  # atomic: no temporary file left
    loaded = SplitTree.load(path)
    assert loaded == tree and loaded.to_dict() == tree.to_dict() and len(loaded) == len(tree) == 10
    for a, b in zip(tree.nodes(), loaded.nodes()):
        assert a.id == b.id and np.array_equal(a.allowed, b.allowed) and a.info == b.info
        assert (a.split is None) == (b.split is None) and (a.split is None or a.split.to_dict() == b.split.to_dict())
    assert loaded.root.split.info == {"distances": np.eye(5).tolist(), "score": 1.5} and loaded.root.split.epoch == 3
    assert not loaded.node("root.1").split.inherit and loaded.decisions == tree.decisions

    data = json.loads(path.read_text())
    broken = [path.read_text()[:-40],                                          # torn
              json.dumps({**data, "format": 7})]                               # foreign
    inconsistent = json.loads(path.read_text())
    inconsistent["root"]["children"][1]["allowed"][2] = [0, 1, 2, 3, 4]       # a mask the splits do not give
    broken.append(json.dumps(inconsistent))
    overlapping = json.loads(path.read_text())
    overlapping["root"]["split"]["groups"] = [[1, 2, 3], [0, 1, 4]]            # not a partition
    broken.append(json.dumps(overlapping))
    missing = json.loads(path.read_text())
    del missing["root"]["children"][0]["split"]["decision"]
    broken.append(json.dumps(missing))
    for number, text in enumerate(broken):
        bad = tmp_path / f"bad{number}.json"
        bad.write_text(text)
        with pytest.raises(RunError) as error:
            SplitTree.load(bad)
        assert str(bad) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(RunError, match="not found"):
        SplitTree.load(tmp_path / "absent.json")


# --- sub-supernets ------------------------------------------------------------------------------------
def test_inherit_copies_weights_and_restart_reinitialises(space):
    root = tiny(space)
    before = {k: v.clone() for k, v in root.state_dict().items()}
    tree = two_level_tree(root, final_inherit=False)
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731

    inherited = sub_supernet(tree, "root.1", root)
    assert same(inherited.state_dict(), before) and np.array_equal(inherited.allowed, tree.node("root.1").allowed)
    assert inherited is not root and np.array_equal(root.allowed, tree.root.allowed)

    state = torch.random.get_rng_state()
    restarted = [sub_supernet(tree, f"root.1.{i}", root, seed=0) for i in range(5)]
    assert torch.equal(torch.random.get_rng_state(), state)  # restarts leave the global stream alone
    assert same(root.state_dict(), before)
    for i, child in enumerate(restarted):
        assert np.array_equal(child.allowed, tree.node(f"root.1.{i}").allowed)
        assert not torch.equal(child.classifier.weight, root.classifier.weight)
    assert not torch.equal(restarted[0].classifier.weight, restarted[1].classifier.weight)  # seeded per node
    again = sub_supernet(tree, "root.1.2", root, seed=0)
    assert same(again.state_dict(), restarted[2].state_dict())
    assert not torch.equal(sub_supernet(tree, "root.1.2", root, seed=1).classifier.weight, again.classifier.weight)
    # from the parent's own supernet, one level at a time: the same children
    assert all(same(a.state_dict(), b.state_dict()) for a, b in zip(split_supernet(tree, "root.1", inherited), restarted))
    with pytest.raises(ConfigError, match="mask"):
        split_supernet(tree, "root.1", root)  # the root's supernet is not root.1's

    kept = two_level_tree(root, final_inherit=True)
    assert same(sub_supernet(kept, "root.0.1", root).state_dict(), before)


def test_leaf_sampler_draws_only_allowed_options(space, digits):
    tree = two_level_tree(space.supernet(10, C=4, N=1))
    for leaf_id in ("root.0.1", "root.1.3"):
        leaf = tree.node(leaf_id)
        child = sub_supernet(tree, leaf, tiny(space))
        for sampler in ("uniform", "pada"):
            trainer = OneShotTrainer(OneShotConfig(**{**CONFIG, "sampler": sampler}), data=digits, progress=False,
                                     supernet=child)
            paths = np.array([trainer.path_sampler.sample() for _ in range(300)])
            drawn = np.zeros_like(leaf.allowed)
            drawn[np.repeat(np.arange(6)[None], len(paths), 0), paths] = True
            assert np.array_equal(drawn, leaf.allowed)  # every allowed option drawn, nothing else


# --- training the leaves --------------------------------------------------------------------------------
def _strip(history):
    return [{k: v for k, v in r.items() if k not in ("epoch_s", "images_per_s")} for r in history]


def _checkpoints(run_dir, tree):
    return {leaf.id: torch.load(node_dir(run_dir, leaf) / "checkpoint.pt", weights_only=True) for leaf in tree.leaves()}


def _assert_same_runs(a, b):
    assert a.keys() == b.keys()
    for leaf in a:
        assert a[leaf]["epoch"] == b[leaf]["epoch"] == CONFIG["epochs"] and a[leaf]["allowed"] == b[leaf]["allowed"]
        assert a[leaf]["model"].keys() == b[leaf]["model"].keys()
        assert all(torch.equal(a[leaf]["model"][k], b[leaf]["model"][k]) for k in a[leaf]["model"]), leaf
        assert a[leaf]["step"]["path_sampler"] == b[leaf]["step"]["path_sampler"]
        assert _strip(a[leaf]["history"]) == _strip(b[leaf]["history"])


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def fewshot_run(space, digits, tmp_path_factory):
    """An uninterrupted run: 3 leaves (restarted at the final split), PA&DA sampling."""
    config = OneShotConfig(**{**CONFIG, "sampler": "pada"})
    tree = SplitTree.of(space.supernet(10, C=4, N=1))
    tree.split("root", 2, [[2, 3], [0, 1, 4]], epoch=0)
    tree.split("root.1", 0, [[3], [0, 1, 2, 4]], inherit=False, epoch=0)
    run_dir = tmp_path_factory.mktemp("straight")
    summary = train_leaves(config, tree, run_dir, data=digits, progress=False)
    return config, tree, run_dir, summary


def test_train_leaves_layout_and_summary(fewshot_run):
    config, tree, run_dir, summary = fewshot_run
    assert {p.name for p in run_dir.iterdir()} - {LOCK_FILE} == {"config.json", TREE, ROOT_STATE, "summary.json",
                                                   "root.0", "root.1.0", "root.1.1"}
    assert SplitTree.load(run_dir / TREE) == tree
    assert [e["id"] for e in summary["leaves"]] == ["root.0", "root.1.0", "root.1.1"]
    assert summary["trained"] == 3 and summary["skipped"] == 0
    assert json.loads((run_dir / "summary.json").read_text())["leaves"][1]["allowed"][0] == [3]
    for leaf in tree.leaves():
        lines = (node_dir(run_dir, leaf) / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [0, 1]


def test_killed_run_resumes_bitwise(fewshot_run, digits, tmp_path, space):
    config, tree, straight_dir, _ = fewshot_run
    straight = _checkpoints(straight_dir, tree)

    def stop_in_second_leaf(trainer, record):  # killed after epoch 1 of 2 of root.1.0 (a partial checkpoint)
        if trainer.run_dir.name == "root.1.0" and record["epoch"] == 0:
            raise Stop

    killed = tmp_path / "killed"
    with pytest.raises(Stop):
        train_leaves(config, tree, killed, data=digits, progress=False, callbacks=[stop_in_second_leaf])
    assert not (killed / "root.1.1").exists() and torch.load(killed / "root.1.0" / "checkpoint.pt")["epoch"] == 1
    with pytest.raises(RunError, match="already holds a run"):
        train_leaves(config, tree, killed, data=digits, progress=False)
    other = SplitTree.of(space.supernet(10, C=4, N=1))
    other.exhaustive("root", 2)
    with pytest.raises(RunError, match="tree differs"):
        train_leaves(config, other, killed, resume=True, data=digits, progress=False)
    with pytest.raises(RunError, match="differs from the root"):
        train_leaves(config, None, killed, supernet=tiny(space), resume=True, data=digits, progress=False)

    summary = train_leaves(config, None, killed, resume=True, data=digits, progress=False)
    assert [(e["skipped"], e["resumed_from_epoch"]) for e in summary["leaves"]] == [(True, 2), (False, 1), (False, 0)]
    _assert_same_runs(straight, _checkpoints(killed, tree))
    lines = (killed / "root.1.0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]

    # a lost leaf is retrained from the stored root, the others are skipped
    (killed / "root.1.1" / "checkpoint.pt").unlink()
    untouched = (killed / "root.0" / "checkpoint.pt").stat().st_mtime_ns
    summary = train_leaves(config, tree, killed, resume=True, data=digits, progress=False)
    assert [e["skipped"] for e in summary["leaves"]] == [True, True, False]
    assert (killed / "root.0" / "checkpoint.pt").stat().st_mtime_ns == untouched
    _assert_same_runs(straight, _checkpoints(killed, tree))
    assert len((killed / "root.1.1" / "metrics.jsonl").read_text().splitlines()) == 2

    # a checkpoint of another leaf in a leaf's folder is refused, naming it
    shutil.copy(killed / "root.0" / "checkpoint.pt", killed / "root.1.1" / "checkpoint.pt")
    with pytest.raises(RunError, match="root.1.1.*allowed mask differs"):
        train_leaves(config, None, killed, resume=True, data=digits, progress=False)
    with pytest.raises(RunError, match="allowed mask differs"):
        load_leaf(killed, "root.1.1")


def test_load_leaf_and_route_to_the_containing_sub_supernet(fewshot_run, digits, space):
    config, tree, run_dir, _ = fewshot_run
    state = torch.load(run_dir / "root.1.0" / "checkpoint.pt", weights_only=True)
    leaf = load_leaf(run_dir, "root.1.0")
    assert np.array_equal(leaf.allowed, tree.node("root.1.0").allowed) and not leaf.training
    assert all(torch.equal(v, state["model"][k]) for k, v in leaf.state_dict().items())
    with pytest.raises(ArchitectureError):
        leaf.set_active((0, 0, 0, 0, 0, 0))  # edge 0 allows only conv3x3 in root.1.0
    with pytest.raises(ConfigError, match="no node"):
        load_leaf(run_dir, "root.7")

    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(12)]
    supernets = FewShotSupernets(run_dir)
    x, y = digits.x_test[:32], digits.y_test[:32]
    scores = supernets.accuracies(archs, x, y, batch_size=32)
    for arch, score in zip(archs[:4], scores[:4]):
        node, supernet = route_and_load(run_dir, arch)
        assert node is not None and node.contains(supernet.path_of_arch(arch))
        assert node.id == supernets.route(arch).id and supernet.allowed[np.arange(6), list(supernet.path_of_arch(arch))].all()
        assert inherited_accuracies(supernet, [arch], x, y, batch_size=32)[0] == score
    assert len(supernets._loaded) <= 3


def test_unfinished_leaf_is_refused(digits, tmp_path, space):
    config = OneShotConfig(**CONFIG)
    tree = SplitTree.of(space.supernet(10, C=4, N=1))
    tree.split("root", 2, [[2, 3], [0, 1, 4]])

    def stop(trainer, record):
        raise Stop

    with pytest.raises(Stop):
        train_leaves(config, tree, tmp_path, data=digits, progress=False, callbacks=[stop])
    with pytest.raises(RunError, match="trained for 1 of 2 epochs"):
        load_leaf(tmp_path, "root.0")
    assert load_leaf(tmp_path, "root.0", finished=False).allowed[2].tolist() == [False, False, True, True, False]
    with pytest.raises(RunError, match="holds no sub-supernet checkpoint"):
        load_leaf(tmp_path, "root.1")
