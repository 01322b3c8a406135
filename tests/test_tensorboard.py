"""jaxnets.tensorboard: a run folder's metrics, config and plots as TensorBoard event files,
read back record by record (TFRecord framing, CRCs checked) with tensorboardX's protobufs; the
export at the end of every experiment run; experiments.export_tb."""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxnets import runs, tensorboard

tbx = pytest.importorskip("tensorboardX")

from tensorboardX.crc32c import crc32c  # noqa: E402
from tensorboardX.proto import event_pb2  # noqa: E402


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(folder: Path) -> list:
    """Every Event in the folder's event files: records of an 8-byte length, its masked CRC,
    the data and the data's masked CRC."""
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    events = []
    for f in files:
        raw, i = f.read_bytes(), 0
        while i < len(raw):
            header = raw[i:i + 8]
            (n,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", raw[i + 8:i + 12])
            assert header_crc == _masked_crc(header)
            data = raw[i + 12:i + 12 + n]
            (data_crc,) = struct.unpack("<I", raw[i + 12 + n:i + 16 + n])
            assert data_crc == _masked_crc(data)
            event = event_pb2.Event()
            event.ParseFromString(data)
            events.append(event)
            i += 16 + n
    return events


def summaries(folder: Path) -> dict[str, list]:
    """tag -> [(step, Summary.Value), ...] in the order written."""
    out: dict[str, list] = {}
    for event in read_events(folder):
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value))
    return out


def scalar_points(values: list) -> list[tuple[int, float]]:
    return [(step, v.simple_value) for step, v in values]


ROWS = [
    {"step": 10, "train/loss": 2.5, "test/accuracy": 0.25, "eval": {"mse": 1.5, "n": 3},
     "curve": [1.0, 2.0], "optimizer": "adam", "diverged": False, "sharpness": None},
    {"step": 20, "train/loss": 1.25, "test/accuracy": 0.5, "eval": {"mse": 0.75, "n": 3},
     "curve": [3.0], "optimizer": "adam", "diverged": False, "sharpness": 4.0},
    {"step": 30, "train/loss": 0.625, "test/accuracy": 0.75, "eval": {"mse": 0.5, "n": 3},
     "curve": [], "optimizer": "adam", "diverged": True, "sharpness": 2.0},
]
CONFIG = {"learning_rate": 0.003, "steps": 30, "run": {"experiment": "hand.made"}}


def make_run(folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    runs.write_jsonl(folder / "metrics.jsonl", ROWS)
    runs.write_json(folder / "config.json", CONFIG)
    image = np.linspace(0, 1, 5 * 7 * 3).reshape(5, 7, 3)
    plt.imsave(folder / "curves.png", image)  # 5 x 7 pixels
    return folder


def test_export_writes_every_number_the_config_and_the_plots(tmp_path):
    run = make_run(tmp_path / "run")
    out = tensorboard.export(run)
    assert out == run / "tensorboard" and out.is_dir()
    got = summaries(out)
    assert set(got) == {"train/loss", "test/accuracy", "eval/mse", "eval/n", "sharpness",
                        "config", "curves"}  # lists, strings, booleans and null skipped
    for tag in ("train/loss", "test/accuracy"):
        assert scalar_points(got[tag]) == [(r["step"], np.float32(r[tag])) for r in ROWS]
    assert scalar_points(got["eval/mse"]) == [(10, 1.5), (20, 0.75), (30, 0.5)]
    assert scalar_points(got["sharpness"]) == [(20, 4.0), (30, 2.0)]

    [(_, text)] = got["config"]
    assert text.metadata.plugin_data.plugin_name == "text"
    markdown = text.tensor.string_val[0].decode()
    assert markdown.startswith("```json\n") and markdown.endswith("\n```")
    assert json.loads(markdown[len("```json\n"):-len("\n```")]) == CONFIG

    [(_, image)] = got["curves"]
    assert (image.image.height, image.image.width) == (5, 7)
    assert image.image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing left beside it
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "curves.png",
                                                      "metrics.jsonl", "tensorboard"]


