"""The Trainer's input: Transform's TFRecord shards streamed, so memory does not grow with the data.

What the previous input did, and why it stopped scaling: it cached the whole training split in
memory, counted it with a full pass, and shuffled with a buffer as large as the split, so the
Trainer held the data set two to three times over. Here:

* shards are read interleaved (several files at once, in parallel), their order shuffled every
  epoch (shard-level shuffling), then examples pass through a bounded shuffle buffer
  (`shuffle_buffer` examples; the whole split when it is smaller, which is the old behaviour);
* the validation split is every k-th record of each shard, by position inside the shard: the same
  rows on every run and every epoch, whatever order the shards are read in, and no counting pass
  (with one shard, as Transform writes at Fashion-MNIST's size, exactly the old split);
* the parsed split is cached in memory only when its estimated size fits `cache_max_mb`;
* steps per epoch come from the number of records: the statistics' `num_examples` when the
  pipeline passes it (TrainingConfig.train_examples), else a streaming record count that
  holds nothing (decompression only, no parsing). Keras runs each epoch to the end of the data, so
  the count only sizes the learning-rate schedule and a few rows off would not matter.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

import tensorflow as tf

from components.training.training_config import TrainingConfig

log = logging.getLogger(__name__)

PARSE_BATCH = 1024
MB = 1024 ** 2


@dataclasses.dataclass(frozen=True)
class InputSettings:
    """How the training split is read; derived from the TrainingConfig (its defaults are those)."""
    batch_size: int = TrainingConfig.batch_size
    validation_every: int = 10        # every k-th record of a shard is validation
    shuffle_buffer: int = TrainingConfig.shuffle_buffer
    cache_max_mb: float = TrainingConfig.cache_max_mb
    seed: int = TrainingConfig.seed
    read_parallelism: int = 4         # shards read at once

    @classmethod
    def from_training(cls, config: TrainingConfig) -> "InputSettings":
        return cls(batch_size=config.batch_size,
                   validation_every=max(2, round(1.0 / config.validation_fraction)),
                   shuffle_buffer=config.shuffle_buffer, cache_max_mb=float(config.cache_max_mb),
                   seed=config.seed)


def shard_files(patterns: list[str]) -> list[str]:
    """Every file the patterns match, sorted (the order shards are numbered in)."""
    files: list[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {patterns}")
    return files


def _records(path: tf.Tensor) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(path, compression_type="GZIP", buffer_size=MB)


def count_records(files: list[str], parallelism: int = 4) -> int:
    """Number of records in the shards: one streaming pass, nothing parsed, nothing kept."""
    sizes = tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: _records(f).batch(8192).map(lambda b: tf.size(b, out_type=tf.int64)),
        cycle_length=min(len(files), parallelism), num_parallel_calls=tf.data.AUTOTUNE)
    return int(sizes.reduce(tf.constant(0, tf.int64), lambda n, s: n + s).numpy())


def split_sizes(total: int, every: int) -> tuple[int, int]:
    """(training, validation) rows for `total` records when every k-th goes to validation.

    Exact for one shard; with S shards the validation count is off by less than S in total."""
    return total - total // every, total // every


def _one_split(shard: tf.Tensor, every: int, validation: bool) -> tf.data.Dataset:
    """The shard's validation rows (index % k == k-1) or the others, by position in the shard."""
    keep = (lambda i, _: tf.equal(i % every, every - 1)) if validation else \
        (lambda i, _: tf.not_equal(i % every, every - 1))
    return _records(shard).enumerate().filter(keep).map(lambda i, record: record)


def read_split(files: list[str], settings: InputSettings, validation: bool,
               shuffle_shards: bool) -> tf.data.Dataset:
    """Serialized records of one side of the split, shards interleaved (order reshuffled per epoch)."""
    shards = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_shards and len(files) > 1:
        shards = shards.shuffle(len(files), seed=settings.seed, reshuffle_each_iteration=True)
    def read(shard: tf.Tensor) -> tf.data.Dataset:
        return _one_split(shard, settings.validation_every, validation)

    if len(files) == 1:
        return shards.flat_map(read)
    # Deterministic: the same seed gives the same order (parallel reads, fixed interleaving).
    return shards.interleave(read, cycle_length=min(len(files), settings.read_parallelism), block_length=1,
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def parse(records: tf.data.Dataset, feature_spec: Mapping[str, Any], image_key: str,
          label_key: str) -> tf.data.Dataset:
    """Unbatched (image, label) pairs; records are parsed in batches (much faster than one by one)."""
    spec = {image_key: feature_spec[image_key], label_key: feature_spec[label_key]}

    def parse_batch(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features = tf.io.parse_example(batch, spec)
        return features[image_key], tf.reshape(features[label_key], [-1])

    return records.batch(PARSE_BATCH).map(parse_batch, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def example_bytes(feature_spec: Mapping[str, Any], keys: tuple[str, ...]) -> int:
    """Bytes one parsed example takes in memory (fixed-length features; 8 bytes per value)."""
    total = 0
    for key in keys:
        spec = feature_spec[key]
        values = 1
        for dim in getattr(spec, "shape", []) or []:
            values *= int(dim)
        total += values * max(spec.dtype.size, 1)
    return max(total, 1)


def fits_in_cache(rows: int, bytes_per_example: int, settings: InputSettings) -> bool:
    return rows * bytes_per_example <= settings.cache_max_mb * MB


def training_dataset(files: list[str], feature_spec: Mapping[str, Any], image_key: str, label_key: str,
                     rows: int, settings: InputSettings, global_batch: int) -> tf.data.Dataset:
    """Shuffled (image, label) batches of the training side, one pass per epoch."""
    ds = parse(read_split(files, settings, validation=False, shuffle_shards=True),
               feature_spec, image_key, label_key)
    per_example = example_bytes(feature_spec, (image_key, label_key))
    cached = fits_in_cache(rows, per_example, settings)
    if cached:
        ds = ds.cache()
    buffer = max(1, min(rows, settings.shuffle_buffer))
    log.info("training input: %d shard(s), ~%d rows (%.0f MB parsed), %s, shuffle buffer %d",
             len(files), rows, rows * per_example / MB,
             "cached in memory" if cached else f"streamed (over cache_max_mb={settings.cache_max_mb:g})",
             buffer)
    return (ds.shuffle(buffer, seed=settings.seed, reshuffle_each_iteration=True)
            .batch(global_batch).prefetch(tf.data.AUTOTUNE))


def validation_dataset(files: list[str], feature_spec: Mapping[str, Any], image_key: str, label_key: str,
                       rows: int, settings: InputSettings) -> tf.data.Dataset:
    """(image, label) batches of the validation side, in file order, cached when it fits."""
    ds = parse(read_split(files, settings, validation=True, shuffle_shards=False),
               feature_spec, image_key, label_key).batch(PARSE_BATCH)
    if fits_in_cache(rows, example_bytes(feature_spec, (image_key, label_key)), settings):
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)
