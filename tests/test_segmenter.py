"""Segmenter behaviour on tiny random SAM models saved with save_pretrained and loaded through Segmenter.load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import davis_frames
from PIL import Image
from transformers import SamConfig, SamModel

import samtrack
from samtrack import InputError, ModelError, Segmenter
from samtrack.models.sam.backends import plain_grid_decoder
from samtrack.models.sam.everything import MaskRecord, merge_masks


def tiny_sam_config() -> SamConfig:
    return SamConfig(
        vision_config={
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "global_attn_indexes": [1],
            "mlp_dim": 64, "output_channels": 32, "num_pos_feats": 16, "patch_size": 32, "window_size": 7,
        },
        prompt_encoder_config={"hidden_size": 32, "patch_size": 32},
        mask_decoder_config={
            "hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32,
        },
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = SamModel(tiny_sam_config())
    with torch.no_grad():  # large mask logits so that random masks are not all-or-nothing around 0
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(50)
    path = tmp_path_factory.mktemp("tiny-sam")
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def seg(tiny_dir) -> Segmenter:
    return Segmenter.load(tiny_dir, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    folder = davis_frames("blackswan")
    return [np.array(Image.open(folder / f"{i:05d}.jpg").resize((214, 120), Image.BILINEAR)) for i in (0, 10)]


class EncoderCalls:
    """Counts forward calls of the model's vision encoder."""

    def __init__(self, seg: Segmenter):
        self.count = 0
        self.handle = seg.model.vision_encoder.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.count += 1

    def close(self):
        self.handle.remove()


def test_public_api_loads_local_directory(seg, frames):
    assert samtrack.Segmenter is Segmenter
    assert seg.family == "sam"
    mask = seg.click(frames[0], [(100, 60)], [1])
    assert mask.dtype == bool and mask.shape == frames[0].shape[:2]
    box = seg.box(frames[0], (50, 20, 150, 100))
    assert box.dtype == bool and box.shape == frames[0].shape[:2]


def test_one_encoder_pass_per_frame(seg, frames):
    seg._cache = None
    calls = EncoderCalls(seg)
    try:
        seg.click(frames[0], [(100, 60)], [1])
        seg.click(frames[0], [(100, 60), (30, 30)], [1, 0])
        seg.box(frames[0].copy(), (50, 20, 150, 100))  # same pixels, another array: still cached
        seg.stroke(frames[0], [(60, 40), (90, 70), (120, 60)], n_points=2)
        assert calls.count == 1
        seg.click(frames[1], [(100, 60)], [1])
        assert calls.count == 2
        seg.click(frames[0], [(100, 60)], [1])  # a new frame replaced the cached one
        assert calls.count == 3
    finally:
        calls.close()


def test_click_matches_sam_track_two_pass(seg, tiny_dir, frames):
    """Best of three by predicted IoU, then best of three again with that logit as mask prompt."""
    model = SamModel.from_pretrained(tiny_dir).eval()
    frame = frames[0]
    embedding = seg.model.embed([frame])
    (in_h, in_w), (h, w) = embedding.input_sizes[0], embedding.original_sizes[0]
    points = torch.tensor([[[[100 * in_w / w, 60 * in_h / h], [30 * in_w / w, 30 * in_h / h]]]])
    labels = torch.tensor([[[1, 0]]])
    with torch.no_grad():
        out = model(image_embeddings=embedding.features[0], input_points=points, input_labels=labels)
        best = out.pred_masks[0, 0, int(out.iou_scores[0, 0].argmax())]
        out = model(image_embeddings=embedding.features[0], input_points=points, input_labels=labels,
                    input_masks=best[None, None])
        best = out.pred_masks[0, 0, int(out.iou_scores[0, 0].argmax())]
    expected = seg.model.processor.post_process_masks(
        [best[None, None]], [(h, w)], [(in_h, in_w)], binarize=True)[0][0, 0].numpy()
    np.testing.assert_array_equal(seg.click(frame, [(100, 60), (30, 30)], [1, 0]), expected)


