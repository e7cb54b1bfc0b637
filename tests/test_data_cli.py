"""`ganforge data import` / `ganforge data inspect` as a user runs them."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.cli import main


def _pngs(folder, classes=("a", "b"), per_class=4, size=(10, 12)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / cls / f"{i}.png")


def test_import_a_folder_then_inspect_it(tmp_path, capsys):
    _pngs(tmp_path / "src")
    assert main(["data", "import", str(tmp_path / "src"), str(tmp_path / "ds"), "--shard-rows", "3"]) == 0
    captured = capsys.readouterr()
    assert "8/8 rows" in captured.err  # the progress bar's final line
    assert "8 rows in 3 shard(s)" in captured.out
    assert main(["data", "inspect", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    for expected in ("rows      8 in 3 shard(s)", "image, 10x12x3 uint8 (tensor)", "2 classes: a, b", "image-folder", "shard-00002.parquet",
                     "decoded   0.01 MiB: trials hold it in memory when data.resident_mb >= 0.01 (default 512)"):
        assert expected in out


def test_inspect_writes_a_sample_grid(tmp_path, capsys, monkeypatch):
    pytest.importorskip("trainers.metrics.grid")
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    grid = tmp_path / "grid.png"
    assert main(["data", "inspect", "builtin:ring8", "--grid", str(grid), "-n", "500"]) == 0
    from PIL import Image

    assert Image.open(grid).size[0] > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "import", "builtin:digitz", "DEST"], "did you mean 'digits'"),
        (["data", "import", "NOPE", "DEST"], "NOPE: no such file or folder"),
        (["data", "import", "builtin:digits", "DEST", "--shard-rows", "0"], "--shard-rows must be >= 1"),
        (["data", "inspect", "NOPE"], "NOPE: no data set here"),
        (["data", "import", "builtin:digits", "builtin:mine"], "built-in data sets are read-only"),
        (["data", "import", ".", "DEST", "--format", "npzz"], "unknown import format 'npzz'; did you mean 'npz'?"),
        (["data", "import", "builtin:ring8", "DEST", "--format", "npz"], "--format applies to files and folders"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganforge: error:") and "\n" not in err and "Traceback" not in err
    assert message in err


def test_import_refuses_to_replace_without_overwrite(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.zeros((10, 2), dtype=np.float32))
    assert main(["data", "import", str(tmp_path / "p.npy"), str(tmp_path / "ds")]) == 0
    assert main(["data", "import", str(tmp_path / "p.npy"), str(tmp_path / "ds")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "import", str(tmp_path / "p.npy"), str(tmp_path / "ds"), "--overwrite"]) == 0


def test_data_without_an_action_shows_usage(capsys):
    assert main(["data"]) == 2
    assert "import" in capsys.readouterr().err
