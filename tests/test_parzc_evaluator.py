"""A fitted ParZC predictor on disk (``proxies fit parzc --save``), the ``parzc`` evaluator that scores new
architectures with it, ``proxies predict``, and the fit's progress lines.

Every test points NASTK_CACHE at a temporary folder, so the committed layer-wise statistics are copied
there (as on a fresh checkout) and nothing is written into the repository.
"""
import hashlib
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.evaluators.predictor import ParZCEvaluator
from nastk.predictors import layerwise_features as lw
from nastk.predictors.experiment import correlations, nb201_data, split
from nastk.predictors.saved import load_predictor
from nastk.proxies import per_layer, register_proxy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

POOL, TRAIN, SEED = 30, 20, 0
FIT = ["proxies", "fit", "parzc", "--pool-size", str(POOL), "--train-size", str(TRAIN), "--seed", str(SEED),
       "--epochs", "2", "--mc-samples", "4", "--model-size", "small"]
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def fitted(nastk_data, tmp_path_factory):
    """A Bayesian ParZC fitted on the first 30 committed architectures and saved; (path, cache folder, report)."""
    cache = tmp_path_factory.mktemp("cache")
    path = tmp_path_factory.mktemp("model") / "parzc.pt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NASTK_CACHE", str(cache))
        output = io.StringIO()  # capsys is per test
        with redirect_stdout(output):
            assert main(FIT + ["--save", str(path), "--no-progress", "--format", "json"]) == 0
        yield path, cache, json.loads(output.getvalue())


def held_out_rows():
    return split(POOL, TRAIN, SEED)[1]


def test_the_committed_cache_is_copied_and_the_file_holds_the_documented_content(fitted):
    path, cache, report = fitted
    committed = lw.committed_cache(lw.cache_path())
    assert (cache / committed.name).read_bytes() == committed.read_bytes()
    content = torch.load(path, weights_only=True)
    assert content["nastk"] == "parzc-predictor" and content["format"] == 1 and content["variant"] == "parzc"
    assert content["model"]["config"] == "small" and content["model"]["bayesian"] is True
    assert content["features"] == {"format": 1, "seed": 42, "batch_size": 64, "C": 16, "N": 5, "dataset": "cifar10",
                                   "slots": 98, "pool_seed": 0, "statistics": ["grad_norm", "snip", "synflow"],
                                   "layout": "compact", "width": 294}
    assert content["scaler"]["mean"].shape == (294,) and content["scaler"]["std"].dtype == torch.float64
    fit = content["fit"]
    split_record = (fit["dataset"], fit["train_size"], fit["seed"], fit["pool_size"], fit["held_out"])
    assert split_record == ("cifar10", TRAIN, SEED, POOL, POOL - TRAIN)
    assert fit["kendall"] == report["kendall"] and fit["protocols"] == report["protocols"]
    assert report["saved"] == str(path)


def test_the_evaluator_computes_inputs_as_the_pool_did(fitted, nb201, monkeypatch, tmp_path):
    path, cache, _ = fitted
    saved = load_predictor(path)
    data = nb201_data("cifar10", POOL)
    rows = held_out_rows()[:2]
    expected_mean, expected_std = saved.predict(data.x[rows], data.ops[rows], mc_samples=5)
    monkeypatch.setenv("NASTK_CACHE", str(tmp_path))  # no cached pool: the statistics must be computed
    results = [ParZCEvaluator(nb201, path, mc_samples=5).evaluate(data.archs[row]) for row in rows]
    assert [r.protocol["layerwise"] for r in results] == ["computed", "computed"]
    np.testing.assert_allclose([r.metrics["parzc"] for r in results], expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r.metrics["parzc_std"] for r in results], expected_std, rtol=1e-4, atol=1e-6)
    assert all(r.objective == "parzc" and r.cost_s > 0 for r in results)
    assert not list(tmp_path.iterdir())  # scoring writes no cache


def test_cached_rows_and_batches_give_the_same_scores(fitted, nb201):
    path, _, _ = fitted
    data = nb201_data("cifar10", POOL)
    rows = held_out_rows()
    evaluator = ParZCEvaluator(nb201, path, mc_samples=3, seed=7)
    batch = evaluator.evaluate_many([data.archs[row] for row in rows])
    single = evaluator.evaluate(data.archs[rows[3]])
    assert {r.protocol["layerwise"] for r in batch} == {"cached"}
    # a batch and a single row run different matrix kernels: the MC spread (~5e-3) differs in its 7th digit
    assert single.metrics == pytest.approx(batch[3].metrics, rel=1e-5, abs=1e-6)
    mean, _ = load_predictor(path).predict(data.x[rows], data.ops[rows], mc_samples=3, seed=7)
    np.testing.assert_allclose([r.metrics["parzc"] for r in batch], mean, rtol=1e-5, atol=1e-6)
    described = evaluator.describe()
    assert described["evaluator"] == "parzc" and described["path"] == str(path) and "Kendall" in described["objective"]


