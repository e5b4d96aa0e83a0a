"""Data layer: readers for KINS/COCOA/COCO/Cityscapes, masks as RLE, crops, the synthetic data set."""
from .masks import AnnotationError
from .readers import MissingFileError, as_annotations, detect_schema, load_annotations
from .records import VISIBLE_RATIO_BINS, AnnotationSet, Instance

__all__ = ["AnnotationError", "MissingFileError", "load_annotations", "as_annotations", "detect_schema",
           "AnnotationSet", "Instance", "VISIBLE_RATIO_BINS"]
