"""``nastk query --space darts`` (the 214-genotype table), ``--index`` for both spaces, NB201's output unchanged."""
import json

import pytest

from cli_run import run_cli  # tests/ is on sys.path under pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROW = 17  # any row; its numbers are read from the CSV independently of nastk's table code
DARTS_V2 = ("normal:sep3@0,sep3@1|sep3@0,sep3@1|skip@0,sep3@1|skip@0,dil3@2;"
            "reduce:max3@0,max3@1|max3@1,skip@2|max3@0,skip@2|max3@1,skip@2")
NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
#: ``nastk query --dataset cifar10 --arch NB201_BEST`` as it printed before --space darts and --index existed
NB201_BEST_TEXT = (
    f"{NB201_BEST}  (NB201 index 6111, cifar10, 200 epochs, compact:nb201_groundtruth.csv.gz)\n"
    "  cifar10/params_m                             1.0735\n"
    "  cifar10/test/200/naswot                     94.3733\n"
    "  cifar10/test/200/nats                       94.3733\n"
    "  cifar10/test/200/nb201api                   94.3733\n"
    "  params 1.0735 M, FLOPs 153.27 M\n")


def test_known_genotype_json_equals_the_table(capsys, darts_rows):
    row = darts_rows[ROW]
    code, out, err = run_cli(capsys, "query", "--space", "darts", "--arch", row["genotype"], "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["index"] == ROW == int(row["idx"]) and data["dataset"] == "cifar10" and data["epochs"] == 600
    assert data["metrics"] == {"cifar10/test/300/last": float(row["test_acc_ep300"]),
                               "cifar10/test/450/last": float(row["test_acc_ep450"]),
                               "cifar10/test/600/last": float(row["test_acc_ep600"]),
                               "cifar10/test/600/max": float(row["test_acc_max"]),
                               "argmax_epoch": float(row["argmax_epoch"])}
    assert data["test_accuracy"] == float(row["test_acc_ep600"]) and data["test_protocol"] == "cifar10/test/600/last"
    assert data["genotype"].startswith("Genotype(normal=[") and data["arch"].startswith("normal:")
    assert 1.0 < data["cost"]["params_m"] < 5.0 and data["cost"]["flops_m"] > 100  # DARTS' C=36, 20-cell network
    # DARTS' notation in the source's grouped form names the same row
    code, again, _ = run_cli(capsys, "query", "--space", "darts", "--arch", row["source_genotype"], "--format", "json",
                             "--epochs", "300")
    assert code == 0 and json.loads(again)["index"] == ROW and json.loads(again)["arch"] == data["arch"]
    assert json.loads(again)["test_accuracy"] == float(row["test_acc_ep300"])


def test_text_output_and_index(capsys, darts_rows):
    code, out, _ = run_cli(capsys, "query", "--space", "darts", "--index", str(ROW))
    assert code == 0
    lines = out.splitlines()
    assert f"DARTS benchmark row {ROW}" in lines[0] and lines[1].strip().startswith("Genotype(")
    assert f"{float(darts_rows[ROW]['test_acc_ep600']):.4f}" in out and "params" in lines[-1]
    code, by_index, _ = run_cli(capsys, "query", "--space", "darts", "--index", "0", "--format", "json")
    code2, by_arch, _ = run_cli(capsys, "query", "--space", "darts", "--arch", darts_rows[0]["genotype"], "--format", "json")
    assert code == code2 == 0 and json.loads(by_index) == json.loads(by_arch)


@pytest.mark.parametrize("argv, fragment", [
    (["--arch", DARTS_V2], "not among the 214 trained genotypes"),
    (["--index", "214"], "out of range 0..213"),
    (["--index", "-1"], "must be a whole number >= 0"),
    (["--index", "0", "--dataset", "cifar100"], "CIFAR-10 test accuracies only"),
    (["--index", "0", "--epochs", "200"], "has no 'cifar10/test/200'"),
    (["--arch", "normal:sep3@0"], "normal:...;reduce:..."),
    (["--arch", DARTS_V2.replace("dil3@2", "none@2")], "supernet op"),
    (["--arch", DARTS_V2, "--index", "3"], "not allowed with argument --arch"),
    ([], "required: --arch"),
])
def test_darts_errors_are_one_line_with_status_2(capsys, darts_rows, argv, fragment):
    code, out, err = run_cli(capsys, "query", "--space", "darts", *argv)
    assert code == 2 and not out
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_nb201_output_unchanged_and_index(capsys, nastk_data):
    code, out, _ = run_cli(capsys, "query", "--dataset", "cifar10", "--arch", NB201_BEST)
    assert code == 0 and out == NB201_BEST_TEXT
    code, out, _ = run_cli(capsys, "query", "--space", "nb201", "--dataset", "cifar10", "--index", "6111")
    assert code == 0 and out == NB201_BEST_TEXT
    code, _, err = run_cli(capsys, "query", "--arch", NB201_BEST)  # --dataset stays required for nb201
    assert code == 2 and "the following arguments are required: --dataset" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "query", "--dataset", "cifar10", "--index", "15625")
    assert code == 2 and "out of range 0..15624" in err


def test_a_benchmark_search_maximises_the_benchmarks_own_objective_by_default(nastk_data, tmp_path, capsys):
    """The generic look-up evaluator names no benchmark's protocol: without --objective a DARTS-table search
    maximises the table's test600 (NB201's default, valid12, does not exist there) and records it."""
    code, out, err = run_cli(capsys, "search", "--space", "darts", "--strategy", "random", "--benchmark", "darts",
                             "--dataset", "cifar10", "--budget", "3", "--run-dir", str(tmp_path / "run"), "--format", "json")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["evaluator"]["objective"] == "test600"