def test_a_deterministic_predictor_reranks_its_held_out_archs_as_the_fit_did(nastk_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NASTK_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "mlp.pt"
    assert main(FIT + ["--variant", "mlp", "--save", str(path), "--no-progress", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    data, rows = nb201_data("cifar10", POOL), held_out_rows()
    mean, std = load_predictor(path).predict(data.x[rows], data.ops[rows], mc_samples=2)
    assert correlations(mean, data.eval_target[rows]) == pytest.approx(
        {name: report[name] for name in ("kendall", "spearman", "pearson")})
    assert std.max() < 1e-6


def test_the_evaluator_is_for_nb201_only(fitted):
    from nastk.space import get_space

    with pytest.raises(ConfigError, match="nb201"):
        ParZCEvaluator(get_space("darts"), fitted[0])


def _damaged(kind, fitted_path, folder):
    path = folder / f"{kind}.pt"
    if kind == "truncated":
        path.write_bytes(fitted_path.read_bytes()[:5000])
    elif kind == "text":
        path.write_text("not a model\n")
    elif kind == "foreign":
        torch.save({"weight": torch.zeros(3)}, path)
    else:
        content = torch.load(fitted_path, weights_only=True)
        if kind == "future":
            content["format"] = 99
        else:  # altered weights under the old checksum
            name = next(iter(content["state_dict"]))
            content["state_dict"][name] = content["state_dict"][name] + 1
        torch.save(content, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "no saved predictor at"), ("truncated", "cannot read saved predictor"),
    ("text", "cannot read saved predictor"), ("foreign", "is not a nastk predictor"),
    ("future", "format version 99"), ("altered", "fails its content checksum")])
def test_a_bad_predictor_file_is_one_error_line(fitted, tmp_path, capsys, kind, message):
    path = tmp_path / "nowhere.pt" if kind == "missing" else _damaged(kind, fitted[0], tmp_path)
    assert main(["proxies", "predict", str(path), ARCH]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and captured.out == ""


@pytest.mark.parametrize("flags, message", [
    (["--pool-size", "30", "--train-size", "30"], "--train-size must be between 2 and 29"),
    (["--train-size", "2000"], "--train-size must be between 2 and 1999"),  # the whole committed cache
    (["--train-size", "20", "--pool-size", "40", "--loss", "hinge"], "unknown loss"),
    (["--train-size", "20", "--pool-size", "40", "--variant", "nope"], "unknown --variant"),
    (["--train-size", "20", "--pool-size", "40", "--dataset", "nope"], "unknown NB201 dataset")])
def test_a_refused_fit_writes_nothing(nastk_data, tmp_path, monkeypatch, capsys, flags, message):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NASTK_CACHE", str(cache))
    assert main(["proxies", "fit", "parzc", "--epochs", "1", "--save", str(tmp_path / "out" / "p.pt")] + flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not list(cache.glob("parzc_*"))
    if "--dataset" not in flags:  # (the NB201 table's own converted cache is written by any look-up of its labels)
        assert not list(cache.glob("*"))


def test_save_to_a_folder_is_refused_first(nastk_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NASTK_CACHE", str(tmp_path / "cache"))
    assert main(FIT + ["--save", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err and not list((tmp_path / "cache").glob("*"))


def test_progress_lines_on_a_non_terminal_and_none_with_no_progress(nastk_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NASTK_CACHE", str(tmp_path))
    committed = lw.load_pool(lw.committed_cache(lw.cache_path()))
    lw.save_pool(committed.subset(np.arange(POOL - 1)), lw.cache_path())  # two architectures short of --pool-size 31
    fit = FIT[:3] + ["--train-size", "20", "--epochs", "2", "--mc-samples", "2"]
    assert main(fit + ["--pool-size", str(POOL + 1)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("layer-wise", "training"))]
    assert [line.split("  ")[0] for line in err] == [
        "layer-wise statistics 1/2 architectures", "layer-wise statistics 2/2 architectures",
        "training parzc 1/2 epochs", "training parzc 2/2 epochs"]
    assert all("left" in err[i] for i in (0, 2)) and all("best " in line for line in err[2:])
    # Recomputed rows equal the committed ones up to the CPU's float kernels: an AMD EPYC recomputes the committed
    # pool's SNIP (made on another machine) to within 0.44% (thread count changes nothing); a wrong protocol is far off (seed 43: median 15%,
    # batch 32: median 46%).
    np.testing.assert_allclose(lw.load_pool(lw.cache_path()).values["snip"][:POOL + 1],
                               committed.values["snip"][:POOL + 1], rtol=1e-2)

    assert main(fit + ["--pool-size", str(POOL + 2), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "training" not in err and "layer-wise statistics" not in err
    assert f"{POOL + 2}/{POOL + 2} architectures" in err  # the per-chunk log line stays


def test_predict_command_prints_scores(fitted, capsys):
    assert main(["proxies", "predict", str(fitted[0]), ARCH, "--mc-samples", "2", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predictor"]["evaluator"] == "parzc" and out["predictions"][0]["arch"] == ARCH
    assert np.isfinite(out["predictions"][0]["parzc"])
    assert main(["proxies", "predict", str(fitted[0]), "|bogus~0|"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
def test_predict_prints_a_progress_line_per_architecture(fitted, capsys):
    other = "|skip_connect~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|skip_connect~1|none~2|"
    assert main(["proxies", "predict", str(fitted[0]), ARCH, other, "--mc-samples", "2"]) == 0
    lines = [line.split("  ")[0] for line in capsys.readouterr().err.splitlines() if line.startswith("parzc")]
    assert lines == ["parzc 1/2 architectures", "parzc 2/2 architectures"]
    assert main(["proxies", "predict", str(fitted[0]), ARCH, other, "--mc-samples", "2", "--no-progress"]) == 0
    assert "architectures" not in capsys.readouterr().err

@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
def test_a_search_scores_with_the_saved_predictor_and_resumes(fitted, tmp_path, capsys, monkeypatch, nb201):
    """``nastk search --evaluator parzc:PATH``: any strategy searches by the learned proxy; the winner is
    reported with NB201's ground truth, and the run resumes by replay."""
    path, cache, _ = fitted
    monkeypatch.setenv("NASTK_CACHE", str(cache))
    run = tmp_path / "run"
    search = ["search", "--strategy", "random", "--evaluator", f"parzc:{path}", "--mc-samples", "3", "--budget", "3",
              "--seed", "1", "--run-dir", str(run), "--no-progress", "--format", "json"]
    assert main(search) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluations"] == 3 and summary["evaluator"]["evaluator"] == "parzc"
    assert summary["test_accuracy"] is not None  # NB201's 200-epoch test accuracy of the predicted best
    assert json.loads((run / "config.json").read_text())["evaluator"] == {  # the file's digest: refused if replaced
        "kind": "parzc", "path": str(path), "mc_samples": 3, "report_dataset": "cifar10",
        "fingerprint": f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"}
    evaluator = ParZCEvaluator(nb201, path, seed=1, mc_samples=3)
    for line in (run / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        alone = evaluator.evaluate(nb201.from_str(record["arch"]))
        assert record["result"]["metrics"]["parzc"] == pytest.approx(alone.metrics["parzc"], rel=1e-6)
    assert main(["search", "--run-dir", str(run), "--resume", "--no-progress", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["replayed"] == 3


@register_proxy("weight_norm_sq", pass_name="static", layerwise=True, description="per layer ||W||^2 (a test's own)")
def weight_norm_sq(p):
    return per_layer(w.pow(2).sum() for w in p.weights)


@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
def test_a_predictor_fitted_on_a_users_statistic_scores_with_it(nastk_data, nb201, tmp_path, monkeypatch):
    """``--statistics`` takes any per-layer proxy (here one defined in this module): the pool is computed
    in a cache file of its own, the saved predictor records its statistics and the evaluator uses them."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NASTK_CACHE", str(cache))
    path = tmp_path / "mine.pt"
    statistics = ["snip", "test_parzc_evaluator:weight_norm_sq"]
    assert main(["proxies", "fit", "parzc", "--pool-size", "5", "--train-size", "3", "--epochs", "1",
                 "--mc-samples", "2", "--variant", "parzc-det", "--statistics", ", ".join(statistics),
                 "--save", str(path), "--no-progress", "--format", "json"]) == 0
    assert load_predictor(path, "cpu").features["statistics"] == statistics
    pools = [p.name for p in cache.iterdir() if p.name.startswith("parzc_layerwise")]
    assert pools == [lw.cache_path(statistics=statistics).name]  # its own pool; ParZC's default one untouched
    evaluator = ParZCEvaluator(nb201, path, device="cpu", mc_samples=2)
    pooled = nb201.from_code(int(evaluator.pool.codes[0]))
    results = evaluator.evaluate_many([pooled, nb201.from_str(ARCH)])
    assert [r.protocol["layerwise"] for r in results] == ["cached", "computed"]
    assert all(np.isfinite(r.metrics["parzc"]) for r in results)
    assert main(["proxies", "fit", "parzc", "--train-size", "3", "--statistics", "snip,synflow,params"]) == 2
