"""SAM 2.1 and EdgeTAM video propagators (transformers), and `load_propagator` for every tracker."""

from samtrack.models.sam2video.loading import is_sam2_video, load_propagator, load_sam2_video
from samtrack.models.sam2video.propagator import Sam2VideoPropagator

__all__ = ["Sam2VideoPropagator", "is_sam2_video", "load_propagator", "load_sam2_video"]
