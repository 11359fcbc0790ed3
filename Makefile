# Every target runs inside the pinned stack (tools/with-stack builds or reuses it), except ruff
# (tools/ruff, a pinned binary of its own) and the host-side with-stack check in `make test`.
STACK := tools/with-stack
FULL_DATA ?= ../shared/data/fashion-mnist

.PHONY: disk-check run run-spans bench-spans serve test test-unit lint stack full schema sample clean bench-pipeline bench-training bench-serving bench-beam bench-data-input bench-infra bench-monitoring bench-photos bench-scale kubeflow-compile image image-left-out test-kubeflow flink-up flink-down gcs-up gcs-down test-flink bench-flink spark-up spark-down test-spark image-gpu gpu-check

## run: the main job on the committed sample -- pipeline end to end, then serve and query the model
run:
	$(STACK) fmnist run --preset sample || [ $$? -eq 3 ]  # 3 on a rerun: same model, no evidence, the served one stays
	$(STACK) fmnist serve-demo --model-base outputs/sample/serving

## run-spans: continuous training on the committed sample spans -- span 1 arrives and is trained and
## pushed, then span 2 arrives: only span 2 ingested, warm start, compared with span 1's served model
## (exit 3 = the candidate was not better, so span 1's model stays served: a valid outcome)
SPANS_DATA := outputs/sample-spans/data
run-spans:
	rm -rf outputs/sample-spans && mkdir -p $(SPANS_DATA)
	cp -r data/sample-spans/span-1 data/sample-spans/holdout $(SPANS_DATA)/
	$(STACK) fmnist run --preset sample-spans --data $(SPANS_DATA)
	cp -r data/sample-spans/span-2 $(SPANS_DATA)/
	$(STACK) fmnist run --preset sample-spans --data $(SPANS_DATA) || [ $$? -eq 3 ]

## serve: the model server on the sample's pushed models (gRPC 127.0.0.1:8500, REST :8501)
serve:
	$(STACK) fmnist serve --model-base outputs/sample/serving

## test: the whole test suite (what CI runs): ruff, the pipeline image (built once, shared by the suite)
## and its copy with one module left out, two checkouts on the stack at once (from the host), then
## pytest with a container engine's API for the KFP stand-in (tools/image with-engine)
## (tools/prometheus fetches Debian's Prometheus binary once; its directory is bound into the chroot stack)
test: lint disk-check image-left-out image-gpu
	$(STACK) true  # builds the stack on first use (~6 min), so the check below times only itself
	python3 tests/unit/test_with_stack.py
	tools/flink install >/dev/null && tools/spark install >/dev/null && tools/gcs install >/dev/null
	prom=$$(tools/prometheus) && FMNIST_PROMETHEUS=$$prom FMNIST_BIND="$${FMNIST_BIND:-} $$(dirname $$prom) $$(tools/flink binds) $$(tools/spark binds) $$(tools/gcs binds)" \
	    $(WITH_ENGINE) $(STACK) python -m pytest -q -m "not own_target" tests/unit tests/e2e

## disk-check: the free space `make test` needs under /tmp (pipeline runs, clusters) and the container
## storage (the images), which share one disk here. Short of it, the suite used to fail late and
## obscurely: Spark relaunched executors that could not start until CI's time ran out.
TEST_DISK_GB ?= 20
disk-check:
	@for dir in /tmp /var/lib/containers; do [ -d $$dir ] || continue; \
	  free=$$(df -Pk $$dir | awk 'NR == 2 {print int($$4 / 1048576)}'); \
	  [ "$$free" -ge $(TEST_DISK_GB) ] || { echo "make test: $$free GB free on $$dir's disk; the suite needs $(TEST_DISK_GB) GB (TEST_DISK_GB)" >&2; exit 2; }; \
	done

## test-kubeflow: only the Kubeflow tests that run containers (the images as for `make test`)
test-kubeflow: image-left-out image-gpu
	$(WITH_ENGINE) $(STACK) python -m pytest -q tests/e2e/test_kubeflow_image.py tests/e2e/test_gpu_image.py \
	  tests/e2e/test_kubeflow_standin.py tests/e2e/test_kubeflow_spans.py

## flink-up / flink-down: a local Flink cluster for the Beam steps on 127.0.0.1 (JobManager REST :8081,
## two TaskManagers with a Beam worker pool each, Beam's job server :8099); fetched once, then cached.
## Run the pipeline on it: tools/with-stack fmnist run --set beam_args="$$(tools/flink args)"
flink-up:
	tools/flink up
flink-down:
	tools/flink down

