"""SAM-family internals of the segmenter: model backends, checkpoint conversion, prompts, segment-everything."""
