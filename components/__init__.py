"""Module code the TFX components run: ExampleGen's CSV reader, Transform's preprocessing_fn,
the Trainer's run_fn and model, the validation gate."""


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
