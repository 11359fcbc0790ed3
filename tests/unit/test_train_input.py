"""The Trainer's streaming input (components/training/train_input.py) on small synthetic TFRecord shards.

Each record carries its own id (in the label feature), so the tests can say exactly which rows
went where and in what order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.training import train_input
from components.training.trainer import training_rows

IMAGE, LABEL = "image", "label"
SPEC = {IMAGE: tf.io.FixedLenFeature([2], tf.float32), LABEL: tf.io.FixedLenFeature([], tf.int64)}


def write_shards(directory: Path, sizes: list[int]) -> list[str]:
    """Gzipped TFRecord shards; row ids run 0..sum(sizes)-1 across the shards in order."""
    directory.mkdir(parents=True, exist_ok=True)
    files, next_id = [], 0
    for s, size in enumerate(sizes):
        path = str(directory / f"transformed_examples-{s:05d}-of-{len(sizes):05d}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as w:
            for _ in range(size):
                w.write(tf.train.Example(features=tf.train.Features(feature={
                    IMAGE: tf.train.Feature(float_list=tf.train.FloatList(value=[next_id, -next_id])),
                    LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[next_id])),
                })).SerializeToString())
                next_id += 1
        files.append(path)
    return files


def ids(ds: tf.data.Dataset) -> list[int]:
    """Row ids of a dataset of (image, label) pairs or batches, in order."""
    out: list[int] = []
    for _, label in ds.as_numpy_iterator():
        out.extend(np.atleast_1d(label).tolist())
    return out


def settings(**kw) -> train_input.InputSettings:
    return train_input.InputSettings(**{"batch_size": 8, "validation_every": 10, "seed": 3, **kw})


def test_validation_is_every_kth_row_of_each_shard_whatever_the_read_order(tmp_path):
    sizes = [23, 40, 7, 31, 12]
    files = write_shards(tmp_path, sizes)
    starts = np.cumsum([0] + sizes[:-1])
    expected_val = {int(start + i) for start, n in zip(starts, sizes) for i in range(9, n, 10)}
    s = settings(read_parallelism=5)
    val = train_input.parse(train_input.read_split(files, s, validation=True, shuffle_shards=True),
                            SPEC, IMAGE, LABEL)
    train = train_input.parse(train_input.read_split(files, s, validation=False, shuffle_shards=True),
                              SPEC, IMAGE, LABEL)
    epochs = [ids(train) for _ in range(4)]
    assert set(ids(val)) == expected_val
    for order in epochs:
        assert sorted(order) == sorted(set(range(sum(sizes))) - expected_val)
    # Shards are interleaved and their order reshuffled per epoch (5 shards: 120 orders, so four
    # epochs all alike would mean no reshuffling); the split never changes.
    assert len({tuple(order) for order in epochs}) > 1


def test_one_shard_gives_the_old_split_and_exact_sizes(tmp_path):
    files = write_shards(tmp_path, [95])
    s = settings()
    val = ids(train_input.parse(train_input.read_split(files, s, True, False), SPEC, IMAGE, LABEL))
    assert val == list(range(9, 95, 10))
    assert train_input.count_records(files) == 95
    assert train_input.split_sizes(95, 10) == (95 - len(val), len(val))


def test_training_rows_prefers_the_statistics_count_over_a_pass(tmp_path):
    files = write_shards(tmp_path, [30, 30])
    s = settings()
    assert training_rows(0, files, s) == (54, 6)
    # A count from the statistics is used as given: no pass over the files (they may be gone).
    assert training_rows(1000, [str(tmp_path / "missing.gz")], s) == (900, 100)


def test_each_epoch_sees_every_training_row_once_in_a_new_order(tmp_path):
    files = write_shards(tmp_path, [50, 50, 50])
    s = settings()
    ds = train_input.training_dataset(files, SPEC, IMAGE, LABEL, rows=135, settings=s, global_batch=8)
    one, two = ids(ds), ids(ds)
    expected = sorted(i for i in range(150) if i % 50 % 10 != 9)
    assert sorted(one) == sorted(two) == expected
    assert one != two


def test_shuffle_buffer_is_bounded(tmp_path):
    """With a buffer of b, the p-th example out is one of the first p + b in: never the whole split."""
    files = write_shards(tmp_path, [200])
    s = settings(shuffle_buffer=5)
    order = ids(train_input.training_dataset(files, SPEC, IMAGE, LABEL, rows=180, settings=s, global_batch=8))
    training_order = [i for i in range(200) if i % 10 != 9]
    position = {row: p for p, row in enumerate(training_order)}
    assert max(position[row] - p for p, row in enumerate(order)) < 5
    assert order != training_order


@pytest.mark.parametrize("cache_max_mb, cached", [(1.0, True), (0.0, False)])
def test_cache_only_when_the_split_fits(tmp_path, cache_max_mb, cached):
    files = write_shards(tmp_path, [40, 40])
    s = settings(cache_max_mb=cache_max_mb)
    ds = train_input.training_dataset(files, SPEC, IMAGE, LABEL, rows=72, settings=s, global_batch=8)
    assert len(ids(ds)) == 72
    for f in files:  # a cached split no longer needs its files; a streamed one reads them again
        Path(f).unlink()
    if cached:
        assert len(ids(ds)) == 72
    else:
        with pytest.raises(tf.errors.NotFoundError):
            ids(ds)


def test_cache_size_estimate_uses_the_parsed_feature_sizes():
    image_spec = {IMAGE: tf.io.FixedLenFeature([28, 28, 1], tf.float32), LABEL: tf.io.FixedLenFeature([], tf.int64)}
    per_example = train_input.example_bytes(image_spec, (IMAGE, LABEL))
    assert per_example == 784 * 4 + 8
    s = train_input.InputSettings(cache_max_mb=1024)
    assert train_input.fits_in_cache(54_000, per_example, s)          # Fashion-MNIST: cached as before
    assert not train_input.fits_in_cache(540_000, per_example, s)     # 10x: streamed


def test_trainer_reads_the_split_size_from_tfdv_statistics(tmp_path):
    """The optional `statistics` input of the Trainer: TFDV's num_examples of the training split."""
    from tensorflow_metadata.proto.v0 import statistics_pb2
    from tfx import v1 as tfx
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components.custom_components import train_examples

    for split, n in (("train", 61_234), ("test", 10_000)):
        (tmp_path / f"Split-{split}").mkdir()
        stats = statistics_pb2.DatasetFeatureStatisticsList(
            datasets=[statistics_pb2.DatasetFeatureStatistics(num_examples=n)])
        # StatisticsGen's layout: Split-<name>/FeatureStats.pb, a serialized DatasetFeatureStatisticsList.
        (tmp_path / f"Split-{split}" / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path)
    artifact.split_names = '["train", "test"]'
    train_args = proto_utils.proto_to_json(tfx.proto.TrainArgs(splits=["train"]))
    assert train_examples([artifact], train_args) == 61_234
    assert train_examples([], train_args) is None
