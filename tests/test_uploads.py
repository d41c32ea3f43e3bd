"""Uploads as students make them: nested folders, loose files one level down, several
submissions in one folder, a notebook or a zip instead of the files, misnamed files."""
from __future__ import annotations

import pytest

from autograder.uploads import SubmissionError, locate_submission, misnamed_files, upload_notes
from conftest import REPO, make_submission, rubric_of_parts
from gradescope_schema import validate_results


def files(root, *names: str):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def test_loose_files_one_level_down_are_found(tmp_path):
    files(tmp_path, "hw1/p1_mle_kl.py", "hw1/p3_param_counts.py", "hw1/README.md", "__MACOSX/hw1/p1_mle_kl.py")
    assert locate_submission(tmp_path) == (tmp_path / "hw1", "files uploaded loose in hw1/")


def test_the_known_layouts_still_grade(tmp_path):
    files(tmp_path / "a", "submission/p1_mle_kl.py", "notes/old.py")
    assert locate_submission(tmp_path / "a") == (tmp_path / "a" / "submission", "submission/ package")
    files(tmp_path / "b", "ps1/src/submission/p1_mle_kl.py", "ps1/src/submission/helpers/util.py")
    assert locate_submission(tmp_path / "b")[1] == "ps1/src/submission/ package"
    files(tmp_path / "c", "p1_mle_kl.py")
    assert locate_submission(tmp_path / "c") == (tmp_path / "c", "files uploaded loose")


@pytest.mark.parametrize("layout", [
    ("alice/p1_mle_kl.py", "bob/p1_mle_kl.py"),
    ("v1/submission/p3_param_counts.py", "v2/submission/p3_param_counts.py"),
    ("p1_mle_kl.py", "old/submission/p1_mle_kl.py"),
])
def test_several_submissions_in_one_folder_are_refused_with_their_list(tmp_path, layout):
    files(tmp_path, *layout)
    with pytest.raises(SubmissionError) as error:
        locate_submission(tmp_path)
    message = str(error.value)
    assert "holds 2 submissions" in message and "batch" in message
    for path in layout:
        folder = path.rsplit("/", 1)[0] if "/" in path else None
        assert folder is None or folder.split("/")[0] in message


def test_the_project_folder_itself_is_not_taken_for_a_submission():
    with pytest.raises(SubmissionError, match="reference/submission/; student_template/submission/"):
        locate_submission(REPO)


@pytest.mark.parametrize("names, expected", [
    (("homework.ipynb", "notes.txt"), "only a notebook (homework.ipynb)"),
    (("hw1.zip",), "an archive (hw1.zip)"),
    (("notes.txt",), "no Python files found"),
])
def test_uploads_without_python_files_say_what_they_hold(tmp_path, names, expected):
    files(tmp_path, *names)
    with pytest.raises(SubmissionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        locate_submission(tmp_path)


def test_misnamed_files_get_a_did_you_mean(tmp_path):
    files(tmp_path, "P3_param_counts.py", "p1_mle_kl (1).py", "Copy of sample.py", "p2_gaussian_softmax.py",
          "helpers.py", "likelihod.py")
    assert misnamed_files(tmp_path) == {"p1_mle_kl.py": "p1_mle_kl (1).py", "p3_param_counts.py": "P3_param_counts.py",
                                        "sample.py": "Copy of sample.py", "likelihood.py": "likelihod.py"}
    notes = upload_notes(tmp_path)
    assert any("did you mean P3_param_counts.py?" in note for note in notes)


def test_a_misnamed_file_is_named_in_the_rows_that_needed_it(tmp_path, grade_submission):
    rubric = rubric_of_parts(tmp_path / "rubric.yaml", "p3a", "p1_kl_public")
    folder = make_submission(tmp_path / "sub", {"P3_param_counts.py": "def full_joint(k): return 1\n"},
                             drop=("p3_param_counts.py",), layout="loose")
    graded = grade_submission(folder, rubric=rubric)
    validate_results(graded.json)
    assert graded.score("p1_kl_public") == 0.5
    for test_id in ("p3a_public", "p3a_random"):
        assert graded.score(test_id) == 0
        assert "submission/p3_param_counts.py is not in your upload" in graded.output(test_id)
        assert "did you mean P3_param_counts.py?" in graded.output(test_id)
    assert "did you mean P3_param_counts.py?" in graded.json["output"]


def test_a_notebook_only_upload_is_rejected_with_a_row_per_test(tmp_path, grade_submission):
    rubric = rubric_of_parts(tmp_path / "rubric.yaml", "p3a")
    files(tmp_path / "sub", "ps1.ipynb")
    graded = grade_submission(tmp_path / "sub", rubric=rubric)
    validate_results(graded.json)
    assert graded.json["score"] == 0 and graded.json["extra_data"]["status"] == "rejected"
    assert "only a notebook (ps1.ipynb)" in graded.json["tests"][0]["output"]
    assert len(graded.json["tests"]) == 3  # the reason, and each rubric test
