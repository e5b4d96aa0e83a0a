"""Data layer: readers for KINS/COCOA/COCO/Cityscapes (:mod:`.readers`), masks as RLE (:mod:`.masks`),
instance records (:mod:`.records`), crops (:mod:`.crops`), real data sets' layouts on disk (:mod:`.layouts`),
datasheets (:mod:`.datasheet`), and the embedded synthetic data set (:mod:`.synth`, :mod:`.scenes`)."""
from .masks import AnnotationError
from .readers import MissingFileError, as_annotations, detect_schema, load_annotations
from .records import VISIBLE_RATIO_BINS, AnnotationSet, Instance

__all__ = ["AnnotationError", "MissingFileError", "load_annotations", "as_annotations", "detect_schema",
           "AnnotationSet", "Instance", "VISIBLE_RATIO_BINS"]
