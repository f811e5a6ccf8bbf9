"""Tests for data/layouts.py and data/images.py: imagefolder, webdataset, the image policy, the decode cache."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastattr.data import IMAGE_POLICY, load_dataset, to_rgb_square
from fastattr.errors import DatasetError


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _imagefolder(root: Path, n: int = 3, *, csv: bool = False, column: str = "text") -> Path:
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (20 + 3 * i, 12), (30 * i, 200, 0)).save(root / f"{i}.png")
        rows.append({"file_name": f"{i}.png", column: f"caption {i}", "extra": i})
    if csv:
        lines = [f"file_name,{column},extra"] + [f"{r['file_name']},{r[column]},{r['extra']}" for r in rows]
        (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    else:
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.parametrize("csv", [False, True])
def test_imagefolder_any_size_to_square(tmp_path: Path, csv: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    _imagefolder(tmp_path / "hf", csv=csv)
    monkeypatch.chdir(tmp_path)
    ds = load_dataset(Path("hf"), image_size=8)   # a relative path, as a CLI user gives it
    assert ds.images.shape == (3, 8, 8, 3) and ds.images.dtype == np.uint8
    assert ds.captions == ["caption 0", "caption 1", "caption 2"] and ds.uris == ["0.png", "1.png", "2.png"]
    assert ds.item_ids.tolist() == [0, 1, 2] and isinstance(ds.images, np.memmap)
    assert ds.images[2, 4, 4].tolist() == [60, 200, 0]


def test_imagefolder_caption_column(tmp_path: Path) -> None:
    root = _imagefolder(tmp_path / "hf", column="description")
    with pytest.raises(DatasetError, match="--caption-column.*file_name, description, extra"):
        load_dataset(root, image_size=8)
    with pytest.raises(DatasetError, match="no column 'alt'"):
        load_dataset(root, image_size=8, caption_column="alt")
    assert load_dataset(root, image_size=8, caption_column="description").captions[1] == "caption 1"


def test_imagefolder_refusals(tmp_path: Path) -> None:
    root = _imagefolder(tmp_path / "hf", n=1)
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "../0.png", "text": "c"}) + "\n")
    with pytest.raises(DatasetError, match="leaves the folder"):
        load_dataset(root, image_size=8)
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "gone.png", "text": "c"}) + "\n")
    with pytest.raises(DatasetError, match="cannot read image gone.png"):
        load_dataset(root, image_size=8)
    (root / "metadata.jsonl").write_text(json.dumps({"image": "0.png", "text": "c"}) + "\n")
    with pytest.raises(DatasetError, match="no file_name column"):
        load_dataset(root, image_size=8)
    (root / "metadata.jsonl").write_text("")
    with pytest.raises(DatasetError, match="lists no items"):
        load_dataset(root, image_size=8)


def _shard(path: Path, items: list[tuple[str, Image.Image | None, str | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for key, image, caption in items:
            for name, data in ((f"{key}.png", _png(image) if image else None),
                               (f"{key}.txt", caption.encode() if caption is not None else None)):
                if data is None:
                    continue
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_webdataset_folder_and_single_shard(tmp_path: Path) -> None:
    (tmp_path / "wds").mkdir()
    _shard(tmp_path / "wds" / "000000.tar", [("a", Image.new("RGB", (9, 9), (255, 0, 0)), "red"),
                                             ("b", Image.new("L", (16, 9), 128), "grey")])
    _shard(tmp_path / "wds" / "000001.tar", [("sub/c.x", Image.new("RGBA", (9, 9), (0, 0, 0, 0)), "clear")])
    ds = load_dataset(tmp_path / "wds", image_size=4)
    assert ds.captions == ["red", "grey", "clear"]
    assert ds.uris == ["000000.tar:a", "000000.tar:b", "000001.tar:sub/c"]
    assert ds.images[0, 0, 0].tolist() == [255, 0, 0] and ds.images[1, 2, 2].tolist() == [128] * 3
    assert ds.images[2, 0, 0].tolist() == [255, 255, 255]   # transparent on white
    one = load_dataset(tmp_path / "wds" / "000001.tar", image_size=4)
    assert one.captions == ["clear"]


def test_webdataset_refusals(tmp_path: Path) -> None:
    (tmp_path / "wds").mkdir()
    _shard(tmp_path / "wds" / "0.tar", [("a", Image.new("RGB", (4, 4)), None)])
    with pytest.raises(DatasetError, match="no caption member, e.g. 'a'"):
        load_dataset(tmp_path / "wds", image_size=4)
    (tmp_path / "wds" / "0.tar").write_bytes(b"not a tar at all" * 40)
    with pytest.raises(DatasetError, match="cannot read the tar shard"):
        load_dataset(tmp_path / "wds", image_size=4)


@pytest.mark.parametrize("make, expect", [
    (lambda: Image.new("L", (6, 6), 100), [100, 100, 100]),
    (lambda: Image.new("LA", (6, 6), (0, 0)), [255, 255, 255]),
    (lambda: Image.new("RGBA", (6, 6), (10, 20, 30, 255)), [10, 20, 30]),
    (lambda: Image.new("CMYK", (6, 6), (0, 0, 0, 0)), [255, 255, 255]),
    (lambda: Image.fromarray(np.full((6, 6), 65535, np.uint16)), [255, 255, 255]),
    (lambda: Image.fromarray(np.full((6, 6), 32896, np.uint16)), [128, 128, 128]),
    (lambda: Image.new("1", (6, 6), 1), [255, 255, 255]),
])
def test_policy_modes(make, expect) -> None:
    assert to_rgb_square(make(), 4)[1, 1].tolist() == expect


def test_policy_palette_transparency_and_png_16_bit(tmp_path: Path) -> None:
    pal = Image.new("P", (6, 6), 0)
    pal.putpalette([0, 0, 0, 9, 9, 9] + [0] * 762)
    pal.info["transparency"] = 0
    assert to_rgb_square(pal, 4)[0, 0].tolist() == [255, 255, 255]
    Image.fromarray(np.full((6, 6), 65535, np.uint16)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert to_rgb_square(img, 4)[0, 0].tolist() == [255, 255, 255]


def test_policy_exif_rotation_and_centre_crop() -> None:
    # A 4x2 image whose EXIF says "rotate 90°": upright it is 2 wide and 4 tall.
    img = Image.new("RGB", (4, 2), (0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=100)
    with Image.open(io.BytesIO(buf.getvalue())) as loaded:
        assert to_rgb_square(loaded, None).shape == (4, 2, 3)
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255            # the centre third is white: the crop keeps only it
    out = to_rgb_square(Image.fromarray(wide), 10)
    assert out.shape == (10, 10, 3) and out[:, 2:8].min() == 255
    assert "centre-cropped" in IMAGE_POLICY


def test_decode_cache_is_reused_and_refreshed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _imagefolder(tmp_path / "hf", n=2)
    cache = tmp_path / "cache"
    first = load_dataset(root, image_size=8, cache_dir=cache)
    files = sorted((cache / "datasets").glob("images-*.npy"))
    assert len(files) == 1 and first.meta["digest"] in files[0].name

    import fastattr.data.layouts as layouts

    def fail(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(layouts, "_decode_one", fail)
    with pytest.raises(AssertionError):
        load_dataset(root, image_size=4, cache_dir=cache)   # another size is another cache
    monkeypatch.undo()
    second = load_dataset(root, image_size=8, cache_dir=cache)  # same files: read from the cache
    assert second.digest() == first.digest() and np.array_equal(second.images, first.images)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "1.png")
    third = load_dataset(root, image_size=8, cache_dir=cache)
    assert third.digest() != first.digest() and third.images[1, 0, 0].tolist() == [1, 2, 3]


def test_failed_decode_leaves_no_partial_cache(tmp_path: Path) -> None:
    root = _imagefolder(tmp_path / "hf", n=3)
    (root / "2.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="cannot read image 2.png"):
        load_dataset(root, image_size=8, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []


def test_array_layout_resized_on_request(tmp_path: Path) -> None:
    from fastattr.data import write_dataset

    images = np.zeros((2, 6, 6, 3), np.uint8)
    images[1] = 200
    write_dataset(tmp_path / "d", images, ["a", "b"])
    ds = load_dataset(tmp_path / "d", image_size=3)
    assert ds.images.shape == (2, 3, 3, 3) and ds.images[1].min() == 200 and ds.meta["resized_from"] == [6, 6]
    assert load_dataset(tmp_path / "d", image_size=6).images.shape == (2, 6, 6, 3)


def test_unknown_folder_lists_layouts(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="metadata.jsonl/metadata.csv.*imagefolder"):
        load_dataset(tmp_path / "x")
    with pytest.raises(DatasetError, match="image_size must be"):
        load_dataset(tmp_path / "x", image_size=0)


def test_written_files_are_readable_by_others(tmp_path: Path) -> None:
    import os
    import stat

    from fastattr._atomic import write_json
    from fastattr.data import write_dataset

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_dataset(tmp_path / "d", np.zeros((1, 2, 2, 3), np.uint8), ["c"])
        load_dataset(_imagefolder(tmp_path / "hf", n=1), image_size=4, cache_dir=tmp_path / "cache")
    finally:
        os.umask(old)
    cached = next((tmp_path / "cache" / "datasets").glob("*.npy"))
    for path in (tmp_path / "a.json", tmp_path / "d", tmp_path / "d" / "images.npy", cached,
                 cached.with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


def test_stage_commands_share_the_dataset_arguments(tmp_path: Path) -> None:
    import argparse

    from fastattr.cli import build_parser
    from fastattr.data.layouts import add_dataset_arguments, dataset_from_args

    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    root = _imagefolder(tmp_path / "hf", column="alt")
    args = parser.parse_args(["--dataset", str(root), "--image-size", "6", "--caption-column", "alt"])
    assert dataset_from_args(args).images.shape == (3, 6, 6, 3)
    cli = build_parser()
    for command in (["student", "train", "--teacher-set", "t", "--out", "o"], ["student", "eval", "--student", "s",
                    "--teacher-set", "t", "--out", "o"], ["index", "build", "--embedder", "e", "--out", "o"],
                    ["export", "s", "--out", "o"]):
        parsed = cli.parse_args([*command, "--dataset", "d", "--image-size", "12"])
        assert parsed.image_size == 12 and parsed.caption_column is None, command
