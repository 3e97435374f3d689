"""A run's segments: the run dir, then one resume_<k>/ folder per resume."""

from __future__ import annotations

from pathlib import Path

from mnist_cnn.training.run_dir import finished_segment, latest_segment, segment_dir, segments


def test_segments_are_the_run_dir_then_its_numbered_resumes_and_nothing_else(tmp_path: Path) -> None:
    for name in ("resume_10", "resume_2", "resume_old", "resume_", "evaluation"):
        (tmp_path / name).mkdir()
    assert segments(tmp_path) == [tmp_path, tmp_path / "resume_2", tmp_path / "resume_10"]
    assert latest_segment(tmp_path) == tmp_path / "resume_10"
    assert segment_dir(tmp_path, resumed=True) == tmp_path / "resume_11" and (tmp_path / "resume_11").is_dir()
    assert segment_dir(tmp_path, resumed=False) == tmp_path


def test_the_finished_segment_is_the_latest_that_wrote_its_result(tmp_path: Path) -> None:
    assert finished_segment(tmp_path) is None
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "resume_1").mkdir()  # an interrupted resume
    assert finished_segment(tmp_path) == tmp_path
    (tmp_path / "resume_1" / "result.json").write_text("{}")
    assert finished_segment(tmp_path) == tmp_path / "resume_1"
