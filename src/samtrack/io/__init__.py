"""Frame I/O and run outputs: frame sources, id-mask PNGs, overlays, video writers, run directories.

    from samtrack.io import open_source, RunWriter, render_overlay, save_id_mask, load_id_mask
"""

from samtrack.io.masks import DAVIS_PALETTE, id_color, load_id_mask, save_id_mask
from samtrack.io.outputs import RunWriter
from samtrack.io.overlay import render_overlay
from samtrack.io.sources import FrameSource, ImageFolderSource, VideoSource, open_source

__all__ = [
    "DAVIS_PALETTE",
    "FrameSource",
    "ImageFolderSource",
    "RunWriter",
    "VideoSource",
    "id_color",
    "load_id_mask",
    "open_source",
    "render_overlay",
    "save_id_mask",
]
