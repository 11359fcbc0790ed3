"""The compiled Kubeflow pipeline executed task by task under the open-source KFP v2 backend's
contract (tests/kfp_standin.py): refused in its stock TFX form, run end to end in ours.

One module-scoped sequence of runs on the committed sample, every task a container of the image
`make test` built (each run several minutes on 2 shared cores: every step is its own pod):
  1. first run (with TFX's Tuner before the Trainer, `--set tune=true`, 2 trials of 1 epoch):
     nothing served -> evaluated without a baseline, blessed, pushed;
  2. a training file changes under the same data_root -> ExampleGen re-ingests (not a stale cache),
     the first run's served model is the baseline the Evaluator compares against;
  3. a bad CSV -> the run stops before Transform/Trainer naming file, line and column; the served
     directory is byte-identical.
"""
import os
import shutil

import pytest
from google.protobuf import json_format

from conftest import (
    NO_CLASS_FLOOR_ARGS,
    NO_LATENCY_GATE_ARGS,
    SAMPLE_DATA,
    compile_kubeflow,
    read_sample_rows,
    tree_digest,
    write_csv_gz,
)
from container_engine import ContainerEngine, image_under_test, left_out_image, left_out_module
from kfp_standin import KfpStandIn, Rejected
from pipeline.config import PROJECT_ROOT
from schema import contract

ROOT = "minio://mlpipeline/v2/artifacts"
RUN_PARAMETERS = {"epochs": 3, "accuracy_threshold": 0.5}
TUNER_BUDGET = ("--set", "tune=true", "--set", "tune_trials=2", "--set", "tune_epochs=1")
TRAIN_CSV = "fashion-mnist_train.csv.gz"
TEST_CSV = "fashion-mnist_test.csv.gz"


def test_stock_tfx_compilation_is_refused_by_the_open_source_backend(tmp_path):
    """What `fmnist kubeflow compile` used to write: schema 2.0.0 and Vertex resolver executors."""
    import yaml
    from tfx import v1 as tfx

    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(PROJECT_ROOT / "schema" / "schema.pbtxt"))
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)).with_id("latest_blessed")
    pipeline = tfx.dsl.Pipeline(pipeline_name="stock", pipeline_root="gs://b/r", components=[schema_gen, resolver])
    job = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="img")).run(
        pipeline, write_out=False)
    wrapper = tmp_path / "stock.yaml"
    wrapper.write_text(yaml.safe_dump(job))
    with pytest.raises(Rejected, match="unknown template format"):  # the PipelineJob wrapper
        KfpStandIn.upload(wrapper)
    spec_only = tmp_path / "spec.yaml"
    spec_only.write_text(yaml.safe_dump(job["pipelineSpec"]))
    with pytest.raises(Rejected, match="only supports schema version 2.1.0, but the pipeline spec has version 2.0.0"):
        KfpStandIn.upload(spec_only)
    job["pipelineSpec"]["schemaVersion"] = "2.1.0"
    spec_only.write_text(yaml.safe_dump(job["pipelineSpec"]))
    spec, _ = KfpStandIn.upload(spec_only)
    with pytest.raises(Rejected, match="resolver executors not implemented"):
        KfpStandIn.check_compilable(spec)


@pytest.fixture(scope="module")
def kfp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kfp-standin")
    data, serving = tmp / "data", tmp / "serving"
    shutil.copytree(SAMPLE_DATA, data)
    spec = tmp / "fmnist.yaml"
    compile_kubeflow(spec, "--image", image_under_test(), "--preset", "sample", "--pipeline-root", ROOT,
                     "--data-root", str(data), "--serving-root", str(serving), *NO_LATENCY_GATE_ARGS,
                     *NO_CLASS_FLOOR_ARGS, *TUNER_BUDGET)
    # The data and serving roots reach every step's container as volumes at their own paths.
    standin = KfpStandIn(tmp / "backend", ContainerEngine.from_environment(), volumes=[data, serving])
    runs = {"first": standin.run(spec, RUN_PARAMETERS, pipeline_root=ROOT)}
    first_versions = sorted(os.listdir(serving / "fmnist")) if (serving / "fmnist").exists() else []
    # A training file changes under the same data_root: 2,000 of the 2,500 rows.
    header, rows = read_sample_rows(data / TRAIN_CSV)
    write_csv_gz(data / TRAIN_CSV, header, rows[:2000])
    runs["changed"] = standin.run(spec, RUN_PARAMETERS, pipeline_root=ROOT)
    before_bad = tree_digest(serving)
    header, rows = read_sample_rows(data / TEST_CSV)
    rows[7][300] = 300  # pixel300 out of [0, 255]: line 9 of the file
    write_csv_gz(data / TEST_CSV, header, rows)
    runs["bad"] = standin.run(spec, RUN_PARAMETERS, pipeline_root=ROOT)
    return standin, runs, serving, first_versions, before_bad


