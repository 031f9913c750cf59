"""``nastk dashboard``: every run under a folder as a study of optuna-dashboard, served on 127.0.0.1
and stopped within a bounded time; in headless Chromium the page shows a sequential search, a parallel
search and a supernet run."""
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from nastk.cli import main

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is the optional extra 'dashboard'")
from nastk.dashboard import start_server, stop_server  # noqa: E402

SEARCH = ["search", "--space", "nb201", "--benchmark", "nb201", "--dataset", "cifar10", "--no-progress", "--format",
          "json", "--seed", "0"]
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.load(response)


def test_a_sequential_run_is_served_as_a_study_with_every_trial(nastk_data, capsys, tmp_path):
    assert main(SEARCH + ["--strategy", "re", "--budget", "6", "--run-dir", str(tmp_path / "runs" / "re0")]) == 0
    capsys.readouterr()
    journal = [json.loads(line) for line in (tmp_path / "runs" / "re0" / "journal.jsonl").read_text().splitlines()]
    server, names, problems = start_server(tmp_path / "runs", "127.0.0.1", 0)
    try:
        studies = get(server.server_port, "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == names == ["search: re0"] and problems == []
        study = get(server.server_port, f"/api/studies/{studies[0]['study_id']}")
        assert [t["values"] for t in study["trials"]] == [[r["result"]["metrics"]["accuracy"]] for r in journal]
    finally:
        stop_server(server, timeout_s=10)
    assert not server.nastk_thread.is_alive()


def test_a_folder_without_runs_is_one_line(capsys, tmp_path):
    assert main(["dashboard", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no run under" in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_shows_a_sequential_a_parallel_and_a_supernet_run(nastk_data, capsys, tmp_path):
    from test_run_kinds import train_tiny

    root = tmp_path / "runs"
    assert main(SEARCH + ["--strategy", "re", "--budget", "8", "--run-dir", str(root / "re-seed0")]) == 0
    assert main(SEARCH + ["--strategy", "bo-tpe", "--budget", "8", "--workers", "2",
                          "--run-dir", str(root / "tpe-2workers")]) == 0
    train_tiny(root / "darts-supernet", step="darts")
    capsys.readouterr()
    server, names, _ = start_server(root, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_port}/dashboard"
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,720",
               "--virtual-time-budget=15000", f"--user-data-dir={tmp_path / 'profile'}"]
    try:
        dom = subprocess.run(browser + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "dashboard.png"
        subprocess.run(browser + [f"--screenshot={shot}", url], capture_output=True, timeout=120)
    finally:
        stop_server(server, timeout_s=10)
    assert names == ["supernet: darts-supernet", "search: re-seed0", "parallel search: tpe-2workers"]
    for name in names:  # rendered by the page's JavaScript from the served studies
        assert name in dom, name
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    if os.environ.get("NASTK_UPDATE_SCREENSHOT"):  # docs/dashboard.png is this test's screenshot
        shutil.copyfile(shot, Path(__file__).resolve().parents[1] / "docs" / "dashboard.png")
