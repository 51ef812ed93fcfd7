"""Reading datasets, in one import: the public names of the three modules that do the work.

* :mod:`kidney_tf.data.decode`: one image or mask file -> pixels, under the memory bound (the
  decoding policy: RGB ``uint8``, 16-bit scaling, alpha on black, ``max_pixels``, DICOM).
* :mod:`kidney_tf.data.records`: :class:`ImageRecord`, :class:`BadFile`, :class:`ScanResult`,
  split names, decode-checking records.
* :mod:`kidney_tf.data.sources`: class-folder trees (:func:`scan_folder`), manifest CSVs
  (:func:`read_manifest`, :func:`write_manifest`) and :func:`load_source` for either.

Usage::

    from kidney_tf.data.reading import load_source, read_image
    result = load_source("CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone")
    image = read_image(result.records[0].path)   # uint8 (H, W, 3)
"""

from __future__ import annotations

from kidney_tf.data.decode import (
    DEFAULT,
    DEFAULT_MAX_PIXELS,
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_ENV,
    is_dicom_path,
    max_pixels_limit,
    read_image,
    read_mask,
    supported_extensions,
    validate_image,
)
from kidney_tf.data.pixels import ImageReadError
from kidney_tf.data.records import (
    SPLIT_ALIASES,
    BadFile,
    ImageRecord,
    ScanResult,
    check_record,
    normalize_split,
    split_order,
    validate_records,
)
from kidney_tf.data.sources import (
    MANIFEST_COLUMNS,
    MASK_FOLDER,
    load_source,
    read_manifest,
    scan_folder,
    write_manifest,
)

__all__ = [
    "DEFAULT",
    "DEFAULT_MAX_PIXELS",
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "MASK_FOLDER",
    "MAX_PIXELS_ENV",
    "SPLIT_ALIASES",
    "BadFile",
    "ImageReadError",
    "ImageRecord",
    "ScanResult",
    "check_record",
    "is_dicom_path",
    "load_source",
    "max_pixels_limit",
    "normalize_split",
    "read_image",
    "read_manifest",
    "read_mask",
    "scan_folder",
    "split_order",
    "supported_extensions",
    "validate_image",
    "validate_records",
    "write_manifest",
]
