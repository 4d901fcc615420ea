import subprocess
import sys

import pytest

from conftest import make_imagefolder, one_line_error, write_image

COMMANDS = ["train-gan", "train-diffusion", "sample", "filter", "fid", "eval-classifier", "pipeline", "plan", "report",
            "weights", "data"]


def test_help_lists_every_command(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.output, command


def test_data_info_mnist5k(run_cli):
    result = run_cli("data", "info", "mnist5k")
    assert result.exit_code == 0, result.output
    assert "classes (10)" in result.output
    assert "total 5000 images" in result.output


def test_export_then_info_roundtrip(run_cli, tmp_path):
    out = tmp_path / "x"
    result = run_cli("data", "export", "mnist5k", str(out), "--set", "data.real_per_class=3")
    assert result.exit_code == 0, result.output
    assert "wrote 30 images" in result.output
    info = run_cli("data", "info", str(out))
    assert info.exit_code == 0, info.output
    assert "classes (10): 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in info.output
    assert "total 30 images" in info.output
    again = run_cli("data", "export", "mnist5k", str(out))
    one_line_error(again, "not empty")


def test_export_all_splits_roundtrips_as_presplit(run_cli, tmp_path):
    out = tmp_path / "x"
    assert run_cli("data", "export", "mnist5k", str(out), "--split", "all", "--set", "data.real_per_class=2").exit_code == 0
    info = run_cli("data", "info", str(out))
    assert "splits: train 20, val 400, test 1000" in info.output, info.output


@pytest.mark.parametrize("case", ["truncated", "empty_class", "one_class", "missing"])
def test_bad_imagefolder_one_line_error(run_cli, tmp_path, case):
    root = tmp_path / "d"
    if case == "truncated":
        make_imagefolder(root)
        bad = write_image(root / "cat" / "bad.jpg", size=(64, 64), mode="RGB", fmt="JPEG")
        bad.write_bytes(bad.read_bytes()[:300])
        needle = "bad.jpg"
    elif case == "empty_class":
        make_imagefolder(root)
        (root / "emu").mkdir()
        needle = "emu"
    elif case == "one_class":
        make_imagefolder(root, classes=("solo",))
        needle = "solo"
    else:
        needle = str(root)
    one_line_error(run_cli("data", "info", str(root)), needle)


def test_skip_bad_images_prints_count(run_cli, tmp_path):
    root = make_imagefolder(tmp_path / "d")
    bad = write_image(root / "cat" / "bad.jpg", size=(64, 64), mode="RGB", fmt="JPEG")
    bad.write_bytes(bad.read_bytes()[:300])
    result = run_cli("data", "info", str(root), "--set", "data.skip_bad_images=true")
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable file(s)" in result.output


def test_unknown_set_key_is_named(run_cli):
    one_line_error(run_cli("train-gan", "--set", "nosuch.key=1"), "nosuch.key")


def test_value_out_of_range_is_named(run_cli):
    one_line_error(run_cli("train-gan", "--set", "gan.batch_size=1"), "gan.batch_size")


def test_reuse_from_a_run_that_does_not_exist_is_named_before_anything_trains(run_cli, tmp_path):
    result = run_cli("train-gan", "--set", f"paths.runs_dir={tmp_path}", "--set", "paths.reuse_from=[typo]")
    one_line_error(result, "paths.reuse_from", "'typo'")
    assert not (tmp_path / "default" / "gan").exists()


def test_sample_and_filter_without_inputs_say_what_to_run(run_cli, tmp_path):
    sample = run_cli("sample", "--set", f"paths.runs_dir={tmp_path}", "--run", "nothing")
    assert sample.exit_code == 1
    one_line_error(sample, "genaug train-gan")
    refilter = run_cli("filter", "--set", f"paths.gen_dir={tmp_path}", "--run", "nothing")
    assert refilter.exit_code == 1
    one_line_error(refilter, "genaug sample")


def test_console_entry_point_has_no_traceback(tmp_path):
    """The real process, not CliRunner: one stderr line, exit code 1."""
    proc = subprocess.run([sys.executable, "-m", "genaug", "data", "info", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr
