"""Tests of fastattr.Attributor: end-to-end queries, agreement with torch, devices, bad inputs, threads, timings."""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import _export_kit as kit
import fastattr
from fastattr.errors import BundleError, DeviceError, InputError


@pytest.fixture(scope="module")
def attributor():
    return fastattr.Attributor.load(kit.bundle(), device="cpu")


def _brute_force(attributor, image, prompt):
    """Exact ranking of every item by inner product: the reference for the index path."""
    data = kit.dataset()
    items = attributor.embed(list(data.images), list(data.captions))
    query = attributor.embed([image], [prompt])[0]
    scores = items @ query
    return np.asarray(data.item_ids)[np.argsort(-scores, kind="stable")], np.sort(scores)[::-1]


def test_query_end_to_end(attributor):
    data = kit.dataset()
    hits = attributor.query(data.images[7], data.captions[7], k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0].item_id == int(data.item_ids[7])  # a training pair is its own best match
    assert hits[0].caption == data.captions[7] and hits[0].uri is None
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    ids, scores = _brute_force(attributor, data.images[7], data.captions[7])
    exact = dict(zip(ids.tolist(), scores.tolist()))
    # The index scores from int8 codes re-ranked in fp16: equal to exact float32 up to fp16 rounding,
    # so near-ties may swap, but every hit must be a true top-5 item within that tolerance.
    for hit in hits:
        assert abs(hit.score - exact[hit.item_id]) <= 2e-3
        assert exact[hit.item_id] >= scores[4] - 2e-3
    assert attributor.device == "cpu" and len(attributor) == kit.N_ITEMS and "Attributor(" in repr(attributor)


def test_embed_matches_the_torch_embedder(attributor):
    torch = pytest.importorskip("torch")
    student_spec = pytest.importorskip("fastattr.student.spec")
    spec = student_spec.EmbedderSpec(**kit.spec_dict())
    data = kit.dataset()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)  # other size: exercises the resize
    prompts = [data.captions[i] for i in range(6)]
    with torch.no_grad():
        ids, mask = student_spec.tokenize(prompts, spec)
        reference = kit.standin()(torch.from_numpy(student_spec.preprocess_images(images, spec)),
                                  torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    ours = attributor.embed(list(images), prompts)
    assert ours.dtype == np.float32 and ours.shape == (6, kit.DIM)
    assert np.abs(ours - reference).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_image_kinds_give_the_same_answer(attributor, tmp_path):
    data = kit.dataset()
    rgb = np.asarray(data.images[2])
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    path = tmp_path / "q.png"
    path.write_bytes(buffer.getvalue())
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    reference = attributor.embed([rgb], [data.captions[2]])
    for image in (Image.fromarray(rgb), buffer.getvalue(), str(path), rgba, rgb.astype(np.uint16) * 257):
        np.testing.assert_array_equal(attributor.embed(image, data.captions[2]), reference)
    gray = attributor.query(Image.fromarray(rgb).convert("L"), data.captions[2], k=3)
    assert len(gray) == 3


def test_query_batch_and_exclude(attributor):
    data = kit.dataset()
    batch = attributor.query_batch([data.images[0], data.images[1]], [data.captions[0], data.captions[1]], k=4)
    assert [h.item_id for h in batch[1]] == [h.item_id for h in attributor.query(data.images[1], data.captions[1], k=4)]
    best = batch[0][0].item_id
    excluded = attributor.query(data.images[0], data.captions[0], k=4, exclude=[best, 10**12])
    assert best not in [h.item_id for h in excluded] and len(excluded) == 4
    everything = attributor.query(data.images[0], data.captions[0], k=10**6, exclude=list(data.item_ids[:-2]))
    assert len(everything) == 2  # k larger than what is left: every remaining item, no padding


def test_k_larger_than_index_returns_every_item(attributor):
    data = kit.dataset()
    hits = attributor.query(data.images[0], data.captions[0], k=kit.N_ITEMS + 50)
    assert len(hits) == kit.N_ITEMS and len({h.item_id for h in hits}) == kit.N_ITEMS


@pytest.mark.parametrize("k, message", [(0, "at least 1"), (-3, "at least 1"), (2.5, "must be an int"), (True, "must be an int")])
def test_bad_k(attributor, k, message):
    data = kit.dataset()
    with pytest.raises(InputError, match=message):
        attributor.query(data.images[0], data.captions[0], k=k)


def test_bad_inputs(attributor):
    data = kit.dataset()
    with pytest.raises(InputError, match="not a decodable image"):
        attributor.query(b"GIF89a but not really", "a red square")
    with pytest.raises(InputError, match="empty"):
        attributor.query(np.zeros((0, 0, 3), np.uint8), "a red square")
    with pytest.raises(InputError, match="prompt 0 is empty"):
        attributor.query(data.images[0], "")
    with pytest.raises(InputError, match="not valid Unicode"):
        attributor.query(data.images[0], "a red \ud800 square")   # a lone surrogate
    with pytest.raises(InputError, match="2 images and 1 prompts"):
        attributor.embed([data.images[0], data.images[1]], ["a"])
    with pytest.raises(InputError, match="list of prompts"):
        attributor.query_batch([data.images[0]], "a red square")
    with pytest.raises(InputError, match="exclude"):
        attributor.query(data.images[0], "a red square", exclude=["x"])
    # Nothing that only looks like ids: a string is not ids 1 and 2, 2.9 is not 2, True is not 1.
    for bad in ("12", [2.9], [True], [-1], 7):
        with pytest.raises(InputError, match="exclude"):
            attributor.query(data.images[0], "a red square", exclude=bad)
    long_prompt = " ".join([data.captions[0]] * 30)  # far beyond max_length: truncated, still answered
    assert len(attributor.query(data.images[0], long_prompt, k=2)) == 2


def test_threads_give_the_same_answers(attributor):
    data = kit.dataset()
    pairs = [(data.images[i % kit.N_ITEMS], data.captions[i % kit.N_ITEMS]) for i in range(24)]
    expected = [[h.item_id for h in attributor.query(img, cap, k=5)] for img, cap in pairs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: [h.item_id for h in attributor.query(p[0], p[1], k=5)], pairs))
    assert got == expected


def test_precision_variants_and_options():
    data = kit.dataset()
    for precision in ("fp16", "int8"):
        other = fastattr.Attributor.load(kit.bundle(), device="cpu", precision=precision, threads=1, verify="sizes")
        hits = other.query(data.images[4], data.captions[4], k=3)
        assert hits[0].item_id == int(data.item_ids[4])
    with pytest.raises(InputError, match="device"):
        fastattr.Attributor.load(kit.bundle(), device="tpu")
    with pytest.raises(InputError, match="precision"):
        fastattr.Attributor.load(kit.bundle(), precision="bf16")
    with pytest.raises(InputError, match="threads"):
        fastattr.Attributor.load(kit.bundle(), threads=0)


def test_missing_variant(tmp_path):
    import json

    root = kit.copy_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["roles"]["embedder_fp16"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no fp16 embedder"):
        fastattr.Attributor.load(root, precision="fp16")


class _FakeSession:
    """An InferenceSession stand-in that 'fell back' to CPU although CUDA was asked for."""

    def __init__(self, *args, **kwargs):
        pass

    def get_providers(self):
        return ["CPUExecutionProvider"]


def test_devices(monkeypatch):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(DeviceError, match="no CUDA provider"):
            fastattr.Attributor.load(kit.bundle(), device="cuda")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # CUDA not installed at all: auto is CPU, silently
            assert fastattr.Attributor.load(kit.bundle(), device="auto").device == "cpu"
    # onnxruntime-gpu installed but no usable GPU: the session silently falls back; we must notice.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", _FakeSession)
    with pytest.raises(DeviceError, match="onnxruntime gave"):
        fastattr.Attributor.load(kit.bundle(), device="cuda")
    with pytest.warns(RuntimeWarning, match="running on CPU"):
        assert fastattr.Attributor.load(kit.bundle(), device="auto").device == "cpu"


def test_index_and_manifest_disagree(tmp_path):
    import json

    root = kit.copy_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["dim"] = kit.DIM + 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="the manifest says"):
        fastattr.Attributor.load(root)