def _stats_rows(standin: KfpStandIn, run, split: str) -> int:
    import tensorflow_data_validation as tfdv

    stats_dir = standin.artifact_dir(run.tasks["StatisticsGen"].outputs["statistics"])
    stats = tfdv.load_stats_binary(str(stats_dir / f"Split-{split}" / "FeatureStats.pb"))
    return stats.datasets[0].num_examples


def test_first_run_completes_blesses_without_a_baseline_and_pushes(kfp):
    standin, runs, serving, first_versions, _ = kfp
    run = runs["first"]
    assert run.succeeded, run.error
    assert all(t.state == "COMPLETE" for t in run.tasks.values()), {n: t.state for n, t in run.tasks.items()}
    assert len(first_versions) == 1
    blessing = standin.artifacts[run.tasks["Evaluator"].outputs["blessing"]]["custom_properties"]
    assert blessing["blessed"] == {"double": 1.0}
    assert "baseline_model_id" not in blessing
    baseline = standin.artifacts[run.tasks["ServedModelBaseline"].outputs["baseline"]]["custom_properties"]
    assert baseline["served_version"] == {"string": ""}
    # Runtime parameters reached the executors (not the compiled defaults).
    trainer_input = run.tasks["Trainer"].executor_input["inputs"]["parameterValues"]
    assert trainer_input["epochs"] == 3
    # StatisticsGen's ExampleStatistics reached the Trainer (type restored by the entrypoint): the
    # split size comes from TFDV's num_examples, no counting pass.
    assert f"train split: {_stats_rows(standin, run, 'train')} examples (from the statistics)" in \
        run.tasks["Trainer"].log
    report = standin.artifact_dir(run.tasks["RunReport"].outputs["report_dir"])
    assert (report / "index.html").exists()
    # The InfraValidator names the server it validated with: TF Serving's binary when the image
    # carries it, else the project's server (tools/image builds without it where it cannot be pulled).
    infra = standin.artifacts[run.tasks["InfraValidator"].outputs["blessing"]]["custom_properties"]
    tf_serving = dict(e.split("=", 1) for e in standin.engine.image(image_under_test())["Config"]["Env"])
    assert infra["server"] == {"string": "python -m serving" if tf_serving["FMNIST_TF_SERVING"] == "scratch"
                                         else "tensorflow_model_server"}


def test_the_tuner_step_feeds_its_best_hyperparameters_to_the_trainer_step(kfp):
    """TFX's Tuner as a KFP task of the image: its best_hyperparameters artifact reaches the Trainer
    task, which trains with those values (recorded in its model_run, as locally)."""
    import json

    from schema import contract

    standin, runs, _, _, _ = kfp
    run = runs["first"]
    assert run.tasks[contract.TUNER].state == "COMPLETE" and run.tasks[contract.TRAINER].state == "COMPLETE"
    best_dir = standin.artifact_dir(run.tasks[contract.TUNER].outputs["best_hyperparameters"])
    [name] = os.listdir(best_dir)
    values = json.loads((best_dir / name).read_text())["values"]
    assert set(values) == {"cnn.dense_units", "cnn.dropout", "learning_rate"}   # CnnConfig.search_space
    trainer_inputs = run.tasks[contract.TRAINER].executor_input["inputs"]["artifacts"]
    assert "hyperparameters" in trainer_inputs
    model_run = standin.artifact_dir(run.tasks[contract.TRAINER].outputs["model_run"])
    recorded = json.loads((model_run / contract.TRAINING_CONFIG_FILE).read_text())
    assert recorded["tuned"] == values
    assert recorded["config"]["cnn"]["dense_units"] == values["cnn.dense_units"]


