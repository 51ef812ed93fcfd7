"""Records -> split -> train/val/test ``tf.data`` pipelines feeding raw 0..255 pixels.

Per split: read bytes, decode (JPEG/PNG/BMP/GIF/WebP in the graph, 16-bit PNG scaled like
``reading.read_image``; other formats through ``reading.read_image``), optional crop to the brain
or body (in the graph), resize, cache (memory or file), then for train only: seeded shuffle that
reshuffles every epoch and augmentation; batch and prefetch. Bad files are screened up front by
the reader (a full decode check), counted in ``bundle.bad_files`` and left out
(``strict=True`` raises instead), so the datasets keep a known length and never fail mid-epoch.

Usage::

    from kidney_tf.data.pipeline import build_datasets
    bundle = build_datasets("data/kidney_ct", image_size=224, batch_size=32, split="grouped")
    print(bundle.describe())
    model.fit(bundle.train, validation_data=bundle.val, class_weight=bundle.class_weights)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kidney_tf.data import reading
from kidney_tf.data.augment import AugmentConfig, build_augmenter, build_mixer
from kidney_tf.data.class_weights import balanced_class_weights
from kidney_tf.data.crop_tf import crop_resize
from kidney_tf.data.reading import BadFile, ImageRecord, ScanResult
from kidney_tf.data.splits import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_SLICE_GAP,
    SPLITS,
    Splits,
    split_records,
)
from kidney_tf.recipes import (
    CROP_BACKENDS,
    FOREGROUND_KEY,
    IMAGE_KEY,
    LESION_KEY,
    check_choice,
    parse_crop,
)
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

#: Formats TensorFlow decodes in the graph; anything else goes through ``reading.read_image``.
TF_NATIVE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
JPEG_WORKING_SIDE = 1024
#: libjpeg IDCT of the in-graph decoder (training, evaluation and the SavedModel alike).
JPEG_DCT = "INTEGER_ACCURATE"
_PNG_MAGIC = b"\x89PNG"


@dataclasses.dataclass
class DataBundle:
    """The datasets of one run plus everything needed to train and evaluate on them.

    ``train``/``val``/``test`` are ``tf.data.Dataset`` (``None`` for an empty split) yielding
    ``(images float32 [B,S,S,3] 0..255, labels one-hot float32 [B,C])`` (plus ``masks float32
    [B,S,S,1]`` with ``with_masks``; with ``with_foreground``/``with_lesion_masks`` the images come
    as a dict ``{"image", "foreground"?, "lesion_mask"?}`` for CAM fostering). ``records`` maps split -> records in dataset order for the
    unshuffled val/test datasets (map predictions back to files). ``class_weights`` are the
    scikit-learn "balanced" weights of the train split.

    Usage: ``print(bundle.describe()); model.fit(bundle.train, class_weight=bundle.class_weights)``.
    """

    train: tf.data.Dataset | None
    val: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list[str]
    class_weights: dict[int, float]
    counts: dict[str, dict[str, int]]
    records: Splits
    bad_files: list[BadFile]
    image_size: int = 224
    batch_size: int = 32
    crop: str | None = None
    split_method: str = ""
    split_reason: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def dataset(self, split: str) -> tf.data.Dataset | None:
        """The dataset of ``split`` ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def describe(self) -> str:
        """Short multi-line text summary (sizes, class balance, weights, bad files)."""
        lines = [
            f"Data: {self.num_classes} classes ({', '.join(self.class_names)}), "
            f"{self.image_size}px, crop={self.crop or 'none'}, batch {self.batch_size}",
            f"Split: {self.split_method}"
            + (f" ({self.split_reason})" if self.split_reason else ""),
        ]
        for name in SPLITS:
            per_class = self.counts.get(name, {})
            total = sum(per_class.values())
            detail = ", ".join(f"{c} {n}" for c, n in per_class.items())
            lines.append(f"  {name:<5} {total:>6}  ({detail})")
        weights = ", ".join(f"{self.class_names[i]} {w:.3g}" for i, w in self.class_weights.items())
        lines.append(f"Class weights (balanced, train): {weights}")
        lines.append(f"Bad files skipped: {len(self.bad_files)}")
        for bad in self.bad_files[:5]:
            lines.append(f"  {bad.path}: {bad.reason}")
        if len(self.bad_files) > 5:
            lines.append(f"  ... and {len(self.bad_files) - 5} more")
        return "\n".join(lines)


