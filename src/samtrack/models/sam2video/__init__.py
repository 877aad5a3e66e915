"""SAM 2.1 and EdgeTAM video trackers (transformers); load them with `samtrack.models.trackers`."""

from samtrack.models.sam2video.loading import Sam2VideoWeights, load_sam2_video_weights
from samtrack.models.sam2video.tracker import Sam2VideoTracker

__all__ = ["Sam2VideoTracker", "Sam2VideoWeights", "load_sam2_video_weights"]
