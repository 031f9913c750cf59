"""The DARTS cell space: codec, canonical form, the evaluation network, and the 214-genotype benchmark."""
import ast
import collections
import csv
import gzip
import os

import numpy as np
import pytest
import torch

from nastk.architecture import Architecture
from nastk.errors import ArchitectureError, ConfigError, CorruptDataError, MissingDataError, NastkError, UnknownOpError
from nastk.space import get_space
from search_spaces.darts import CELLS, NODES, OPS, Genotype
from search_spaces.darts.ops import PRIMITIVES, make_op

DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=[2, 3, 4, 5])")
DARTS_V2_COMPACT = ("normal:sep3@0,sep3@1|sep3@0,sep3@1|skip@0,sep3@1|skip@0,dil3@2;"
                    "reduce:max3@0,max3@1|max3@1,skip@2|max3@0,skip@2|max3@1,skip@2")
SMALL = "normal:sep3@0,sep5@1|dil3@0,dil5@1|skip@0,max3@1|avg3@0,sep3@2;reduce:sep5@0,dil5@1|max3@1,skip@2|avg3@0,skip@2|max3@1,dil3@4"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def darts():
    return get_space("darts")


# --- codec --------------------------------------------------------------------------------------
def test_darts_v2_in_both_notations(darts):
    from search_spaces.darts import PUBLISHED

    arch = darts.from_str(DARTS_V2)
    assert arch.to_str() == DARTS_V2_COMPACT == PUBLISHED["DARTS_V2"]
    assert darts.from_str(DARTS_V2_COMPACT) == arch
    assert darts.from_str(DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)")) == arch
    assert darts.from_str(darts.genotype_str(arch)) == arch
    genotype = darts.genotype(arch)
    assert darts.from_str(f"Genotype({list(genotype.normal)}, [2, 3, 4, 5], {list(genotype.reduce)}, range(2, 6))") == arch
    assert Architecture.from_str(DARTS_V2_COMPACT, "darts") == arch
    full_names = DARTS_V2_COMPACT.replace("sep3", "sep_conv_3x3").replace("skip", "skip_connect")
    assert darts.from_str(full_names) == arch
    assert darts.from_str(" normal: sep3@0, sep3@1 | sep3@0,sep3@1|skip@0,sep3@1|skip@0,dil3@2 ; "
                          "reduce:max3@0,max3@1|max3@1,skip@2|max3@0,skip@2|max3@1,skip@2 ") == arch


def test_choice_layout(darts):
    arch = darts.from_str(DARTS_V2)
    assert len(arch.choices) == 3 * len(CELLS) * len(NODES)
    assert arch.choices[:3] == ((0, 1), "sep_conv_3x3", "sep_conv_3x3")
    assert arch.choices[6:9] == ((0, 1), "skip_connect", "sep_conv_3x3")  # node 4: (sep, 1), (skip, 0) sorted
    assert arch.choices[12:15] == ((0, 1), "max_pool_3x3", "max_pool_3x3")


def test_swapping_a_nodes_pairs_is_the_same_architecture(darts):
    genotype = darts.genotype(darts.from_str(DARTS_V2))
    swapped = list(genotype.normal)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    swapped[6], swapped[7] = swapped[7], swapped[6]
    other = Genotype(tuple(swapped), (2, 3, 4, 5), genotype.reduce, (2, 3, 4, 5))
    assert darts.from_genotype(other) == darts.from_genotype(genotype)
    assert darts.canonical(darts.from_genotype(other)) == darts.canonical(darts.from_genotype(genotype)) == DARTS_V2_COMPACT
    changed = list(genotype.normal)
    changed[7] = ("dil_conv_5x5", 2)
    assert darts.canonical(darts.from_genotype(Genotype(tuple(changed), (2, 3, 4, 5), genotype.reduce, (2, 3, 4, 5)))) \
        != darts.canonical(darts.from_genotype(genotype))