def test_other_metrics_files_rows_without_a_step_and_non_finite_values(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": NaN, "acc": 0.5}\n'
                                       '\n{"step": 2, "loss": Infinity, "acc": 1.0}\n')
    (run / "metrics_eval.jsonl").write_text('{"variant": "gan", "modes": 8}\n'
                                            '{"variant": "gan", "modes": 6}\n')
    got = summaries(tensorboard.export(run))
    assert set(got) == {"acc", "metrics_eval/modes"}  # no config.json, no png: neither written
    assert scalar_points(got["acc"]) == [(1, 0.5), (2, 1.0)]
    assert scalar_points(got["metrics_eval/modes"]) == [(0, 8.0), (1, 6.0)]  # the row's index


def test_export_replaces_an_earlier_one(tmp_path):
    run = make_run(tmp_path / "run")
    tensorboard.export(run)
    (run / "tensorboard" / "stale.txt").write_text("from before")
    runs.write_jsonl(run / "metrics.jsonl", ROWS[:1])
    tensorboard.export(run)
    assert not (run / "tensorboard" / "stale.txt").exists()
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert scalar_points(summaries(run / "tensorboard")["train/loss"]) == [(10, 2.5)]
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "curves.png",
                                                      "metrics.jsonl", "tensorboard"]


def test_errors_leave_the_earlier_export_and_no_temporary_folder(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        tensorboard.export(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a run folder"):
        tensorboard.export(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{empty / 'metrics.jsonl'}: missing"):
        tensorboard.export(empty)
    assert list(empty.iterdir()) == []

    run = make_run(tmp_path / "run")
    tensorboard.export(run)
    before = {p.name: p.read_bytes() for p in (run / "tensorboard").iterdir()}
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": \n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not valid JSON"):
        tensorboard.export(run)
    (run / "metrics.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 1 is not a JSON object"):
        tensorboard.export(run)
    runs.write_jsonl(run / "metrics.jsonl", ROWS)
    (run / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        tensorboard.export(run)
    assert {p.name: p.read_bytes() for p in (run / "tensorboard").iterdir()} == before
    assert sorted(p.name for p in run.iterdir()) == ["broken.png", "config.json", "curves.png",
                                                      "metrics.jsonl", "tensorboard"]


def test_without_tensorboardx(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    assert not tensorboard.available()
    with pytest.raises(ImportError, match=r'needs tensorboardX: pip install "jaxnets\[tb\]"'):
        tensorboard.export(run)
    assert not (run / "tensorboard").exists()


def test_every_experiment_run_ends_with_an_export(tmp_path, capsys):
    from experiments import sin_mlp

    run = tmp_path / "run"
    sin_mlp.main(["--run-dir", str(run), "--steps", "20", "--eval-every", "10", "--hidden", "8",
                  "--checkpoint-every", "0"])
    rows = runs.read_jsonl(run / "metrics.jsonl")
    got = summaries(run / "tensorboard")
    for tag in ("train/loss", "test/accuracy", "minibatch/loss"):
        assert scalar_points(got[tag]) == [(r["step"], np.float32(r[tag])) for r in rows]
    assert [s for s, _ in got["train/loss"]] == [10, 20]
    assert "curves" in got
    markdown = got["config"][0][1].tensor.string_val[0].decode()
    config = json.loads(markdown[len("```json\n"):-len("\n```")])
    assert config["steps"] == 20 and "finished" in config["run"]["sessions"][-1]


def test_export_tb_cli(tmp_path, capsys):
    from experiments import export_tb

    run = make_run(tmp_path / "run")
    export_tb.main([str(run)])
    assert capsys.readouterr().out == f"wrote {run / 'tensorboard'}\n"
    assert "train/loss" in summaries(run / "tensorboard")

    other = make_run(tmp_path / "other")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        export_tb.main([str(empty), str(tmp_path / "missing"), str(other)])
    assert e.value.code == 1
    out, err = capsys.readouterr()
    assert out == f"wrote {other / 'tensorboard'}\n"  # the others still exported
    assert err.splitlines() == [
        f"error: {empty / 'metrics.jsonl'}: missing; {empty} holds no metrics*.jsonl to export",
        f"error: {tmp_path / 'missing'}: not a run folder (no such directory)"]
    assert not (tmp_path / "missing").exists()

    with pytest.raises(SystemExit, match="give at least one RUN_DIR"):
        export_tb.main([])
