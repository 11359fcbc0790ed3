"""Module code the TFX components run: ExampleGen's CSV reader, Transform's preprocessing_fn,
the Trainer's run_fn and model, the validation gate.

The one place the project chooses Keras 2: TensorFlow Transform 1.21's `transform_features_layer`
is a tf_keras layer and the exported SavedModel wraps it and our model in one graph, so `tf.keras`
inside TFT, TFMA and TFX must resolve to tf_keras as well. TFT sets TF_USE_LEGACY_KERAS itself when
it is imported; setting it here, when the package is first imported, covers the modules (model.py,
export.py) that may run before TFT is. `tf.keras` is resolved lazily on first use, so this holds
even when TensorFlow itself was imported earlier. The Kubeflow image sets the same variable.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def __getattr__(name: str):
    """`components.RunReportArtifact`, imported on first use.

    TFX's Kubeflow v2 compiler only accepts custom artifact type names of the form
    `module.Class` (compiler_utils._SCHEMA_TITLE_RE) and its entrypoint imports that name as a
    class path, so the report's type must be importable from this package itself; lazily, so
    that importing `components` does not import TFX.
    """
    if name == "RunReportArtifact":
        from components.report_component import RunReportArtifact
        return RunReportArtifact
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
