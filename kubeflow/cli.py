"""`fmnist kubeflow compile`: the KFP v2 pipeline spec of the same pipeline."""
from __future__ import annotations

import argparse

from pipeline.config import ConfigError
from pipeline.config_args import add_config_arguments, config_from_args


def cmd_compile(args: argparse.Namespace) -> int:
    from kubeflow.parameters import defaults
    from kubeflow.runner import compile_pipeline

    overrides = {}
    if args.data_root:
        overrides["data_root"] = args.data_root
    if args.serving_root:
        overrides["serving_root"] = args.serving_root
    overrides["schema_dir"] = args.schema_dir  # where kubeflow/Dockerfile puts schema/
    if args.beam_args:
        overrides["beam_args"] = args.beam_args
    args.set = (args.set or []) + [f"{k}={v}" for k, v in overrides.items()]
    args.data = None
    config = config_from_args(args)
    selector = None
    if args.gpu_node_selector:
        key, sep, value = args.gpu_node_selector.partition("=")
        if not sep or not key:
            raise ConfigError(f"--gpu-node-selector {args.gpu_node_selector!r}: expected LABEL=VALUE")
        selector = {key: value}
    spec = args.spec or ("fmnist_pipeline.json" if args.target == "vertex" else "fmnist_pipeline.yaml")
    out = compile_pipeline(config, args.image, args.pipeline_root, spec, target=args.target,
                           gpus=args.gpus, accelerator=args.accelerator, gpu_node_selector=selector,
                           workers=args.workers, gpu_image_name=args.gpu_image or "",
                           vertex_project=args.vertex_project or "", vertex_region=args.vertex_region,
                           machine_type=args.machine_type)
    gpu = f"{args.gpus} GPU(s)" if args.gpus else "no GPU"
    how = ("" if args.workers == 1 else
           f" in each of {args.workers} workers ({'a Vertex CustomJob' if args.target == 'vertex' else 'a TFJob'})")
    print(f"wrote {out} for {args.target}: runtime parameters {', '.join(defaults(config))}; "
          f"Trainer requests {gpu}{how}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from kubeflow import runner  # no TensorFlow or TFX at import: the defaults, defined once there

    kf = sub.add_parser("kubeflow", help="Kubeflow Pipelines").add_subparsers(dest="kubeflow_command", required=True)
    c = kf.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines (YAML) or Vertex AI (JSON)")
    add_config_arguments(c, "default")
    c.add_argument("--image", required=True, help="container image of kubeflow/Dockerfile")
    c.add_argument("--target", choices=("kfp", "vertex"), default="kfp",
                   help="kfp: PipelineSpec YAML for open-source KFP 2.x; vertex: PipelineJob JSON for Vertex AI")
    c.add_argument("--pipeline-root", required=True,
                   help="kfp: minio://mlpipeline/v2/artifacts (a KFP install's default), s3:// or gs://; vertex: gs://")
    c.add_argument("--spec", help="the file to write (default fmnist_pipeline.yaml, or .json for vertex)")
    c.add_argument("--data-root", help="default of the data_root runtime parameter (e.g. gs://BUCKET/data)")
    c.add_argument("--serving-root", help="serving root; the serving_model_dir parameter defaults to <root>/<model>")
    c.add_argument("--schema-dir", default="/pipeline/schema", help="schema directory inside the image")
    c.add_argument("--gpus", type=int, default=0, help="GPUs for the Trainer step (default 0: CPU only)")
    c.add_argument("--accelerator", default="NVIDIA_TESLA_T4",
                   help="GPU model: Vertex's accelerator type; on kfp it sets the default node selector")
    c.add_argument("--gpu-node-selector", metavar="LABEL=VALUE",
                   help="kfp: node label for the Trainer's GPU nodes "
                        "(default cloud.google.com/gke-accelerator=<accelerator, lower-case with dashes>)")
    c.add_argument("--workers", type=int, default=1,
                   help="Trainer workers (default 1). More: kfp submits a Training Operator TFJob (needs a "
                        "gs:// pipeline root), vertex a CustomJob through TFX's Vertex training extension; "
                        "--gpus is per worker")
    c.add_argument("--gpu-image", help="image of the Trainer when --gpus > 0 (default <image>-gpu: make image-gpu)")
    c.add_argument("--vertex-project", help="vertex, --workers > 1: the Google Cloud project of the CustomJob")
    c.add_argument("--vertex-region", default=runner.DEFAULT_VERTEX_REGION,
                   help="vertex, --workers > 1: the CustomJob's region")
    c.add_argument("--machine-type", default=runner.DEFAULT_MACHINE_TYPE,
                   help="vertex, --workers > 1: each worker's machine type")
    c.add_argument("--beam-args", help="Beam pipeline args, space-separated (e.g. --runner=DataflowRunner ...)")
    c.set_defaults(func=cmd_compile)
