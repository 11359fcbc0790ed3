"""The atomic push: a version directory appears whole, after a load check, or not at all."""
import os

import pytest
import tensorflow as tf

from components import pusher


class _Doubler(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return {"y": 2 * x}


@pytest.fixture
def saved_model(tmp_path):
    path = str(tmp_path / "model")
    m = _Doubler()
    tf.saved_model.save(m, path, signatures={"serving_default": m.__call__.get_concrete_function()})
    return path


def test_push_creates_increasing_integer_versions(tmp_path, saved_model):
    base = str(tmp_path / "serving" / "m")
    first = pusher.push_atomically(saved_model, base)
    second = pusher.push_atomically(saved_model, base)
    assert int(os.path.basename(second)) > int(os.path.basename(first))
    assert sorted(os.listdir(base)) == sorted([os.path.basename(first), os.path.basename(second)])
    loaded = tf.saved_model.load(second)
    assert loaded.signatures["serving_default"](tf.constant([1.5]))["y"].numpy().tolist() == [3.0]


def test_next_version_is_newer_than_any_existing(tmp_path):
    base = tmp_path / "m"
    (base / "9999999999").mkdir(parents=True)
    (base / ".staging-1-1").mkdir()
    assert pusher.next_version(str(base), now=100) == 10000000000
    assert pusher.existing_versions(str(base)) == [9999999999]


def test_a_model_that_does_not_load_is_never_published(tmp_path, saved_model):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    base = tmp_path / "serving"
    with pytest.raises(Exception):
        pusher.push_atomically(str(broken), str(base))
    assert os.listdir(base) == []  # no version, no staging leftovers


def test_a_model_without_serving_default_is_refused(tmp_path):
    path = str(tmp_path / "nosig")
    tf.saved_model.save(tf.Module(), path)
    with pytest.raises(RuntimeError, match="serving_default"):
        pusher.push_atomically(path, str(tmp_path / "serving"))
