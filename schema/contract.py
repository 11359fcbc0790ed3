"""The project's contract: every name two layers must agree on, in one module at the bottom.

Feature keys, class names, split names, signature and output names, component ids, artifact file
names and metric names. Everything in the project may import this module; it imports nothing of the
project (and no TensorFlow), so the CLI, the schema generator and the pipeline all read the same
names without TensorFlow's start-up cost. tests/unit/test_layers.py enforces that direction.

A new feature, signature, component or metric name goes here first; the code that produces it
and the code that reads it both import it from here.
"""
from __future__ import annotations

# --- Features --------------------------------------------------------------------------------------
LABEL_KEY = "label"
IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
# Kaggle's CSV header: label,pixel1,...,pixel784 (1-based, row-major).
PIXEL_KEYS: tuple[str, ...] = tuple(f"pixel{i}" for i in range(1, NUM_PIXELS + 1))
CSV_COLUMNS: tuple[str, ...] = (LABEL_KEY, *PIXEL_KEYS)

# In the Examples artifact (ExampleGen's output) an image is one int64 feature of 784 values,
# row-major, 0..255: one feature instead of 784 keeps statistics, validation and Transform fast.
RAW_PIXELS_KEY = "pixels"

# Output of Transform: one flat float image in [0, 1]; the model reshapes it to [28, 28, 1].
IMAGE_KEY = "image"
TRANSFORMED_LABEL_KEY = "label"

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)

# Served-traffic features the monitor adds per image (SERVING environment of the schema; computed by
# pipeline/monitoring/image_measures.py).
MEAN_BRIGHTNESS = "mean_brightness"      # FLOAT: mean grey value of the image, 0..255
LIGHT_BACKGROUND = "light_background"    # INT 0/1: the border is mostly light (a photo on a light table)
NEAR_EMPTY = "near_empty"                # INT 0/1: almost no ink (a crop that missed the garment)
CENTRE_OFFSET = "centre_offset"          # FLOAT: distance of the ink's centre of mass from the image centre, px
PREDICTED_LABEL = "predicted_label"      # INT 0..9: the class the served model answered
MEASURES: tuple[str, ...] = (MEAN_BRIGHTNESS, LIGHT_BACKGROUND, NEAR_EMPTY, CENTRE_OFFSET)

# --- Splits ----------------------------------------------------------------------------------------
TRAIN_SPLIT, TEST_SPLIT = "train", "test"
HOLDOUT_SPLIT = "holdout"    # span mode: the fixed holdout every model is also evaluated on

# --- Span layout (continuous training) --------------------------------------------------------------
# A span is a directory `span-<N>` (N a decimal number, at most 18 digits so it fits an int64 span
# property), in the data root (ExampleGen's driver reads the newest) and in the span store
# (components/spans.py writes it, pipeline/watch.py reads it); SPAN_MARKER is written last in a
# stored span, so a span without it is incomplete.
SPAN_DIR_PREFIX = "span-"
SPAN_MARKER = "span.json"


def span_number(dir_name: str) -> int | None:
    """N of a `span-<N>` directory name (a trailing '/' allowed, as object stores list them), else
    None: the one parse of the span layout, used wherever spans are discovered."""
    digits = dir_name.rstrip("/").removeprefix(SPAN_DIR_PREFIX)
    if digits == dir_name.rstrip("/") or not (1 <= len(digits) <= 18 and digits.isascii() and digits.isdigit()):
        return None
    return int(digits)


# --- Serving signatures (components/training/export.py writes them; clients and the Evaluator call them) ------
PREDICT_SIGNATURE = "serving_default"            # serialized tf.Examples, one int64 feature per CSV pixel column
IMAGES_SIGNATURE = "serving_images"              # float32 images [N, 28, 28] in 0..255
IMAGES_UINT8_SIGNATURE = "serving_images_uint8"  # uint8 images [N, 28, 28]
EVAL_SIGNATURE = "serving_pixels_examples"       # tf.Examples in the Examples artifact's layout (Evaluator)
CLASSIFY_SIGNATURE = "classification"            # TF Serving's Classify layout
SIGNATURES: tuple[str, ...] = (PREDICT_SIGNATURE, IMAGES_SIGNATURE, IMAGES_UINT8_SIGNATURE, EVAL_SIGNATURE,
                               CLASSIFY_SIGNATURE)
EXAMPLES_INPUT = "examples"
IMAGES_INPUT = "images"
CLASSIFY_INPUT = "inputs"                        # tf.saved_model.CLASSIFY_INPUTS
PROBABILITIES_OUTPUT = "probabilities"           # [N, 10] float; also the model's output layer's name
CLASS_ID_OUTPUT = "class_id"                     # [N] int64
CLASS_NAME_OUTPUT = "class_name"                 # [N] string

# --- What every model provides (components/models/registry.py checks them when a model is built) -----
# Besides these: the input is IMAGE_KEY, [N, 28, 28, 1] in [0, 1] (the registry makes it), and the
# output layer is named PROBABILITIES_OUTPUT, [N, NUM_CLASSES] probabilities (export.py serves it).
EMBEDDING_LAYER = "embedding"                    # the penultimate features; the TensorBoard projector reads it
# Keras's name of the compiled accuracy metric (components/models/compile.py): the training history
# and the report's curves use it, early stopping watches "val_" + it.
TRAINING_ACCURACY_METRIC = "accuracy"