## gcs-up / gcs-down: a local GCS stand-in on 127.0.0.1 (bucket gs://fmnist; `tools/gcs env` prints what
## a client process needs), for a pipeline root the Flink workers and the Kubeflow steps both reach
gcs-up:
	tools/gcs up
gcs-down:
	tools/gcs down

## test-flink / test-spark: only the tests that run the Beam steps on a Flink / Spark cluster (their
## own, on other ports), each also the Kubeflow pipeline on it (the image, a GCS stand-in)
test-flink: image
	tools/flink install >/dev/null && tools/gcs install >/dev/null
	FMNIST_BIND="$${FMNIST_BIND:-} $$(tools/flink binds) $$(tools/gcs binds)" $(WITH_ENGINE) $(STACK) python -m pytest -q tests/e2e/test_beam_flink.py
test-spark: image
	tools/spark install >/dev/null && tools/gcs install >/dev/null
	FMNIST_BIND="$${FMNIST_BIND:-} $$(tools/spark binds) $$(tools/gcs binds)" $(WITH_ENGINE) $(STACK) python -m pytest -q tests/e2e/test_beam_spark.py

## spark-up / spark-down: a local Spark standalone cluster for the Beam steps on 127.0.0.1 (master :7077,
## JSON :8080, two workers with a Beam worker pool each, Beam's job server :8199)
spark-up:
	tools/spark up
spark-down:
	tools/spark down

## test-unit: the unit tests alone (tests/unit, under a minute; no pipeline runs or servers), one
## pytest process per core (tools/pytest-shards): ~47 s on 2 idle cores instead of ~73 s in one process
test-unit:
	$(STACK) tools/pytest-shards $$(nproc) -q tests/unit

## lint: ruff (lint + import order; settings in pyproject.toml, version pinned in tools/ruff)
lint:
	tools/ruff check .

## stack: only build (or verify) the environment
stack:
	$(STACK) python -c "import tfx, tensorflow as tf; print('tfx', tfx.__version__, 'tensorflow', tf.__version__)"

## full: the pipeline on the full 70,000 images
full:
	$(STACK) fmnist run --data $(FULL_DATA)

## schema: regenerate schema/schema.pbtxt from schema/make_schema.py
schema:
	$(STACK) sh -c 'python schema/make_schema.py > schema/schema.pbtxt'

## sample: rebuild data/sample from the full data set
sample:
	$(STACK) python tools/make_sample.py $(FULL_DATA) data/sample

## bench-pipeline: full-data pipeline timings, peak memory, accuracy (BENCHMARKS.md)
bench-pipeline:
	$(STACK) python benchmarks/pipeline_bench.py --data $(FULL_DATA)

## bench-training: tutorial baseline vs. our model, side by side (BENCHMARKS.md)
bench-training:
	$(STACK) python benchmarks/training_speed.py --data $(FULL_DATA)

## bench-serving: gRPC latency/throughput, batching on/off vs. in-process (BENCHMARKS.md)
bench-serving:
	$(STACK) python benchmarks/serving_bench.py

## bench-batching: batching off / TF Serving's example / tuned, 8-32-128 clients x batch 1 and 8, plus one
## client's p50 next to the in-process call, side by side (BENCHMARKS.md; MODEL_DIR = a pushed version)
MODEL_DIR ?=
.PHONY: bench-batching
bench-batching:
	$(STACK) python benchmarks/batching_sweep.py --repeat 5 $(if $(MODEL_DIR),--model-dir $(MODEL_DIR))

## bench-monitoring: request-logging latency overhead, promote/rollback times under load (BENCHMARKS.md)
bench-monitoring:
	$(STACK) python benchmarks/monitoring_bench.py

## bench-photos: accuracy on generated product photos next to the same test rows raw (BENCHMARKS.md)
PHOTO_MODEL ?= outputs/serving/fmnist
bench-photos:
	$(STACK) python benchmarks/photo_accuracy.py --csv $(FULL_DATA)/fashion-mnist_test.csv.gz --model $(PHOTO_MODEL) --count 1000

## bench-beam: DirectRunner in_memory vs. multi_processing on the data components (BENCHMARKS.md)
bench-beam:
	$(STACK) python benchmarks/beam_runners.py --data $(FULL_DATA)

## bench-data-input: FastCsvExampleGen of BASELINE (a git revision) vs. the checkout, full data (BENCHMARKS.md)
BASELINE ?= main
bench-data-input:
	mkdir -p outputs/bench
	git show $(BASELINE):components/data_input/csv_example_gen.py > outputs/bench/baseline_csv_example_gen.py
	git show $(BASELINE):components/data_input/csv_table.py > outputs/bench/baseline_csv_table.py
	$(STACK) python benchmarks/data_input_bench.py --data $(FULL_DATA) --baseline-rev $(BASELINE) \
	    --baseline-file outputs/bench/baseline_csv_example_gen.py \
	    --baseline-table-file outputs/bench/baseline_csv_table.py

