"""`fmnist kubeflow compile`: the KFP v2 pipeline spec of the same pipeline."""
from __future__ import annotations

import argparse


def cmd_compile(args: argparse.Namespace) -> int:
    from kubeflow.runner import RUNTIME_PARAMETERS, compile_pipeline
    from pipeline.cli import config_from_args

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
    out = compile_pipeline(config, args.image, args.pipeline_root, args.spec, gpus=args.gpus,
                           accelerator=args.accelerator)
    print(f"wrote {out}: runtime parameters {', '.join(RUNTIME_PARAMETERS)}; Trainer requests "
          f"{args.gpus} x {args.accelerator}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.cli import _add_config_args

    kf = sub.add_parser("kubeflow", help="Kubeflow Pipelines").add_subparsers(dest="kubeflow_command", required=True)
    c = kf.add_parser("compile", help="compile the pipeline to a KFP v2 spec (JSON)")
    _add_config_args(c, "default")
    c.add_argument("--image", required=True, help="container image of kubeflow/Dockerfile")
    c.add_argument("--pipeline-root", required=True, help="e.g. gs://BUCKET/fmnist/pipeline-root")
    c.add_argument("--spec", default="fmnist_pipeline.json", help="the compiled spec file to write")
    c.add_argument("--data-root", help="default of the data_root runtime parameter (e.g. gs://BUCKET/data)")
    c.add_argument("--serving-root", help="serving root; the serving_model_dir parameter defaults to <root>/<model>")
    c.add_argument("--schema-dir", default="/pipeline/schema", help="schema directory inside the image")
    c.add_argument("--gpus", type=int, default=1, help="GPUs for the Trainer step (0 for CPU)")
    c.add_argument("--accelerator", default="NVIDIA_TESLA_T4", help="accelerator type of the Trainer step")
    c.add_argument("--beam-args", help="Beam pipeline args, space-separated (e.g. --runner=DataflowRunner ...)")
    c.set_defaults(func=cmd_compile)
