"""The Trainer's multi-device (GPU) path on two logical CPU devices: TFX's run_fn under
MirroredStrategy, as a Kubeflow GPU node with two GPUs would run it.

    mirrored_train.py TRANSFORMED_EXAMPLES TRANSFORM_GRAPH SERVING_DIR RUN_DIR
"""
import logging
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ["FMNIST_MIRRORED_DEVICES"] = "/cpu:0,/cpu:1"
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")

import tensorflow as tf  # noqa: E402

# Two logical devices must be configured before TensorFlow initialises its runtime.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402

from components.trainer import run_fn  # noqa: E402

examples, graph, serving_dir, run_dir = sys.argv[1:5]
run_fn(FnArgs(
    train_files=[os.path.join(examples, "Split-train", "*")],
    eval_files=[os.path.join(examples, "Split-test", "*")],
    transform_output=graph, serving_model_dir=serving_dir, model_run_dir=run_dir,
    custom_config={"epochs": 2, "batch_size": 64, "conv_filters": [8, 16], "dense_units": 32,
                   "projector_examples": 100}))
print("mirrored training done", flush=True)