def test_stroke_is_its_bounding_box(seg, frames):
    frame = frames[0]
    polyline = [(60, 40), (90, 70), (120, 55)]
    painted = np.zeros(frame.shape[:2], np.uint8)
    for x, y in polyline:
        painted[y, x] = 255
    expected = seg.box(frame, (60, 40, 120, 70))
    np.testing.assert_array_equal(seg.stroke(frame, polyline), expected)
    np.testing.assert_array_equal(seg.stroke(frame, painted), expected)
    with_points = seg.stroke(frame, polyline, n_points=3)
    np.testing.assert_array_equal(
        with_points, seg._predict(frame, points=polyline, labels=[1, 1, 1], box=(60, 40, 120, 70))
    )
    # A straight vertical stroke still gives a box with an area.
    assert seg.stroke(frame, [(70, 10), (70, 90)]).shape == frame.shape[:2]


def test_rgba_and_pil_frames_are_converted(seg, frames):
    frame = frames[0]
    rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    expected = seg.click(frame, [(100, 60)], [1])
    np.testing.assert_array_equal(seg.click(rgba, [(100, 60)], [1]), expected)
    np.testing.assert_array_equal(seg.click(Image.fromarray(frame), [(100, 60)], [1]), expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, f: s.click(f, [(214, 10)], [1]), "outside"),
        (lambda s, f: s.click(f, [(-1, 10)], [1]), "outside"),
        (lambda s, f: s.click(f, [], []), "no clicks"),
        (lambda s, f: s.click(f, [(10, 10)], [1, 0]), "labels"),
        (lambda s, f: s.click(f, [(10, 10)], [2]), "labels must be 1"),
        (lambda s, f: s.box(f, (10, 10, 10, 50)), "no area"),
        (lambda s, f: s.box(f, (10, 50, 40, 20)), "no area"),
        (lambda s, f: s.box(f, (10, 10, 300, 50)), "outside"),
        (lambda s, f: s.box(f, (10, 10, 40)), "four numbers"),
        (lambda s, f: s.click(f[:, :, 0], [(10, 10)], [1]), "grayscale"),
        (lambda s, f: s.click(f.astype(np.float32) / 255, [(10, 10)], [1]), "uint8"),
        (lambda s, f: s.click(f.tolist(), [(10, 10)], [1]), "numpy"),
        (lambda s, f: s.stroke(f, np.zeros(f.shape[:2])), "empty"),
        (lambda s, f: s.everything(f, max_obj_num=300), "max_obj_num"),
        (lambda s, f: s.everything(f, points_per_sid=4), "unknown segment-everything option"),
    ],
)
def test_user_errors_are_clear(seg, frames, call, message):
    with pytest.raises(InputError, match=message):
        call(seg, frames[0])


def test_load_errors(tmp_path, tiny_dir):
    with pytest.raises(ModelError, match="does not exist"):
        Segmenter.load(str(tmp_path / "missing" / "model"))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError, match="not a SAM-family"):
        Segmenter.load(str(tmp_path))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pth is not a PyTorch SAM checkpoint"):
        Segmenter.load(str(bad))
    with pytest.raises(InputError, match="precision"):
        Segmenter.load(tiny_dir, precision="int8")
    with pytest.raises(InputError, match="device"):
        Segmenter.load(tiny_dir, device="tpu")


def test_bfloat16_model_runs(tiny_dir, frames):
    seg = Segmenter.load(tiny_dir, device="cpu", precision="bf16")
    assert next(seg.model.model.parameters()).dtype == torch.bfloat16
    mask = seg.click(frames[0], [(100, 60)], [1])
    assert mask.dtype == bool and mask.shape == frames[0].shape[:2]


def test_everything_returns_sam_track_id_mask(seg, frames):
    ids = seg.everything(frames[0], points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                         min_area=20)
    assert ids.dtype == np.uint8 and ids.shape == frames[0].shape[:2]
    present = np.unique(ids[ids > 0])
    np.testing.assert_array_equal(present, np.arange(1, len(present) + 1))


@pytest.mark.parametrize("min_iou", [None, 0.0, 10.0])
def test_grid_decoder_equals_the_model_decoder(seg, frames, min_iou):
    """Segment-everything's decoder (image-side work shared by all prompts) gives the model's own outputs."""
    embedding = seg.model.embed([frames[0]])
    points = seg.model.to_model_coords(torch.rand(40, 2, generator=torch.Generator().manual_seed(0))
                                       * torch.tensor([214.0, 120.0]), embedding)
    logits, iou, keep = seg.model.grid_decoder(embedding)(points, min_iou)
    ref_logits, ref_iou, ref_keep = plain_grid_decoder(seg.model, embedding)(points, min_iou)
    assert keep.shape == (40, 3) and int(keep.sum()) == {None: 120, 0.0: int(ref_keep.sum()), 10.0: 0}[min_iou]
    assert logits.shape == (int(keep.sum()), *seg.model.mask_input_size)
    torch.testing.assert_close(keep, ref_keep)
    torch.testing.assert_close(iou, ref_iou, rtol=1e-5, atol=1e-6)
    scale = float(ref_logits.abs().max()) if ref_logits.numel() else 1.0
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4 * scale)