def build_datasets(
    source: str | os.PathLike | ScanResult | Sequence[ImageRecord],
    *,
    image_size: int = 224,
    batch_size: int = 32,
    split: str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
    crop: str | None = None,
    crop_margin: int = 0,
    crop_backend: str = "opencv",
    augment: bool | AugmentConfig | Mapping[str, Any] = True,
    cache: bool | str | os.PathLike = True,
    with_masks: bool = False,
    with_foreground: bool | str = False,
    with_lesion_masks: bool = False,
    strict: bool = False,
    class_names: Sequence[str] | None = None,
    shuffle_buffer: int | None = None,
    deterministic: bool | None = None,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
    slice_gap: int = DEFAULT_SLICE_GAP,
    block_size: int | None = DEFAULT_BLOCK_SIZE,
    duplicate_distance: int | None = None,
    root: str | os.PathLike | None = None,
) -> DataBundle:
    """Build train/val/test datasets from a folder, a manifest CSV, a ScanResult or records.

    Args:
        source: dataset folder, manifest ``.csv`` (e.g. a saved split), ``ScanResult`` or a list
            of ``ImageRecord`` (decode-checked like a folder scan).
        split: "auto", "folders", "stratified" or "grouped" (see
            :func:`kidney_tf.data.splits.split_records`); ``slice_gap``, ``block_size`` and
            ``duplicate_distance`` tune the grouped split.
        crop: None, "brain" (largest-contour crop, ``crop_margin`` px extra) or "body" (CT body
            without the table); both resize to ``image_size``.
        crop_backend: "opencv" (default) finds the crop box with OpenCV in a
            ``tf.numpy_function`` (same pixels as "tf", many times faster on a CPU); "tf" keeps
            the whole pipeline in TensorFlow ops (as the exported SavedModel does).
        augment: True (paper defaults seeded with ``seed``), False, or an
            :class:`~kidney_tf.data.augment.AugmentConfig`/dict; train split only.
        cache: True (memory), False, or a file path prefix (one cache per split, file list and
            settings, so a stale cache is never reused).
        with_masks: also yield masks ``[B, S, S, 1]`` (zeros where a record has none), cut with
            the image's crop box; for evaluation (Keras would read a third element as weights).
        with_foreground: for CAM fostering's anatomy term: yield ``x`` as a dict with
            ``"image"`` and ``"foreground"`` (float32 ``[B, S, S, 1]`` in {0, 1}: the body/brain
            mask of :mod:`kidney_tf.data.crop` of the final image, as the evaluation computes it;
            augmented with the image). True picks "brain" for ``crop="brain"``, else "body".
            A dict keeps ``model.fit(bundle.train)`` working with a flat one-input model (a mask
            packed as a 4th image channel would change the model's input; a third tuple element
            would be read as sample weights).
        with_lesion_masks: likewise add ``"lesion_mask"`` (``[B, S, S, 1]``, zeros where a record
            has none) to the dict, for the lesion-mask term.
        strict: raise on the first unreadable file instead of skipping it.
        class_names: fix the label order (e.g. a trained model's); default: sorted labels.
        shuffle_buffer: train shuffle buffer (default: the whole train split).
        deterministic: None/True keep element order and seeded augmentation reproducible;
            False lets tf.data (and augmentation) run out of order for speed.
        preprocess: applied to image batches last (default None: models preprocess inside).
        root: data root for a manifest CSV whose paths are absolute (a split saved elsewhere).

    ``batch_size`` is the global batch under ``tf.distribute`` (the datasets are plain).

    Usage: ``bundle = build_datasets("phantoms/manifest.csv", image_size=64, batch_size=8)``.
    """
    crop = parse_crop(crop)
    check_choice(crop_backend, CROP_BACKENDS, "crop_backend")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    foreground = _foreground_kind(with_foreground, crop)
    if with_masks and (foreground or with_lesion_masks):
        raise ValueError(
            "with_masks (evaluation: a third element) cannot be combined with with_foreground/"
            "with_lesion_masks (training: a dict of image and masks)"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    scan = _load(source, strict=strict, root=root)
    names = list(class_names) if class_names is not None else list(scan.class_names)
    unknown = sorted({r.label for r in scan.records} - set(names))
    if unknown:
        raise ValueError(f"labels {unknown} are not in class_names {names}")
    if not scan.records:
        raise ValueError(f"{_describe_source(source)}: no readable images found")

    splits = split_records(
        scan.records,
        method=split,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        slice_gap=slice_gap,
        block_size=block_size,
        duplicate_distance=duplicate_distance,
    )
    counts = splits.counts(names)
    weights = class_weights_for(splits["train"], names)
    loader = _Loader(
        names,
        image_size=image_size,
        crop=crop,
        crop_margin=crop_margin,
        crop_backend=crop_backend,
        with_masks=with_masks or with_lesion_masks,
        foreground=foreground,
        as_dict=bool(foreground or with_lesion_masks),
        native=all(Path(r.path).suffix.lower() in TF_NATIVE_EXTENSIONS for r in scan.records),
    )
    config = _augment_config(augment, seed)
    augmenter = None if config is None or config.is_identity else build_augmenter(config)
    mixer = None if config is None else build_mixer(config)
    if mixer is not None and (with_masks or with_lesion_masks or foreground):
        raise ValueError(
            "augment: mixup/cutmix blend two images and their labels, so a mixed image has no "
            "mask of its own; with_masks/with_foreground/with_lesion_masks need one"
        )
    datasets: dict[str, tf.data.Dataset | None] = {}
    for name in SPLITS:
        records = splits[name]
        if not records:
            datasets[name] = None
            continue
        training = name == "train"
        datasets[name] = _make_dataset(
            records,
            loader,
            batch_size=batch_size,
            shuffle=training,
            shuffle_buffer=shuffle_buffer,
            augmenter=augmenter if training else None,
            mixer=mixer if training else None,
            cache=_cache_target(cache, name, records, loader),
            seed=seed,
            deterministic=deterministic,
            preprocess=preprocess,
        )
    bundle = DataBundle(
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"],
        class_names=names,
        class_weights=weights,
        counts=counts,
        records=splits,
        bad_files=list(scan.bad_files),
        image_size=image_size,
        batch_size=batch_size,
        crop=crop,
        split_method=splits.method,
        split_reason=splits.reason,
    )
    if bundle.bad_files:
        log.warning("Skipped %d unreadable file(s); see bundle.bad_files", len(bundle.bad_files))
    return bundle


def _foreground_kind(with_foreground: bool | str, crop: str | None) -> str | None:
    if with_foreground is True:
        return crop or "body"
    if with_foreground is False:
        return None
    return parse_crop(with_foreground, what="with_foreground")


def class_weights_for(
    records: Sequence[ImageRecord], class_names: Sequence[str]
) -> dict[int, float]:
    """scikit-learn "balanced" weights ``n / (k * n_c)`` of ``records`` as ``{index: weight}``.

    Classes absent from ``records`` get weight 1.0 (they never occur, so it is moot).

    Usage: ``class_weights_for(splits["train"], ["Cyst", "Normal", "Stone", "Tumor"])``.
    """
    if not records:
        return dict.fromkeys(range(len(class_names)), 1.0)
    labels = [list(class_names).index(r.label) for r in records]
    return balanced_class_weights(labels, len(class_names), class_names=class_names)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _describe_source(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _load(source: Any, *, strict: bool, root: str | os.PathLike | None) -> ScanResult:
    """Folder/CSV -> ``reading``; in-memory records are decode-checked the same way."""
    if isinstance(source, ScanResult):
        return source
    if isinstance(source, (str, os.PathLike)):
        if root is not None and Path(source).suffix.lower() == ".csv":
            return reading.read_manifest(source, root=root, strict=strict)
        try:
            return reading.load_source(source, strict=strict)
        except ValueError as exc:
            if "absolute path" in str(exc):
                raise ValueError(f"{exc} (or pass root=<data folder> to build_datasets)") from exc
            raise
    records = list(source)
    if not all(isinstance(r, ImageRecord) for r in records):
        raise TypeError("source must be a folder, a .csv manifest, a ScanResult or ImageRecords")
    good, bad = reading.validate_records(records, strict=strict)
    return ScanResult(good, sorted({r.label for r in good}), bad)


# --------------------------------------------------------------------------------------------
# Decoding, cropping, resizing (one element)
# --------------------------------------------------------------------------------------------


class _Loader:
    """Maps ``(path, label, mask_path)`` to cached-ready uint8 tensors."""

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        image_size: int,
        crop: str | None,
        crop_margin: int,
        with_masks: bool,
        native: bool,
        crop_backend: str = "opencv",
        foreground: str | None = None,
        as_dict: bool = False,
    ) -> None:
        self.class_names = list(class_names)
        self.image_size = int(image_size)
        self.crop = crop
        self.crop_margin = int(crop_margin)
        self.crop_backend = crop_backend
        self.with_masks = with_masks
        self.foreground = foreground
        self.as_dict = as_dict
        self.native = native

    def fingerprint(self) -> str:
        fingerprint = f"{self.image_size}-{self.crop}-{self.crop_margin}-{int(self.with_masks)}"
        return fingerprint + (f"-fg{self.foreground}" if self.foreground else "")

    def slices(self, records: Sequence[ImageRecord]) -> tuple[Any, ...]:
        paths = [r.path for r in records]
        labels = [self.class_names.index(r.label) for r in records]
        masks = [r.mask_path or "" for r in records]
        return (
            tf.constant(paths, tf.string),
            tf.constant(labels, tf.int32),
            tf.constant(masks, tf.string),
        )

    def __call__(self, path: tf.Tensor, label: tf.Tensor, mask_path: tf.Tensor) -> tuple:
        image = decode_image(path, native=self.native)
        size = self.image_size
        if self.with_masks:
            mask = tf.cond(
                tf.strings.length(mask_path) > 0,
                lambda: decode_mask(mask_path),
                lambda: tf.zeros(tf.concat([tf.shape(image)[:2], [1]], 0), tf.float32),
            )
            image, mask = self._crop_resize_pair(image, mask)
            mask = tf.cast(mask > 0.5, tf.uint8)
            mask.set_shape([size, size, 1])
        else:
            image = self._crop_resize(image)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        image.set_shape([size, size, 3])
        out = (image, tf.one_hot(label, len(self.class_names), dtype=tf.float32))
        if self.with_masks:
            out = (*out, mask)
        if self.foreground:
            out = (*out, self._foreground(image))
        return out

    def _foreground(self, image: tf.Tensor) -> tf.Tensor:
        """uint8 ``[S, S, 1]``: ``crop.FOREGROUND_MASKS`` of the final uint8 image."""
        from kidney_tf.data.crop import FOREGROUND_MASKS

        find = FOREGROUND_MASKS[self.foreground]

        def run(pixels: np.ndarray) -> np.ndarray:
            return find(pixels).astype(np.uint8)[..., None]

        mask = tf.numpy_function(run, [image], tf.uint8, stateful=False)
        mask.set_shape([self.image_size, self.image_size, 1])
        return mask

    def _crop_resize(self, image: tf.Tensor) -> tf.Tensor:
        """The paper's crop (which resizes) or a plain resize; float32 0..255."""
        return crop_resize(
            image, self.image_size, self.crop, margin=self.crop_margin, backend=self.crop_backend
        )

    def _crop_resize_pair(self, image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Image as :meth:`_crop_resize`; the mask cut with the SAME box, nearest-resized."""
        return crop_resize(
            image,
            self.image_size,
            self.crop,
            margin=self.crop_margin,
            backend=self.crop_backend,
            mask=mask,
        )


def decode_image(path: tf.Tensor, *, native: bool = True) -> tf.Tensor:
    """Read and decode one image file to uint8 ``[H, W, 3]`` inside the graph.

    ``native=False`` routes through ``reading.read_image`` (TIFF, DICOM); otherwise the bytes go
    through ``decode_image_bytes``, the one in-graph decoder (the serving signatures use it too).
    """
    if not native:
        image = tf.numpy_function(_read_image_np, [path], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return image
    return decode_image_bytes(tf.io.read_file(path))


def decode_image_bytes(data: tf.Tensor, *, working_side: int = JPEG_WORKING_SIDE) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 ``[H, W, 3]``, like ``reading.read_image``.

    - Gray is tiled to RGB; an alpha channel is composited on black (as ``read_image`` does).
    - PNGs are decoded at 16 bits and scaled by 1/257 with rounding, so 16-bit scans map like
      ``read_image`` (``round(v * 255 / 65535)``) and 8-bit PNGs are exact.
    - JPEGs use the accurate integer IDCT, so the pixels equal ``read_image``'s (PIL) and OpenCV's.
    - Memory stays bounded: a JPEG whose shorter side exceeds ``2 * working_side`` is decoded at
      1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), keeping the shorter side >= ``working_side``
      — far above any model input — so a 10,000 x 10,000 scan costs ~5 MB, not ~1.5 GB.
    """
    is_png = tf.equal(tf.strings.substr(data, 0, 4), _PNG_MAGIC)
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8")
    image = tf.case(
        [
            (is_png, lambda: _png_to_uint8(tf.io.decode_png(data, channels=0, dtype=tf.uint16))),
            (is_jpeg, lambda: _decode_jpeg_bounded(data, working_side)),
        ],
        default=lambda: tf.io.decode_image(
            data, channels=3, expand_animations=False, dtype=tf.uint8
        ),
        exclusive=False,
    )
    image.set_shape([None, None, 3])
    return image


def _decode_jpeg_bounded(data: tf.Tensor, working_side: int) -> tf.Tensor:
    shape = tf.image.extract_jpeg_shape(data)
    shorter = tf.minimum(shape[0], shape[1])
    # Largest of 1, 2, 4, 8 that keeps the shorter side >= working_side.
    index = tf.reduce_sum(
        tf.cast(shorter // tf.constant([2, 4, 8], tf.int32) >= working_side, tf.int32)
    )
    # INTEGER_ACCURATE is libjpeg's default (JDCT_ISLOW), the IDCT PIL and OpenCV use;
    # TensorFlow's own default is INTEGER_FAST, up to 34 grey levels off on the real CT JPEGs.
    branches = [
        (lambda r=ratio: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method=JPEG_DCT))
        for ratio in (1, 2, 4, 8)
    ]
    return tf.switch_case(index, branches)


def _png_to_uint8(image16: tf.Tensor) -> tf.Tensor:
    """uint16 PNG pixels with 1-4 channels (8-bit PNGs arrive x257) -> uint8 RGB 0..255."""
    pixels = tf.cast(image16, tf.float32)
    channels = tf.shape(pixels)[-1]
    color = tf.cond(
        channels < 3, lambda: tf.tile(pixels[..., :1], [1, 1, 3]), lambda: pixels[..., :3]
    )
    has_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))
    alpha = tf.cond(
        has_alpha, lambda: pixels[..., -1:] / 65535.0, lambda: tf.ones_like(pixels[..., :1])
    )
    scaled = tf.math.round(color * alpha / 257.0)
    return tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8)


