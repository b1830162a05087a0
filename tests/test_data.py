import zipfile

import numpy as np
import pytest
from PIL import Image

from core.dataset import DataError, dataset_fingerprint, list_images, load_images
from tests.conftest import SHARED_DATA, make_folder


def test_folder_nested_and_mixed_formats(tmp_path):
    make_folder(tmp_path / "a", 3, ext=".png")
    make_folder(tmp_path / "a" / "deeper", 2, seed=1, ext=".jpg")
    make_folder(tmp_path / "b", 2, seed=2, ext=".webp")
    (tmp_path / "notes.txt").write_text("not an image")
    images, skipped = load_images(tmp_path)
    assert images.shape == (7, 64, 64, 3) and images.dtype == np.uint8 and skipped == 0


def test_zip_equals_folder(tmp_path):
    folder = make_folder(tmp_path / "f", 5)
    zpath = tmp_path / "d.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"faces/{p.name}")
    a, _ = load_images(folder)
    b, _ = load_images(zpath)
    np.testing.assert_array_equal(a, b)
    assert list_images(zpath)[0] == "faces/img_0000.png"


def test_non_square_images_are_centre_cropped_and_resized(tmp_path):
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centred square is all white; the sides are black
    Image.fromarray(img).save(tmp_path / "wide.png")
    images, _ = load_images(tmp_path)
    assert images.shape == (1, 64, 64, 3)
    assert images.min() > 250


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    make_folder(tmp_path, 3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    images, skipped = load_images(tmp_path)
    assert len(images) == 3 and skipped == 2


def test_missing_empty_and_unreadable_sets_name_the_path(tmp_path):
    with pytest.raises(DataError, match="not found: .*nope"):
        load_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images .* in .*empty"):
        load_images(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="none of the 1 images"):
        load_images(tmp_path / "bad")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="folder or a .zip"):
        load_images(tmp_path / "file.txt")


def test_fingerprint_changes_with_content(tmp_path):
    make_folder(tmp_path, 2)
    before = dataset_fingerprint(tmp_path)
    assert dataset_fingerprint(tmp_path) == before
    make_folder(tmp_path, 2, seed=5)  # same names, other pixels
    assert dataset_fingerprint(tmp_path) != before


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared anime-face set not present")
def test_shared_data_set_lists_all_faces():
    names = list_images(SHARED_DATA)
    assert len(names) == 22969
    images, skipped = load_images(SHARED_DATA, names[:50])
    assert images.shape == (50, 64, 64, 3) and skipped == 0