def test_darts_own_namedtuple_and_grouped_form(darts):
    DartsGenotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    genotype = darts.genotype(darts.from_str(DARTS_V2))
    theirs = DartsGenotype(list(genotype.normal), range(2, 6), list(genotype.reduce), range(2, 6))
    assert darts.from_genotype(theirs) == darts.from_str(DARTS_V2)
    grouped = ("Genotype(normal=[[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], [('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], "
               "[('sep_conv_3x3', 1), ('skip_connect', 0)], [('skip_connect', 0), ('dil_conv_3x3', 2)]], "
               "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
               "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
               "reduce_concat=range(2, 6))")
    assert darts.from_str(grouped) == darts.from_str(DARTS_V2)


NORMAL_PAIRS = "[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)]"


@pytest.mark.parametrize("text, error, fragment", [
    ("", ArchitectureError, "normal:...;reduce:"),
    ("normal:sep3@0,sep3@1", ArchitectureError, "1 ';'-separated"),
    (DARTS_V2_COMPACT.replace("normal:", "nrml:"), ArchitectureError, "must start with 'normal:'"),
    (DARTS_V2_COMPACT.replace("reduce:", "normal:"), ArchitectureError, "normal cell twice"),
    (DARTS_V2_COMPACT.replace("sep3@0,sep3@1|", "", 1), ArchitectureError, "3 '|'-separated nodes, expected 4"),
    (DARTS_V2_COMPACT.replace("sep3@0,sep3@1|", "sep3@0,sep3@1,max3@1|", 1), ArchitectureError, "3 op@input entries"),
    (DARTS_V2_COMPACT.replace("dil3@2", "dil3@\u00b2"), ArchitectureError, "must be op@input"),
    (DARTS_V2.replace("('sep_conv_3x3', 0), ", "", 1), ArchitectureError, "7 (op, input) pairs, expected 8"),
    (DARTS_V2_COMPACT.replace("dil3@2", "dil3@x"), ArchitectureError, "must be op@input"),
    (DARTS_V2_COMPACT.replace("dil3@2", "dil3@5"), ArchitectureError, "input 5 must be a node index 0..4"),
    (DARTS_V2_COMPACT.replace("skip@0,dil3@2", "skip@2,dil3@2"), ArchitectureError, "uses input 2 twice"),
    (DARTS_V2_COMPACT.replace("dil3@2", "conv7@2"), UnknownOpError, "unknown DARTS op 'conv7'"),
    (DARTS_V2_COMPACT.replace("dil3@2", "none@2"), ArchitectureError, "'none' is a supernet op"),
    (DARTS_V2.replace("'dil_conv_3x3'", "'zap'"), UnknownOpError, "unknown DARTS op 'zap'"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 9)"), ArchitectureError, "input 9"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', '2')"), ArchitectureError, "must be an integer"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]"), ArchitectureError, "normal_concat is [4, 5]"),
    (DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), ArchitectureError, "lacks reduce_concat"),
    (DARTS_V2.replace("reduce_concat", "extra"), ArchitectureError, "unknown Genotype field 'extra'"),
    (DARTS_V2[:-1], ArchitectureError, "not valid Genotype(...) notation"),
    (DARTS_V2.replace("Genotype(", "Genotype(" + NORMAL_PAIRS + ", "), ArchitectureError, "'normal' given twice"),
    ("Genotype([], [], [], [], [])", ArchitectureError, "5 fields"),
    ("Genotype(normal=__import__('os').system('touch /tmp/nastk_pwned'), normal_concat=[2], reduce=[], "
     "reduce_concat=[2])", ArchitectureError, "list of (op, input) pairs"),
    ("Genotype" + "(" * 200000, ArchitectureError, "characters long"),
])
def test_bad_strings_give_one_clear_line(darts, text, error, fragment):
    with pytest.raises(error) as info:
        darts.from_str(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert not os.path.exists("/tmp/nastk_pwned")


def test_bad_architecture_values(darts):
    good = darts.from_str(DARTS_V2)
    with pytest.raises(ArchitectureError, match="ascending pair"):
        darts.to_str(Architecture("darts", ((1, 0),) + good.choices[1:]))
    with pytest.raises(ArchitectureError, match="24 choices"):
        darts.to_str(Architecture("darts", good.choices[:3]))
    with pytest.raises(ArchitectureError, match="DARTS Architecture"):
        darts.to_str(Architecture("nb201", good.choices))
    with pytest.raises(ArchitectureError, match="must be a string"):
        darts.from_str(None)


def test_graph(darts):
    g = darts.graph(darts.from_str(DARTS_V2))
    assert g.number_of_nodes() == 14 and g.number_of_edges() == 2 * (8 + 4)
    assert g.edges[("normal", 2), ("normal", 5)]["op"] == "dil_conv_3x3"
    assert g.edges[("reduce", 2), ("reduce", 3)]["op"] == "skip_connect"
    assert sorted(g.predecessors(("normal", "out"))) == [("normal", j) for j in NODES]
    assert all(g.in_degree((cell, j)) == 2 for cell in CELLS for j in NODES)


def test_sample_is_valid_and_round_trips(darts):
    rng = np.random.default_rng(0)
    archs = [darts.sample(rng) for _ in range(200)]
    assert len(set(archs)) == len(archs)
    for arch in archs:
        assert darts.from_str(arch.to_str()) == arch and darts.from_str(darts.genotype_str(arch)) == arch
    encodings = np.stack([darts.encode(a) for a in archs])
    assert encodings.shape == (200, 140) and len({e.tobytes() for e in encodings}) == 200


def test_choice_model_operators(darts):
    model = darts.choice_model()
    assert model.names[:3] == ("normal_n2_inputs", "normal_n2_op0", "normal_n2_op1")
    assert model.names[-1] == "reduce_n5_op1" and len(model.names) == 24
    assert model.size() == 180 ** 2 * 7 ** 16  # (C(2,2) C(3,2) C(4,2) C(5,2))^2 x 7^16
    assert {"mutate", "neighbors", "crossover", "optuna", "graph", "build"} <= darts.capabilities
    assert "enumerate" not in darts.capabilities
    rng = np.random.default_rng(1)
    a, b = darts.from_str(DARTS_V2), darts.sample(rng)
    neighbors = darts.neighbors(a)
    assert len(neighbors) == 2 * (0 + 2 + 5 + 9 + 8 * 6) and a not in neighbors
    for arch in [darts.mutate(a, rng), darts.crossover(a, b, rng), *neighbors[:20]]:
        assert darts.from_str(arch.to_str()) == arch
    optuna = pytest.importorskip("optuna")
    params = {name: (choice.text(value) if name.endswith("inputs") else value)
              for name, choice, value in zip(model.names, model.choices, a.choices)}
    assert darts.suggest(optuna.trial.FixedTrial(params)) == a


# --- network ------------------------------------------------------------------------------------
def test_darts_v2_parameter_count(darts):
    # DARTS reports 3.3M (rounded to 0.1M, without the auxiliary head), so the count must round to
    # 3.3M: [3.25M, 3.35M). We measure 3,349,342 (pinned to catch accidental changes to the network).
    arch = darts.from_str(DARTS_V2)
    params = sum(p.numel() for p in darts.build(arch, num_classes=10, C=36, layers=20).parameters())
    assert 3.25e6 <= params < 3.35e6
    assert params == 3_349_342
    with_head = sum(p.numel() for p in darts.build(arch, 10, C=36, layers=20, auxiliary=True).parameters())
    assert with_head > params


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("op", PRIMITIVES)
def test_op_shapes_and_strides(op, size):
    x = torch.randn(2, 6, size, size)
    assert make_op(op, 6, stride=1)(x).shape == (2, 6, size, size)
    assert make_op(op, 6, stride=2)(x).shape == (2, 6, (size + 1) // 2, (size + 1) // 2)


def test_cells_in_normal_and_reduce_mode(darts):
    from search_spaces.darts.network import Cell

    cells = darts._cells(darts.from_str(SMALL))
    s0, s1 = torch.randn(2, 12, 8, 8), torch.randn(2, 10, 8, 8)
    normal = Cell(cells["normal"], (2, 3, 4, 5), 12, 10, 4, reduction=False, reduction_prev=False)
    assert normal(s0, s1).shape == (2, 16, 8, 8)
    reduce = Cell(cells["reduce"], (2, 3, 4, 5), 12, 10, 4, reduction=True, reduction_prev=False)
    assert reduce(s0, s1).shape == (2, 16, 4, 4)
    after_reduce = Cell(cells["normal"], (2, 3, 4, 5), 12, 10, 4, reduction=False, reduction_prev=True)
    assert after_reduce(torch.randn(2, 12, 8, 8), s1[:, :, ::2, ::2]).shape == (2, 16, 4, 4)


def _devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
def test_small_network_forward_backward(darts, device):
    torch.manual_seed(0)
    model = darts.build(darts.from_str(SMALL), num_classes=10, C=8, layers=5, auxiliary=True,
                        drop_path_prob=0.2, device=device)
    assert all(p.device.type == device for p in model.parameters())
    x, y = torch.randn(4, 3, 32, 32, device=device), torch.randint(0, 10, (4,), device=device)
    model.train()
    logits, aux_logits = model(x)
    assert logits.shape == aux_logits.shape == (4, 10)
    loss = torch.nn.functional.cross_entropy(logits, y) + 0.4 * torch.nn.functional.cross_entropy(aux_logits, y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 10)
    plain = darts.build(darts.from_str(SMALL), num_classes=10, C=8, layers=5, device=device)
    assert isinstance(plain.train()(x), torch.Tensor)


def test_drop_path_is_settable_and_drops_whole_examples(darts):
    from search_spaces.darts.ops import drop_path

    torch.manual_seed(0)
    x = torch.ones(64, 3, 4, 4)
    out = drop_path(x, 0.5)
    per_example = out.flatten(1)
    assert set(per_example.min(1).values.tolist()) <= {0.0, 2.0} and (per_example == per_example[:, :1]).all()
    assert 0 < (per_example[:, 0] == 0).sum() < 64
    model = darts.build(darts.from_str(SMALL), C=8, layers=5)
    model.drop_path_prob = 0.3  # a training loop schedules it
    model.train()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model(x), model(x))  # no drop path in eval mode


# --- the 214-genotype benchmark -------------------------------------------------------------------
def _naslib_to_genotype(text):
    cells = ast.literal_eval(text)  # the test reads the data file's own column; not nastk's parser
    normal, reduce = ([(OPS[op], source) for source, op in cell] for cell in cells)
    return Genotype(tuple(normal), (2, 3, 4, 5), tuple(reduce), (2, 3, 4, 5))


def test_all_214_genotypes_parse_and_round_trip(darts, darts_rows):
    assert len(darts_rows) == 214
    canonical = set()
    for row in darts_rows:
        arch = darts.from_str(row["genotype"])
        assert darts.from_str(arch.to_str()) == arch
        assert darts.from_str(darts.genotype_str(arch)) == arch
        assert darts.canonical(arch) == arch.to_str()
        assert darts.from_str(row["source_genotype"]) == arch  # grouped per node, range(2, 6)
        assert darts.from_genotype(_naslib_to_genotype(row["naslib_compact"])) == arch
        canonical.add(darts.canonical(arch))
    assert len(canonical) == 214


def test_table_and_evaluator_return_the_files_accuracies(darts, darts_rows):
    from nastk.benchmarks.darts import default_table
    from nastk.evaluators import make_evaluator

    table = default_table()
    assert len(table) == 214
    evaluator = make_evaluator(darts, {"kind": "benchmark", "benchmark": "darts", "dataset": "cifar10",
                                       "objective": "test600"}, device="cpu")
    for number in (0, 1, 107, 213):
        row = darts_rows[number]
        arch = darts.from_str(row["genotype"])
        assert table.row(arch) == int(row["idx"])
        result = evaluator.evaluate(arch)
        assert result.value == pytest.approx(float(row["test_acc_ep600"]))
        assert result.metrics["test_accuracy"] == pytest.approx(float(row["test_acc_ep600"]))
        assert result.protocol["objective"] == "cifar10/test/600/last"
        metrics = table.metrics(arch)
        assert metrics["cifar10/test/600/max"] == pytest.approx(float(row["test_acc_max"]))
        assert metrics["cifar10/test/300/last"] == pytest.approx(float(row["test_acc_ep300"]))
    by_max = make_evaluator(darts, {"kind": "benchmark", "benchmark": "darts", "dataset": "cifar10",
                                    "objective": "testmax"}, device="cpu")
    assert by_max.evaluate(darts.from_str(darts_rows[5]["genotype"])).value == pytest.approx(float(darts_rows[5]["test_acc_max"]))
    accuracies = table.accuracies(table.archs(), by_max.search_protocol)
    assert 96.0 < accuracies.min() < accuracies.max() < 97.6
    from nastk.benchmarks.registry import benchmark_for

    benchmark = benchmark_for("darts")
    truth, key = benchmark.truth(table.archs()[:3], "cifar10")
    assert key == "cifar10/test/600/last" and truth.tolist() == [float(r["test_acc_ep600"]) for r in darts_rows[:3]]
    assert not benchmark.complete and benchmark.arch_at(benchmark.index(table.archs()[42])) == table.archs()[42]


def test_benchmark_errors(darts, darts_rows, tmp_path, monkeypatch):
    from nastk.benchmarks import darts as bench
    from nastk.evaluators import make_evaluator

    config = {"kind": "benchmark", "benchmark": "darts", "dataset": "cifar10", "objective": "test600"}
    evaluator = make_evaluator(darts, config, device="cpu")
    with pytest.raises(NastkError, match="not among the 214 trained genotypes"):
        evaluator.evaluate(darts.from_str(SMALL))
    with pytest.raises(ConfigError, match="no validation split"):
        make_evaluator(darts, {**config, "objective": "valid12"}, device="cpu")
    with pytest.raises(ConfigError, match="cifar10 only"):
        make_evaluator(darts, {**config, "dataset": "cifar100"}, device="cpu")
    with pytest.raises(ConfigError, match="cannot evaluate architectures of space 'nb201'"):
        make_evaluator(get_space("nb201"), config, device="cpu")
    with pytest.raises(MissingDataError, match="not found"):
        bench.load_table(str(tmp_path / "nope.csv.gz"))
    (tmp_path / "darts").mkdir()
    broken = tmp_path / "darts" / "darts_random214_cifar10_nasbenchmark.csv.gz"
    broken.write_bytes(b"not gzip")
    with pytest.raises(CorruptDataError, match="not a readable CSV"):
        bench.load_table(str(broken))
    monkeypatch.setenv("NASTK_DATA", str(tmp_path))
    with pytest.raises(CorruptDataError, match="sha256"):
        bench.default_table()
    with gzip.open(tmp_path / "part.csv.gz", "wt", newline="") as handle:  # another file: structure checked only
        writer = csv.DictWriter(handle, fieldnames=list(darts_rows[0]))
        writer.writeheader()
        writer.writerows(darts_rows[:10])
    assert len(bench.load_table(str(tmp_path / "part.csv.gz"))) == 10
    rows = darts_rows[:10] + [{**darts_rows[10], "genotype": darts_rows[10]["genotype"].replace("'skip_connect'", "'zap'", 1)}]
    with gzip.open(tmp_path / "bad.csv.gz", "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(darts_rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CorruptDataError, match="row 10: unknown DARTS op 'zap'"):
        bench.load_table(str(tmp_path / "bad.csv.gz"))
