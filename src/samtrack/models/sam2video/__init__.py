"""SAM 2.1 and EdgeTAM video propagators (transformers); load them with `samtrack.models.propagator`."""

from samtrack.models.sam2video.loading import load_sam2_video_model
from samtrack.models.sam2video.propagator import Sam2VideoPropagator

__all__ = ["Sam2VideoPropagator", "load_sam2_video_model"]
