"""A root with another dataset's layout says which: `--dataset sysu` on a RegDB folder names RegDB and
the flag to use, besides what is missing. Folders of no known layout get no guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from vireid.cli import main
from vireid.data.registry import detect_layouts, open_dataset
from vireid.data.synthetic import generate_synthetic
from vireid.errors import DatasetLayoutError


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    sysu = generate_synthetic(base / "sysu", ids=4, images_per_camera=1, height=32, width=16, progress=False)
    regdb = generate_synthetic(base / "regdb", layout="regdb", ids=4, images_per_camera=1, height=32, width=16,
                               progress=False)
    llcm = base / "llcm"  # the folders that tell the LLCM layout apart, without images
    for folder in ("idx", "test_vis/cam1", "test_nir/cam2"):
        (llcm / folder).mkdir(parents=True)
    return {"sysu": Path(sysu), "regdb": Path(regdb), "llcm": llcm, "empty": base / "empty"}


def test_each_built_in_layout_is_detected_as_itself_only(roots):
    roots["empty"].mkdir(exist_ok=True)
    assert detect_layouts(roots["sysu"]) == ["sysu"]
    assert detect_layouts(roots["regdb"]) == ["regdb"]
    assert detect_layouts(roots["llcm"]) == ["llcm"]
    assert detect_layouts(roots["empty"]) == [] and detect_layouts(roots["empty"] / "absent") == []


@pytest.mark.parametrize("asked, actual, title", [("sysu", "regdb", "RegDB"), ("regdb", "sysu", "SYSU-MM01"),
                                                  ("sysu", "llcm", "LLCM"), ("llcm", "regdb", "RegDB")])
def test_a_root_of_another_layout_names_it_and_the_flag(roots, asked, actual, title):
    with pytest.raises(DatasetLayoutError) as err:
        open_dataset(asked, roots[actual])
    message = str(err.value)
    assert "missing" in message  # what the asked-for layout lacks is still said
    assert f"looks like a {title} root: use --dataset {actual}" in message


def test_a_root_of_no_known_layout_gets_no_guess(roots):
    roots["empty"].mkdir(exist_ok=True)
    with pytest.raises(DatasetLayoutError) as err:
        open_dataset("sysu", roots["empty"])
    assert "looks like" not in str(err.value)


def test_info_on_a_regdb_root_with_dataset_sysu_says_so_in_one_line(roots, capsys):
    assert main(["info", "--dataset", "sysu", "--data-root", str(roots["regdb"])]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "use --dataset regdb" in lines[0]