def _record(mask: np.ndarray) -> MaskRecord:
    return MaskRecord(mask, int(mask.sum()), (0, 0, 1, 1), 1.0, (0, 0), 1.0, (0, 0, 1, 1))


def test_merge_paints_in_order_drops_small_and_renumbers():
    shape = (40, 40)
    big, covered, small, later = (np.zeros(shape, bool) for _ in range(4))
    big[:20] = True              # 800 px, partly painted over by `later`
    covered[30:35, 30:35] = True  # 25 px, then fully painted over: id disappears
    small[36:, :3] = True         # 12 px: under min_area, never painted
    later[10:38, 20:] = True      # 560 px, painted last
    merged = merge_masks([_record(big), _record(covered), _record(small), _record(later)], shape, 20, 255)
    assert merged.dtype == np.uint8
    assert set(np.unique(merged)) == {0, 1, 2}
    assert (merged[later] == 2).all()
    assert (merged[big & ~later] == 1).all()
    assert (merged[small] == 0).all()
    # Regions whose visible area fell under min_area after painting are dropped too.
    shrunk = np.zeros(shape, bool)
    shrunk[:12, :12] = True      # 144 px, 140 of them covered by `top`
    top = np.zeros(shape, bool)
    top[:12, 1:] = True
    merged = merge_masks([_record(shrunk), _record(top)], shape, 20, 255)
    assert set(np.unique(merged)) == {0, 1} and (merged[top] == 1).all()
    # At most max_obj_num ids.
    strips = []
    for i in range(4):
        m = np.zeros(shape, bool)
        m[i * 10 : i * 10 + 10] = True
        strips.append(_record(m))
    assert merge_masks(strips, shape, 20, 3).max() == 3
    assert (merge_masks(strips, shape, 20, 3)[30:] == 0).all()


@pytest.mark.parametrize("family", ["sam", "sam_hq"])
@pytest.mark.parametrize("band_bytes", [1, 1 << 30])
def test_banded_vit_attention_equals_transformers(family, band_bytes, monkeypatch):
    """The encoder's attention with the relative-position bias built per band of query rows gives
    transformers' encoder output, whether one band holds every row or each row is its own band."""
    from transformers import SamHQConfig, SamHQModel

    from samtrack.models.sam import vit

    vision = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "global_attn_indexes": [1],
              "mlp_dim": 64, "output_channels": 32, "patch_size": 16, "image_size": 192, "window_size": 5}
    torch.manual_seed(0)
    model = (SamHQModel(SamHQConfig(vision_config=vision)) if family == "sam_hq"
             else SamModel(SamConfig(vision_config=vision))).eval()
    with torch.no_grad():  # non-zero relative positions (they start at zero)
        for layer in model.vision_encoder.layers:
            layer.attn.rel_pos_h.normal_()
            layer.attn.rel_pos_w.normal_()
    pixels = torch.randn(2, 3, 192, 192)
    with torch.inference_mode():
        expected = model.vision_encoder(pixels).last_hidden_state
        monkeypatch.setattr(vit, "BIAS_BAND_BYTES", band_bytes)
        vit.prepare_vit_encoder(model.vision_encoder)
        got = model.vision_encoder(pixels).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("original", "resized"), [((480, 854), (576, 1024)), ((290, 500), (594, 1024)),
                                                   ((1000, 700), (1024, 717)), ((3, 1000), (3, 1024))])
def test_upscale_equals_the_processors_post_processing(seg, original, resized):
    """Upscaling only the rows and columns the crop keeps gives post_process_masks' values exactly."""
    from samtrack.models.sam.backends import Embedding

    side = seg.model.mask_input_size[0]
    logits = torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(0)) * 10
    embedding = Embedding((None,), [resized], [original])
    expected = seg.model.processor.post_process_masks([logits.reshape(-1, 1, side, side)], [original], [resized],
                                                      binarize=False)[0].reshape(4, 3, *original)
    assert torch.equal(seg.model.upscale(logits, embedding), expected)