## bench-infra: InfraValidator time per validation and the p50/p99 its latency gate sees (after `make run`)
bench-infra:
	$(STACK) python benchmarks/infra_validation.py --preset sample --rounds 3

## bench-scale: per-component time and peak memory at 1x, 3x, 10x data (FACTORS="1 3 10 20"), curve PNG (BENCHMARKS.md)
FACTORS ?= 1 3 10
bench-scale:
	$(STACK) python benchmarks/scale.py --data $(FULL_DATA) --factors $(FACTORS) --png benchmarks/scale.png

## bench-flink: the Beam steps (data components) on DirectRunner in_memory vs. a local Flink cluster at
## parallelism 2 and 4, 1x and 10x data, time and peak memory per process, in one run (BENCHMARKS.md)
FLINK_FACTORS ?= 1 10
bench-flink:
	tools/flink install >/dev/null
	FMNIST_BIND="$${FMNIST_BIND:-} $$(tools/flink binds)" $(STACK) python benchmarks/scale.py --data $(FULL_DATA) \
	  --data-only --flink --factors $(FLINK_FACTORS) --json outputs/bench/flink.json

## bench-spans: full data as two spans -- span 2 retrained warm vs. cold, time and accuracy (BENCHMARKS.md)
bench-spans:
	nice $(STACK) python benchmarks/spans_bench.py --data $(FULL_DATA)

## kubeflow-compile: the open-source KFP PipelineSpec YAML (set IMAGE, PIPELINE_ROOT; TARGET=vertex for Vertex AI JSON)
IMAGE ?= fmnist-tfx:latest
TARGET ?= kfp
PIPELINE_ROOT ?= minio://mlpipeline/v2/artifacts
kubeflow-compile:
	$(STACK) fmnist kubeflow compile --target $(TARGET) --image $(IMAGE) --pipeline-root $(PIPELINE_ROOT) \
	  --spec outputs/fmnist_pipeline.$(if $(filter vertex,$(TARGET)),json,yaml)

## image: build kubeflow/Dockerfile as $(IMAGE): docker where an engine answers, else podman (installed from
## Debian if missing); the base image is made from Debian 13's packages when absent (tools/image).
## TF_SERVING=tensorflow/serving:2.20.0 adds TF Serving's binary (needs a registry; default here: without)
TF_SERVING ?= scratch
LEFT_OUT ?= components/validation_gate.py
image:
	tools/image build --tag $(IMAGE) --build-arg TF_SERVING=$(TF_SERVING)

## image-left-out: the image again without $(LEFT_OUT) in its COPY lines (seconds: the layers before are
## shared), for the test that a step imports only what the image holds
image-left-out: image
	tools/image build --tag $(IMAGE)-without-$(basename $(notdir $(LEFT_OUT))) --build-arg TF_SERVING=$(TF_SERVING) \
	  --leave-out $(LEFT_OUT)

## image-gpu: the Trainer's GPU image $(IMAGE)-gpu: $(IMAGE) plus TensorFlow's CUDA libraries at
## requirements-gpu.lock's versions (kubeflow/Dockerfile.gpu; one layer on top, ~2 min once the wheels are cached)
image-gpu: image
	tools/image build --tag $(IMAGE)-gpu --file kubeflow/Dockerfile.gpu --build-arg BASE=$(IMAGE)
# The tests' container engine (tests/container_engine.py) and the images they run.
WITH_ENGINE = FMNIST_IMAGE=$(IMAGE) FMNIST_LEFT_OUT=$(LEFT_OUT) tools/image with-engine

## gpu-check: on a machine with a GPU (not in CI), one epoch of the fast preset's model in the GPU image, on the
## GPU and on the CPU: asserts the convolutions ran on the GPU, prints seconds per epoch of each (README, "GPUs").
## Docker needs the NVIDIA Container Toolkit, podman its CDI spec; GPU_CHECK_DATA=../shared/data/fashion-mnist
GPU_CHECK_DATA ?= data/sample
gpu-check: image-gpu
	engine=$$(tools/image engine); \
	if [ "$$engine" = docker ]; then gpus="--gpus all"; else gpus="--device nvidia.com/gpu=all"; fi; \
	$$engine run --rm $$gpus -v $(abspath $(GPU_CHECK_DATA)):/data:ro --entrypoint python $(IMAGE)-gpu \
	  -m kubeflow.gpu_check --data /data

clean:
	rm -rf outputs
