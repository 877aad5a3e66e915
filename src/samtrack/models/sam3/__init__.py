"""SAM 3 (transformers): text detector, SAM 2-style segmenter and tracker, concept tracking; one checkpoint."""

from samtrack.models.sam3.loading import ROLES, Sam3Weights, is_sam3, load_sam3

__all__ = ["ROLES", "Sam3Weights", "is_sam3", "load_sam3"]