def _read_image_np(path: bytes) -> np.ndarray:
    return reading.read_image(path.decode("utf-8"))


def decode_mask(path: tf.Tensor) -> tf.Tensor:
    """Read a mask with ``reading.read_mask`` (its foreground rules) -> float32 ``[H, W, 1]``."""
    mask = tf.numpy_function(_read_mask_np, [path], tf.float32, stateful=False)
    mask.set_shape([None, None, 1])
    return mask


def _read_mask_np(path: bytes) -> np.ndarray:
    return reading.read_mask(path.decode("utf-8")).astype(np.float32)[..., None]


# --------------------------------------------------------------------------------------------
# Dataset assembly
# --------------------------------------------------------------------------------------------


def _augment_config(augment: Any, seed: int) -> AugmentConfig | None:
    if augment is False or augment is None:
        return None
    if augment is True:
        config = AugmentConfig(seed=seed)
    elif isinstance(augment, AugmentConfig):
        config = augment
    elif isinstance(augment, Mapping):
        config = AugmentConfig.from_dict(augment)
    else:
        raise TypeError(
            f"augment must be bool, AugmentConfig or dict, got {type(augment).__name__}"
        )
    if config.seed is None:
        config = dataclasses.replace(config, seed=seed)
    return config


def _cache_target(
    cache: bool | str | os.PathLike, split: str, records: Sequence[ImageRecord], loader: _Loader
) -> str | None:
    """None (no cache), "" (memory) or a file prefix unique to the split, files and settings."""
    if cache is False or cache is None:
        return None
    if cache is True:
        return ""
    digest = hashlib.sha1(loader.fingerprint().encode())
    for r in records:
        digest.update(f"{r.path}|{r.label}|{r.mask_path or ''}\n".encode())
    target = Path(cache)
    if target.is_dir():
        target = target / "cache"
    target.parent.mkdir(parents=True, exist_ok=True)
    return f"{target}-{split}-{digest.hexdigest()[:12]}"


