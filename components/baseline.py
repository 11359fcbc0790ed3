"""ServedModelBaseline: the model the candidate must beat is the one being served now.

Why not TFX's LatestBlessedModelStrategy resolver: on Kubeflow it compiles to Vertex-only
`resolver` executors (ML Metadata queries) that the open-source KFP backend rejects
("resolver executors not implemented", backend/src/v2/compiler/argocompiler/dag.go). A small
container step that looks at the serving directory runs the same locally, on open-source KFP and on
Vertex, and compares with what production actually serves rather than with whatever was blessed
last (a blessed model may never have been pushed, or may have been rolled back).

The step copies the newest complete version `<serving_model_dir>/<N>/` into its Model artifact
(`Format-Serving/`, where TFX's Evaluator looks). With nothing served yet the artifact holds no
SavedModel and the Evaluator runs without a baseline (components/custom_components.py), exactly as
on a first local run.

It must never be answered from a cache: the serving directory changes between runs while the
step's inputs (one path) do not. `run_token` is a value unique to each run -- a fresh UUID for a
local run, KFP's `{{$.pipeline_job_uuid}}` placeholder on Kubeflow, which the KFP driver replaces
with the run's id (backend/src/v2/driver/resolve.go) -- so every cache key differs.
"""

import logging
import os

from tfx import v1 as tfx

from schema.contract import SAVED_MODEL_FILE
from serving.versions import list_versions

log = logging.getLogger(__name__)

KFP_RUN_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"


def served_versions(serving_model_dir: str) -> "list[int]":
    """Complete version directories under `serving_model_dir`, oldest first.

    Version directories by TF Serving's rule (serving/versions.py: hidden staging directories of
    AtomicPusher are skipped), and only those with a saved_model.pb: a model server loads no other.
    """
    import tensorflow as tf

    return sorted(version for version, path in list_versions(serving_model_dir).items()
                  if tf.io.gfile.exists(os.path.join(path, SAVED_MODEL_FILE)))


def copy_tree(src: str, dst: str) -> None:
    """Recursive copy with tf.io.gfile, so gs:// and local paths work alike."""
    import tensorflow as tf

    for parent, _, files in tf.io.gfile.walk(src):
        target = os.path.join(dst, os.path.relpath(parent, src))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(parent, name), os.path.join(target, name), overwrite=True)


@tfx.dsl.components.component
def ServedModelBaseline(
        baseline: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
        serving_model_dir: tfx.dsl.components.Parameter[str],
        run_token: tfx.dsl.components.Parameter[str] = "") -> None:
    """Emit the newest served version as a Model artifact (no SavedModel inside if none)."""
    from tfx.utils import path_utils

    versions = served_versions(serving_model_dir)
    if not versions:
        log.info("no model served under %s yet: the candidate is evaluated without a baseline",
                 serving_model_dir)
        baseline.set_string_custom_property("served_version", "")
        return
    source = os.path.join(serving_model_dir, str(versions[-1]))
    copy_tree(source, path_utils.serving_model_dir(baseline.uri))
    baseline.set_string_custom_property("served_version", str(versions[-1]))
    baseline.set_string_custom_property("served_from", source)
    log.info("baseline: served version %s (%s), run %s", versions[-1], source, run_token)


def has_saved_model(model_uri: str) -> bool:
    """Whether a Model artifact actually holds a SavedModel (a baseline may be empty)."""
    import tensorflow as tf
    from tfx.utils import path_utils

    return tf.io.gfile.exists(os.path.join(path_utils.serving_model_path(model_uri), SAVED_MODEL_FILE))
