"""RunReport: the TFX component that writes the HTML run report (components/report.py).

It runs after the Evaluator whatever the blessing, so a rejected model gets a report too.
"""
import json
import os

from tfx import v1 as tfx
from tfx.types import artifact, artifact_utils

from components import report
from schema.contract import (
    CLASS_ID_OUTPUT,
    DATA_REPORT_FILE,
    EVAL_SIGNATURE,
    EXAMPLES_INPUT,
    HISTORY_FILE,
    LABEL_KEY,
    NUM_PIXELS,
    RAW_PIXELS_KEY,
    TEST_SPLIT,
)


class RunReportArtifact(artifact.Artifact):
    """A directory with index.html, PNG plots and per_class.json.

    The type name is an import path on purpose: TFX's Kubeflow v2 entrypoint rebuilds a custom
    artifact type by importing its schema title as a class path
    (kubeflow_v2_entrypoint_utils._retrieve_class_path), and its compiler only takes `module.Class`
    titles; `components` re-exports this class under that name (components/__init__.py).
    """
    TYPE_NAME = "components.RunReportArtifact"


def _test_split(examples: tfx.types.standard_artifacts.Examples, split: str):
    import numpy as np
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
    spec = {LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
            RAW_PIXELS_KEY: tf.io.FixedLenFeature([NUM_PIXELS], tf.int64)}
    serialized, labels, pixels = [], [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(2048):
        parsed = tf.io.parse_example(batch, spec)
        serialized.append(batch.numpy())
        labels.append(parsed[LABEL_KEY].numpy().reshape(-1))
        pixels.append(parsed[RAW_PIXELS_KEY].numpy())
    return np.concatenate(serialized), np.concatenate(labels), np.concatenate(pixels)


def _data_input(examples_uri: str):
    """The CSV ExampleGen's per-split data report, if the Examples artifact has one."""
    from tfx.dsl.io import fileio

    path = os.path.join(examples_uri, DATA_REPORT_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return json.load(f)


@tfx.dsl.components.component
def RunReport(model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
              model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
              evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
              blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
              examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
              report_dir: tfx.dsl.components.OutputArtifact[RunReportArtifact],
              test_split: tfx.dsl.components.Parameter[str] = TEST_SPLIT) -> None:
    import numpy as np
    import tensorflow as tf
    from tfx.utils import path_utils

    with tf.io.gfile.GFile(os.path.join(model_run.uri, HISTORY_FILE)) as f:
        history = json.load(f)
    blessed = bool(blessing.get_int_custom_property("blessed"))
    serving = tf.saved_model.load(path_utils.serving_model_path(model.uri)).signatures[EVAL_SIGNATURE]
    serialized, labels, pixels = _test_split(examples, test_split)
    predicted = np.concatenate([
        serving(**{EXAMPLES_INPUT: tf.constant(serialized[i:i + 1000])})[CLASS_ID_OUTPUT].numpy()
        for i in range(0, len(serialized), 1000)])
    wrong = np.nonzero(predicted != labels)[0]
    run_info = {"model": model.uri, "evaluation": evaluation.uri,
                "test examples": str(len(labels)), "misclassified": str(len(wrong))}
    from components.paired_blessing import load_decision
    from components.training.warm_start import read_record
    start = read_record(model_run.uri)   # span mode: warm or cold start, and why
    if start:
        run_info["training start"] = f"{start['reason']}; {start['epochs']} epochs"
    report.write_report(
        report_dir.uri,
        history=history,
        confusion=report.confusion_from_tfma(evaluation.uri),
        blessing=report.blessing_from_tfma(evaluation.uri, blessed),
        misclassified=(pixels[wrong], labels[wrong], predicted[wrong]),
        data_input=_data_input(examples.uri),
        run_info=run_info,
        decision=load_decision(blessing.uri))
