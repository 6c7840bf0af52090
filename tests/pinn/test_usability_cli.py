"""Issue 14 item 11: ``python -m pinn train`` options, outputs and refusals."""
import json

import numpy as np
import pytest

import pinn
from pinn.__main__ import main

FAST = ["--adam-steps", "12", "--lbfgs-steps", "3", "--no-progress", "--threads", "1"]


def test_train_cli_writes_model_history_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--pde", "burgers1d", "--width", "6,7", "--n-collocation", "40",
               "--n-boundary", "11", "--n-initial", "13", "--lr", "0.002",
               "--loss-weights", "ic=10", "--optimizer", "adamw", "--lbfgs-history", "5",
               "--activation", "sin", "--eval-every", "6", "--log-every", "6",
               "--out", str(out), "--device", "cpu"] + FAST)
    assert rc == 0
    text = capsys.readouterr().out
    assert "L2 error" in text and "step      6  adam" in text
    run = json.loads((out / "run.json").read_text())
    cfg = run["config"]
    assert (cfg["n_collocation"], cfg["n_boundary"], cfg["n_initial"]) == (40, 11, 13)
    assert cfg["width"] == [6, 7] and cfg["lr"] == 0.002 and cfg["optimizer"] == "adamw"
    assert cfg["loss_weights"] == {"ic": 10.0} and cfg["device"] == "cpu"
    hist = json.loads((out / "history.json").read_text())
    assert hist["loss"] == pytest.approx(hist["loss"]) and len(hist["ic"]) == len(hist["loss"])
    model, prob, info = pinn.load(out / "model.pt")
    assert prob.n_initial == 13 and model.sizes == [2, 6, 7, 1] and model.activation == "sin"
    assert info["step"] == run["steps"] == hist["steps"]
    # the stored model is the trained one: its error is the reported one
    assert prob.l2_error(model) == run["final_l2"] == run["metrics"]["reference"]["l2"]
    pytest.importorskip("matplotlib")
    for f in ("solution.png", "history.png"):
        assert (out / f).read_bytes()[:4] == b"\x89PNG"


def test_train_cli_restart_and_reference_data(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["train", "--pde", "poisson1d", "--width", "5", "--depth", "2", "--out",
                 str(out), "--no-plots"] + FAST) == 0
    x = np.linspace(0, 1, 11)[:, None]
    np.savez(tmp_path / "ref.npz", x=x, y=np.sin(2 * np.pi * x[:, 0]))
    out2 = tmp_path / "b"
    assert main(["train", "--pde", "poisson1d", "--restart", str(out / "model.pt"),
                 "--reference", str(tmp_path / "ref.npz"), "--out", str(out2),
                 "--no-plots"] + FAST) == 0
    first = json.loads((out / "run.json").read_text())
    second = json.loads((out2 / "run.json").read_text())
    assert second["steps"] == 2 * first["steps"]
    assert second["config"]["restart_step"] == first["steps"]
    m, _, _ = pinn.load(out2 / "model.pt")
    assert second["metrics"]["data"] == pinn.metrics.evaluate(m, data=tmp_path / "ref.npz")
    assert "data: l2" in capsys.readouterr().out


def test_train_cli_is_deterministic(tmp_path):
    runs = []
    for k in range(2):
        out = tmp_path / f"r{k}"
        assert main(["train", "--pde", "heat1d", "--width", "6", "--depth", "2", "--seed", "3",
                     "--n-collocation", "32", "--n-boundary", "8", "--out", str(out),
                     "--no-plots"] + FAST) == 0
        runs.append(json.loads((out / "history.json").read_text()))
    assert runs[0]["loss"] == runs[1]["loss"] and runs[0]["l2"] == runs[1]["l2"]


@pytest.mark.parametrize("args, msg", [
    (["--width", "0"], "--width must be an integer >= 1"),
    (["--width", "8,0"], "--width must be an integer >= 1"),
    (["--width", "4,4", "--depth", "3"], "--depth (3) must equal"),
    (["--depth", "0"], "--depth must be an integer >= 1"),
    (["--n-collocation", "0"], "--n-collocation must be an integer >= 1"),
    (["--n-boundary", "-4"], "--n-boundary must be an integer >= 1"),
    (["--n-boundary", "7"], "n_boundary must be even"),
    (["--n-initial", "5", "--pde", "poisson2d"], "--n-initial: poisson2d has no initial"),
    (["--adam-steps", "-1"], "--adam-steps must be an integer >= 0"),
    (["--lr", "-1"], "--lr must be a finite number > 0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--loss-weights", "pde=x"], "--loss-weights must be term=weight"),
    (["--loss-weights", "pde=1,bcc=2"], "unknown term(s) ['bcc']"),
    (["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["--device", "tpu"], "--device: device must be 'cpu' or 'cuda[:k]', got 'tpu'"),
    (["--pde", "wave"], "unknown PDE"),
    (["--widht", "3"], "unrecognized arguments: --widht"),
    (["--reference", "missing.npz"], "--reference: path: cannot read"),
    (["--threads", "-2"], "--threads must be an integer >= 1"),
])
def test_train_cli_bad_input_one_line_exit_2(args, msg, capsys, tmp_path):
    argv = ["train", "--pde", "burgers1d"] + FAST[:-2] + args
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_train_cli_out_under_a_file_fails_before_training(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", "--pde", "poisson1d", "--out", str(f / "run")] + FAST) == 2
    assert "cannot create the directory" in capsys.readouterr().err
    assert main(["train", "--pde", "poisson1d", "--out", str(f)] + FAST) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cuda"])
def test_train_cli_device_unavailable(device, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "--pde", "poisson1d", "--device", device] + FAST) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
