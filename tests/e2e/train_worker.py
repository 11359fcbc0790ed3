"""One Trainer worker for the distributed-training tests: TFX's real run_fn on the sample's
transformed examples.

    train_worker.py TRANSFORMED_EXAMPLES TRANSFORM_GRAPH SERVING_DIR RUN_DIR [LOGICAL_CPUS]

With TF_CONFIG set it is one worker of a MultiWorkerMirroredStrategy cluster. With LOGICAL_CPUS=N
the CPU is split into N logical devices and the Trainer mirrors over them
(FMNIST_MIRRORED_DEVICES): the multi-GPU code path, run without a GPU.
"""
import logging
import os
import sys

import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from components.training.trainer import run_fn

EPOCHS = 8   # the sample preset's; at 2 the accuracy of one run varies by several points


def custom_config() -> dict:
    """The Trainer's settings in the distributed tests: a small model, so an epoch takes a second."""
    return {"epochs": EPOCHS, "batch_size": 64, "cnn": {"conv_filters": [8, 16], "dense_units": 32},
            "projector_examples": 100}


def main(examples: str, graph: str, serving_dir: str, run_dir: str, logical_cpus: int = 0) -> None:
    # force: TensorFlow's absl has put its handler on the root logger by now.
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s", force=True)
    if logical_cpus:
        # Logical devices must be configured before TensorFlow initialises its runtime (first op).
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        os.environ["FMNIST_MIRRORED_DEVICES"] = ",".join(f"/cpu:{i}" for i in range(logical_cpus))
    run_fn(FnArgs(
        train_files=[os.path.join(examples, "Split-train", "*")],
        eval_files=[os.path.join(examples, "Split-test", "*")],
        transform_output=graph, serving_model_dir=serving_dir, model_run_dir=run_dir,
        custom_config=custom_config()))
    print("worker done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5], *(int(n) for n in sys.argv[5:6]))
