"""Every knob of the segment-and-track pipeline, with SAM-Track's names and defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")  # as samtrack.models.common (kept free of torch here)


@dataclass
class Settings:
    """Settings of a tracking session. Names and defaults follow SAM-Track's `segtracker_args`,
    `sam_args` and `aot_args`, so a SAM-Track configuration carries over unchanged."""

    # segtracker_args
    sam_gap: int = 10  # run segment-everything every sam_gap frames in automatic mode
    min_area: int = 200  # smallest new object (pixels)
    max_obj_num: int = 255  # most objects tracked at once (ids 1..255)
    min_new_obj_iou: float = 0.8  # share of a segment outside tracked objects for it to become a new object
    # sam_args['generator_args'] (segment everything)
    points_per_side: int = 16
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.9
    crop_n_layers: int = 1
    crop_n_points_downscale_factor: int = 2
    min_mask_region_area: int = 200
    # models
    segmenter: str = "sam-vit-b"
    tracker: str = "r50-deaotl"
    tracker_checkpoint: str | None = None
    device: str = "cpu"
    precision: str = "auto"  # tracker and segmenter: auto, fp32, bf16 or fp16 (see models.common.resolve_precision)
    # text and audio grounding (SAM-Track's detector / audio defaults)
    detector: str = "grounding-dino-tiny"
    box_threshold: float = 0.25
    text_threshold: float = 0.25
    box_size_threshold: float = 1.0  # drop boxes larger than this fraction of the frame
    audio_model: str = "ast-audioset"
    label_num: int = 6
    audio_threshold: float = 0.05
    audio_top1: bool = False  # ground only the most probable sound (SAM-Track grounds all of them)
    # aot_args
    long_term_mem_gap: int = 9999
    max_len_long_term: int = 9999
    # SAM 2.1 / EdgeTAM trackers' memory (None: the model's own number of memory frames)
    num_memory_frames: int | None = None
    max_conditioning_frames: int = 4

    def __post_init__(self) -> None:
        from samtrack.errors import InputError

        if self.sam_gap < 1:
            raise InputError(f"sam_gap must be >= 1, got {self.sam_gap}")
        if not 1 <= self.max_obj_num <= 255:
            raise InputError(f"max_obj_num must be in 1..255 (ids are stored as uint8), got {self.max_obj_num}")
        if not 0.0 <= self.min_new_obj_iou <= 1.0:
            raise InputError(f"min_new_obj_iou must be in [0, 1], got {self.min_new_obj_iou}")
        if self.precision not in PRECISION_CHOICES:
            raise InputError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {self.precision!r}")
        if self.long_term_mem_gap < 1 or self.max_len_long_term < 1:
            raise InputError("long_term_mem_gap and max_len_long_term must be >= 1")

    def everything_args(self) -> dict:
        """Keyword arguments for `Segmenter.everything`."""
        return {
            "points_per_side": self.points_per_side,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            "crop_n_layers": self.crop_n_layers,
            "crop_n_points_downscale_factor": self.crop_n_points_downscale_factor,
            "min_mask_region_area": self.min_mask_region_area,
            "min_area": self.min_area,
            "max_obj_num": self.max_obj_num,
        }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