def test_embed_equals_an_independent_reference(attributor):
    """embed() = Pillow resize + (x/255 - mean)/std + max_length tokens through the ONNX file, written out by hand.

    The reference shares no code with fastattr: a plain onnxruntime session on the bundle's file,
    Pillow and numpy for the pixels, the tokenizers library (the file's own fixed padding) for the
    tokens. Mixed sizes (resized) and a dataset image (already the right size) in one batch.
    """
    import json

    import onnxruntime as ort
    from tokenizers import Tokenizer as RawTokenizer

    data = kit.dataset()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(3)] + [np.asarray(data.images[5])]
    prompts = [data.captions[i] for i in range(3)] + ["a red square " * 20]  # the last one is truncated
    bundle = attributor.bundle
    pre = json.loads((bundle.root / "manifest.json").read_text())["preprocessing"]
    height, width = pre["image"]["size"]
    assert pre["image"]["resize"] == "bilinear"
    resized = [img if img.shape[:2] == (height, width) else
               np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR)) for img in images]
    x = np.stack(resized).astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(pre["image"]["mean"], np.float32)) / np.asarray(pre["image"]["std"], np.float32)
    encodings = RawTokenizer.from_file(str(bundle.root / "tokenizer.json")).encode_batch(prompts)
    feed = {"pixel_values": np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
            "input_ids": np.asarray([e.ids for e in encodings], np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], np.int64)}
    assert feed["input_ids"].shape == (4, pre["text"]["max_length"])
    session = ort.InferenceSession(str(bundle.root / "embedder.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, feed)[0]
    ours = attributor.embed(images, prompts)
    assert ours.dtype == np.float32 and ours.shape == (4, kit.DIM) and ours.flags.c_contiguous
    # Equal up to float rounding: the SDK drops the all-padding columns, the masked encoders ignore them.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    # The reference is sharp enough to notice a pair out of place.
    assert np.abs(ours - expected[[1, 0, 2, 3]]).max() > 1e-2


def _check_timings(timings):
    stages = fastattr.Attributor.STAGES
    assert set(timings) == set(stages) | {"total"}
    assert all(isinstance(v, float) and v >= 0.0 for v in timings.values()), timings
    # Stages are disjoint slices of the call, so together they cannot exceed it.
    assert sum(timings[s] for s in stages) <= timings["total"] + 1e-6, timings
    assert timings["forward"] > 0.0 and timings["total"] > 0.0


def test_query_timings(attributor):
    data = kit.dataset()
    timings: dict[str, float] = {}
    with_t = attributor.query(data.images[3], data.captions[3], k=5, exclude=[1], timings=timings)
    _check_timings(timings)
    assert with_t == attributor.query(data.images[3], data.captions[3], k=5, exclude=[1])
    assert fastattr.Attributor.STAGES == ("decode", "preprocess", "tokenize", "forward", "search", "assemble")


def test_query_batch_timings_and_other_mappings(attributor):
    from collections import OrderedDict

    data = kit.dataset()
    images, prompts = [data.images[0], data.images[9]], [data.captions[0], data.captions[9]]
    timings = OrderedDict(keep="me")  # any MutableMapping; unrelated keys are left alone
    batch = attributor.query_batch(images, prompts, k=3, timings=timings)
    assert timings.pop("keep") == "me"
    _check_timings(dict(timings))
    assert batch == attributor.query_batch(images, prompts, k=3)
    # Nothing left to return after the exclusions: search and assemble are skipped and report 0.
    empty: dict[str, float] = {}
    assert attributor.query(data.images[0], data.captions[0], exclude=data.item_ids, timings=empty) == []
    assert (empty["search"], empty["assemble"]) == (0.0, 0.0) and empty["forward"] > 0


@pytest.mark.parametrize("bad", [[], "decode", 1.0, (("decode", 0.0),)])
def test_bad_timings(attributor, bad):
    data = kit.dataset()
    with pytest.raises(InputError, match="timings must be None or a dict"):
        attributor.query(data.images[0], data.captions[0], timings=bad)
    with pytest.raises(InputError, match=f"got {type(bad).__name__}"):
        attributor.query_batch([data.images[0]], [data.captions[0]], timings=bad)


def test_trimmed_padding_gives_the_vectors_of_full_padding(attributor):
    """The SDK pads a batch to its longest prompt; the masked encoders give what max_length padding gives."""
    from fastattr.preprocess import preprocess_images

    data = kit.dataset()
    prompts, images = ["a red square", data.captions[3]], [data.images[0], data.images[3]]
    ids, mask = attributor._tokenizer(prompts)
    width = attributor.bundle.spec.max_length
    assert ids.shape[1] < width
    pad = attributor._tokenizer.pad_id
    full_ids = np.full((2, width), pad, np.int64)
    full_mask = np.zeros((2, width), np.int64)
    full_ids[:, : ids.shape[1]], full_mask[:, : ids.shape[1]] = ids, mask
    pixels = preprocess_images(images, attributor.bundle.spec)
    full = attributor._session.run(None, {"pixel_values": pixels, "input_ids": full_ids, "attention_mask": full_mask})[0]
    np.testing.assert_allclose(attributor.embed(images, prompts), full, atol=1e-6)
