"""W&B as a user sees it: a digits sweep logged offline, read back from the run files."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import threading
import time

import numpy as np
import pytest
from omegaconf import OmegaConf

from ptr_lightning.core import names
from ptr_lightning.run.train import train
from ptr_lightning.tracking.wandb_logger import finish_wandb, make_wandb_logger
from tests.conftest import compose_config
from tests.fixtures.cli import job_folders
from tests.fixtures.sweeps import offline_wandb_env
from tests.fixtures.wandb_files import offline_runs

EXPECTED_FILES = {"metrics.json", "split.json", "predictions.npz", "predictions_val.npz"}


def only_run(folder):
    (run,) = offline_runs(folder)
    return run


@pytest.fixture
def online_wandb(tmp_path, monkeypatch):
    """``point_at(url)``: W&B online with an API key, at the server ``url``. W&B keeps its
    settings (the server's address) per process, so each test starts it afresh."""
    import wandb

    wandb.teardown()
    for key, value in offline_wandb_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    yield lambda url: monkeypatch.setenv("WANDB_BASE_URL", url)
    wandb.teardown()


def test_each_job_is_named_by_its_overrides_and_grouped_by_its_sweep(digits_sweep):
    jobs = job_folders(digits_sweep.ptr)
    assert len(jobs) == 4
    run_names = set()
    for job in jobs:
        run = only_run(job)
        R, m = (OmegaConf.load(job / "config.yaml").regularizer[k] for k in ("R", "m"))
        assert run.name == f"R={R},m={m}"
        assert run.group == "ptr"  # the sweep folder, relative to where the sweep was started
        assert run.job_type == "ptr-sml1"
        assert run.tags == ["digits", "resnet18", "ptr", f"R={R}", f"m={m}", "seed=0"]
        assert (job / "wandb_run_id.txt").read_text().strip() == run.id
        run_names.add(run.name)
    assert run_names == {"R=1,m=0.5", "R=1,m=1", "R=3,m=0.5", "R=3,m=1"}
    ft = only_run(digits_sweep.ft)
    assert (ft.group, ft.job_type) == ("ft", "ft")  # a single run is its own group
    # A single run's name: all its overrides, each key once (the last value), shortened.
    assert ft.name == (
        "classes=[0,1,2],image_size=16,train_per_class=8,val_fraction=0.1,batch_size=8,"
        "max_epochs=2,lr=0.01,regularizer=none"
    )
    assert ft.tags == ["digits", "resnet18", "none", "seed=0"]


def test_a_run_holds_its_config_summaries_tables_images_and_files(digits_sweep):
    job = job_folders(digits_sweep.ptr)[0]
    run = only_run(job)
    # Hyper-parameters: the resolved config and the parameter counts (ResNet-18, 3 classes).
    assert run.config["regularizer"]["R"] == 1 and run.config["dataset"]["image_size"] == 16
    assert run.config["params"]["head"] == 512 * 3 + 3
    assert run.config["params"]["total"] == run.config["params"]["backbone"] + 512 * 3 + 3
    # val/acc shows its maximum, test/* their last value.
    val_accs = [row["val/acc"] for row in run.history if "val/acc" in row]
    assert run.summary["val/acc"] == {"max": max(val_accs)}
    assert run.metrics["val/acc"]["summary"] == {"max": True}
    assert run.metrics["test/*"]["summary"] == {"last": True}
    metrics = json.loads((job / "metrics.json").read_text())
    # W&B records the summary as the value or, once define_metric's summary lands, {"last": v}.
    summary = run.summary["test/acc"]
    last = summary["last"] if isinstance(summary, dict) else summary
    assert last == pytest.approx(metrics["test/acc"])

    # The per-class table agrees with the predictions the run wrote.
    predictions = np.load(job / "predictions.npz")
    labels, predicted = predictions["labels"], predictions["probabilities"].argmax(axis=1)
    table = run.table("test/per_class")
    assert table["columns"] == ["class", "test images", "accuracy"]
    assert [row[0] for row in table["data"]] == ["0", "1", "2"]
    for k, (_, n, accuracy) in enumerate(table["data"]):
        assert n == int((labels == k).sum())
        assert accuracy == pytest.approx(float((predicted[labels == k] == k).mean()))
    confusion = run.table("test/confusion_matrix_table")
    assert sum(row[2] for row in confusion["data"]) == len(labels)
    examples = run.logged("test/examples")
    assert examples["count"] == 12 and all(c.startswith("true ") for c in examples["captions"])
    assert all(c.count(",") == 2 for c in examples["captions"])  # top-3 predictions

    # metrics.json, split.json, predictions*.npz as one artifact, the files themselves.
    (artifact,) = [a for a in run.artifacts if a["type"] == "run-files"]
    contents = {c["path"]: c for c in artifact["manifest"]["contents"]}
    assert set(contents) == EXPECTED_FILES
    md5 = base64.b64encode(hashlib.md5((job / "metrics.json").read_bytes()).digest()).decode()
    assert contents["metrics.json"]["digest"] == md5


def test_telemetry_reaches_wandb_at_the_steps_it_measured(digits_sweep):
    run = only_run(job_folders(digits_sweep.ptr)[0])

    def steps(key):
        return sorted(row["trainer/global_step"] for row in run.history if key in row)

    # Steps 0 and 3 are measured; the pseudo-task is on from step 3 (the second epoch).
    for key in (names.FEAT_MEAN, names.GRAD_COHERENCE_CE, names.GRAD_PARAM_CE):
        assert steps(key) == [0, 3], key
    for key in (names.GRAD_COHERENCE_PTR, names.GRAD_PARAM_COS, names.PTR_LINEAR_FRAC):
        assert steps(key) == [3], key
    assert len(steps(names.VAL_ENTROPY)) == 2  # once per validation
    assert steps(names.TRAIN_CE_AROUND_SWITCH) == [0, 1, 2, 3, 4, 5]  # every step


def test_resume_continues_the_same_wandb_run(make_cfg, tmp_path, monkeypatch):
    for key, value in offline_wandb_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=1", "seed=3")
    train(cfg)
    run_folder = tmp_path / "run"
    overrides = ["trainer.max_epochs=2"]
    train(compose_config([f"resume={run_folder}", *overrides]), overrides)
    first, resumed = offline_runs(run_folder)
    assert resumed.id == first.id == (run_folder / "wandb_run_id.txt").read_text().strip()
    assert (resumed.name, resumed.group, resumed.tags) == (first.name, first.group, first.tags)
    assert resumed.name.endswith(",max_epochs=1,seed=3")  # as started (logger: not in names)
    assert [row["epoch"] for row in resumed.history if "val/acc" in row] == [1]


def test_unreachable_wandb_falls_back_to_offline_quickly(tmp_path, caplog, online_wandb):
    """An API key but no network: W&B would wait ~90 s; the run logs offline instead."""
    online_wandb("http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    logger = make_wandb_logger(str(tmp_path), "ptr-lightning", mode="auto", name="probe")
    try:
        assert time.monotonic() - started < 30
        assert logger is not None
        logger.log_metrics({"val/acc": 0.5}, step=0)
    finally:
        finish_wandb()
    assert "logging offline" in caplog.text and "wandb sync" in caplog.text
    run = only_run(tmp_path)
    assert run.name == "probe" and run.summary["val/acc"] == {"max": 0.5}


@pytest.mark.slow  # waits out the init timeout, then starts offline: about 20 s
def test_a_wandb_server_that_never_answers_falls_back_to_offline(tmp_path, caplog, online_wandb):
    """The server accepts connections but never answers: the short init timeout, then offline."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept_and_stay_silent():
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                held.append(server.accept())

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    online_wandb(f"http://127.0.0.1:{server.getsockname()[1]}")
    started = time.monotonic()
    logger = make_wandb_logger(str(tmp_path), "ptr-lightning", init_timeout=5, name="probe")
    try:
        assert time.monotonic() - started < 60  # W&B alone waits 90 s, then keeps nothing
        assert logger is not None and logger.experiment.settings.mode == "offline"
    finally:
        finish_wandb()
        server.close()
    assert "did not answer within 5 s" in caplog.text
    assert only_run(tmp_path).name == "probe"


def test_a_group_is_never_an_absolute_path(tmp_path, monkeypatch):
    from ptr_lightning.tracking.run_identity import run_group

    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create(
        {"run": {"job_num": 3, "sweep_dir": "/home/someone/experiments/sweep-7"}, "paths": {}}
    )
    assert run_group(cfg) == "sweep-7"  # outside where it ran: its name
    cfg.run.sweep_dir = str(tmp_path / "multirun" / "2026-12-02" / "10-00-00")
    assert run_group(cfg) == "multirun/2026-12-02/10-00-00"


def test_a_server_that_refuses_the_key_is_named_with_its_answer(tmp_path, caplog, online_wandb):
    """A bad API key: the server answers 401 at once; the run logs offline and says why."""
    import http.server

    class Refuse(http.server.BaseHTTPRequestHandler):
        def answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"errors": [{"message": "user is not logged in"}]}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    online_wandb(f"http://127.0.0.1:{server.server_address[1]}")
    (tmp_path / names.WANDB_RUN_ID_FILE).write_text("resumedrun1\n")  # a resumed run's id
    try:
        logger = make_wandb_logger(str(tmp_path), "ptr-lightning", name="probe")
        assert logger is not None and logger.experiment.settings.mode == "offline"
        assert logger.experiment.id == "resumedrun1"
    finally:
        finish_wandb()
        server.shutdown()
    assert "W&B refused the online run (" in caplog.text and "401" in caplog.text
    assert "did not answer" not in caplog.text