# --- Component ids (the node names in the DAG, ML Metadata and Kubeflow) ---------------------------
EXAMPLE_GEN = "ExampleGen"                      # whichever source config.data_format names (pipeline/sources/)
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
VALIDATION_GATE = "ValidationGate"
TRANSFORM = "Transform"
TRAINER = "Trainer"
BASELINE = "ServedModelBaseline"
EVALUATOR = "Evaluator"
INFRA_VALIDATOR = "InfraValidator"
PUSHER = "AtomicPusher"
RUN_REPORT = "RunReport"
TUNER = "Tuner"                                  # only with `--set tune=true` (components/training/tuner.py)
COMPONENT_IDS: tuple[str, ...] = (EXAMPLE_GEN, STATISTICS_GEN, SCHEMA_GEN, EXAMPLE_VALIDATOR, VALIDATION_GATE,
                                  TRANSFORM, TRAINER, BASELINE, EVALUATOR, INFRA_VALIDATOR, PUSHER, RUN_REPORT)
# Continuous training (span mode, components/spans.py) adds these three.
HOLDOUT_EXAMPLE_GEN = "HoldoutExampleGen"
SPAN_DRIFT = "SpanDrift"
SPAN_WINDOW = "SpanWindow"
SPAN_COMPONENT_IDS: tuple[str, ...] = (HOLDOUT_EXAMPLE_GEN, SPAN_DRIFT, SPAN_WINDOW)

# --- Artifact file and property names ---------------------------------------------------------------
SCHEMA_FILE = "schema.pbtxt"
HISTORY_FILE = "history.json"                    # Trainer: Keras history, in the ModelRun artifact
TRAINING_CONFIG_FILE = "training_config.json"    # Trainer: the config trained with (tuned values applied), ditto
DATA_REPORT_FILE = "data_input.json"             # ExampleGen: what was read, in the Examples artifact
DATA_REPORT_PROPERTY = "data_input"              # ... and the same as an MLMD custom property
REPORT_FILE = "index.html"                       # RunReport's page
SAVED_MODEL_FILE = "saved_model.pb"

# --- How the model is served -------------------------------------------------------------------------
# TF Serving's thread flags for this model, wherever a server is started for it (`fmnist serve`, the
# Kubernetes manifests, the InfraValidator).
# * --tensorflow_intra_op_parallelism=1: one thread per op. With TensorFlow's default pools a one-image
#   request waits for sleeping threads to be woken op by op, so a model call takes longer than with one
#   thread; concurrent requests still use every core, and 8 clients get more images/s at batch 1 and 64
#   alike (BENCHMARKS.md, "Serving", issue 12).
# * --tensorflow_inter_op_parallelism=-1: the Session runs a call's ops in the calling thread (the gRPC
#   or batch thread) instead of handing each one to the inter-op pool (tensorflow/core/common_runtime/
#   direct_session.cc: inter_op_parallelism_threads < 0 sets run_in_caller_thread_; TF Serving's
#   server.cc passes both flags to the session config when either is > 0). That saves ~0.1 ms of a
#   one-image call, which brings gRPC within 1.2x of the in-process call (BENCHMARKS.md, issue 30).
#   Fit for graphs without ops that block on other ops (this model's); others pass 0.
SERVING_INTRA_OP_THREADS = 1
SERVING_INTER_OP_THREADS = -1
SERVING_THREAD_FLAGS = (f"--tensorflow_intra_op_parallelism={SERVING_INTRA_OP_THREADS}",
                        f"--tensorflow_inter_op_parallelism={SERVING_INTER_OP_THREADS}")

# --- Metric names (TFMA's names for the EvalConfig's metrics) ---------------------------------------
ACCURACY_METRIC = "sparse_categorical_accuracy"
EXAMPLE_COUNT_METRIC = "example_count"
# PairedOutcomes (components/paired_metric.py): rows the candidate and the served model get right,
# counted per slice on the candidate; components/decision.py tests them.
PAIRED_BOTH_RIGHT_METRIC = "paired_both_right"
PAIRED_ONLY_CANDIDATE_METRIC = "paired_only_candidate_right"
PAIRED_ONLY_SERVED_METRIC = "paired_only_served_right"
PAIRED_BOTH_WRONG_METRIC = "paired_both_wrong"
DECISION_FILE = "decision.json"                  # Evaluator: the paired decision, in the blessing artifact

# --- Distributed training launchers ------------------------------------------------------------------
# Keys a Trainer's custom_config may carry for the launcher that starts its replicas, not for run_fn:
# TFX's Vertex training extension's (tfx/extensions/google_cloud_ai_platform: constants.py and
# trainer/executor.py) and the TFJob launcher's (kubeflow/tfjob.py). run_fn's TrainingConfig ignores
# exactly these and refuses any other unknown key.
TFJOB_CONFIG_KEY = "fmnist_tfjob"
VERTEX_LAUNCHER_KEYS: tuple[str, ...] = (
    "ai_platform_training_args", "ai_platform_training_job_id", "ai_platform_training_labels",
    "ai_platform_enable_vertex", "ai_platform_vertex_region", "ai_platform_training_enable_ucaip",
    "ai_platform_training_ucaip_region")
LAUNCHER_KEYS: tuple[str, ...] = (TFJOB_CONFIG_KEY, *VERTEX_LAUNCHER_KEYS)