def _make_dataset(
    records: Sequence[ImageRecord],
    loader: _Loader,
    *,
    batch_size: int,
    shuffle: bool,
    shuffle_buffer: int | None,
    augmenter: Any,
    cache: str | None,
    seed: int,
    deterministic: bool | None,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None,
    mixer: Any = None,
) -> tf.data.Dataset:
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(loader.slices(records))
    ds = ds.map(loader, num_parallel_calls=autotune, deterministic=deterministic)
    if cache is not None:
        ds = ds.cache(cache)
    if shuffle:
        buffer = shuffle_buffer or len(records)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, num_parallel_calls=autotune, deterministic=deterministic)

    with_masks, foreground, as_dict = loader.with_masks, loader.foreground, loader.as_dict

    def finish(images: tf.Tensor, labels: tf.Tensor, *masks: tf.Tensor) -> tuple:
        images = tf.cast(images, tf.float32)
        # lesion mask and/or foreground, stacked so augmentation moves them with the image
        stacked = tf.concat([tf.cast(m, tf.float32) for m in masks], -1) if masks else None
        if augmenter is not None:
            if stacked is not None:
                images, stacked = augmenter(images, masks=stacked, training=True)
            else:
                images = augmenter(images, training=True)
        if mixer is not None:
            images, labels = mixer(images, labels)
        if preprocess is not None:
            images = preprocess(images)
        if not as_dict:
            return (images, labels, stacked) if with_masks else (images, labels)
        x = {IMAGE_KEY: images}
        if with_masks:
            x[LESION_KEY] = stacked[..., :1]
        if foreground:
            x[FOREGROUND_KEY] = stacked[..., -1:]
        return x, labels

    # Keras random layers draw from one seed-generator state: parallel calls would race for it
    # and the same seed would not give the same batches. Sequential unless told otherwise.
    randomised = augmenter is not None or mixer is not None
    parallel = autotune if (not randomised or deterministic is False) else None
    ds = ds.map(finish, num_parallel_calls=parallel, deterministic=deterministic)
    options = tf.data.Options()
    if deterministic is not None:
        options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    return ds.prefetch(autotune)