def test_changed_data_is_re_ingested_and_the_served_model_is_the_baseline(kfp):
    standin, runs, serving, first_versions, _ = kfp
    first, run = runs["first"], runs["changed"]
    assert run.succeeded, run.error
    assert run.tasks[contract.EXAMPLE_GEN].state == "COMPLETE"   # not answered from the cache
    assert run.tasks["ImportSchemaGen"].state == "CACHED"       # KFP's cache still works where it can
    assert _stats_rows(standin, first, "train") == 2500 and _stats_rows(standin, run, "train") == 2000
    fingerprints = [standin.artifacts[r.tasks[contract.EXAMPLE_GEN].outputs["examples"]]["custom_properties"]
                    ["input_fingerprint"] for r in (first, run)]
    assert fingerprints[0] != fingerprints[1]     # TFX's ExampleGen driver ran (as Vertex's pre-cache check)
    baseline = standin.artifacts[run.tasks["ServedModelBaseline"].outputs["baseline"]]["custom_properties"]
    assert baseline["served_version"] == {"string": first_versions[0]}
    blessing = standin.artifacts[run.tasks["Evaluator"].outputs["blessing"]]["custom_properties"]
    assert "baseline_model_id" in blessing          # compared against what is served
    # The paired decision's outcome reaches ML Metadata through the KFP launcher as locally.
    assert blessing["decision"]["string"] in ("better", "no evidence", "worse"), blessing
    assert blessing["blessed"] == {"double": 1.0 if blessing["decision"]["string"] == "better" else 0.0}
    now = sorted(os.listdir(serving / "fmnist"))
    if blessing["blessed"] == {"double": 1.0}:
        assert len(now) == 2 and now[0] == first_versions[0]
    else:
        assert now == first_versions


def test_bad_csv_stops_before_training_naming_file_line_and_column(kfp):
    _, runs, serving, _, before_bad = kfp
    run = runs["bad"]
    assert not run.succeeded
    failed = [n for n, t in run.tasks.items() if t.state == "FAILED"]
    assert failed and failed[0] in (contract.EXAMPLE_GEN, "ValidationGate")
    assert "Transform" not in run.tasks and "Trainer" not in run.tasks
    log = run.tasks[failed[0]].log
    assert TEST_CSV in log and "line 9" in log and "pixel300" in log
    assert tree_digest(serving) == before_bad


def test_a_module_left_out_of_the_image_fails_the_first_step_that_imports_it(tmp_path):
    """Nothing leaks in from the checkout: with one module not copied into the image, the steps
    before the first one importing it complete, and that step fails with the ImportError."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    spec = tmp_path / "fmnist.yaml"
    compile_kubeflow(spec, "--image", left_out_image(), "--preset", "sample", "--pipeline-root", ROOT,
                     "--data-root", str(data), "--serving-root", str(tmp_path / "serving"), *NO_LATENCY_GATE_ARGS)
    standin = KfpStandIn(tmp_path / "backend", ContainerEngine.from_environment(), volumes=[data])
    module = left_out_module().removesuffix(".py").replace("/", ".")
    run = standin.run(spec, RUN_PARAMETERS, pipeline_root=ROOT)
    spec_proto, _ = standin.upload(spec)
    executors = spec_proto.deployment_spec.fields["executors"].struct_value.fields
    importing = [name for name in standin.order(spec_proto)
                 if f'"{module}.' in json_format.MessageToJson(
                     executors[spec_proto.components[spec_proto.root.dag.tasks[name].component_ref.name]
                               .executor_label])]
    failed = [name for name, task in run.tasks.items() if task.state == "FAILED"]
    assert importing and failed == importing[:1], (importing, {n: t.state for n, t in run.tasks.items()})
    assert f"No module named '{module}'" in run.tasks[failed[0]].log
    assert f"task {failed[0]} failed" in run.error
