"""schema/schema.pbtxt is what schema/make_schema.py writes: the committed file and its generator
cannot drift apart (a threshold edited in one place only would validate with the other)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_equals_the_generated_one():
    # As `make schema` runs it: the script's stdout is the file, byte for byte.
    generated = subprocess.run([sys.executable, str(ROOT / "schema" / "make_schema.py")], cwd=ROOT,
                               env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True,
                               text=True, timeout=120, check=True).stdout
    committed = (ROOT / "schema" / "schema.pbtxt").read_text()
    assert generated == committed, "schema/schema.pbtxt is stale: run `make schema` and commit the result"


def test_schema_file_parses_and_names_the_contract_features():
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from schema.contract import LABEL_KEY, MEASURES, PREDICTED_LABEL, RAW_PIXELS_KEY

    schema = text_format.Parse((ROOT / "schema" / "schema.pbtxt").read_text(), schema_pb2.Schema())
    assert {f.name for f in schema.feature} == {LABEL_KEY, RAW_PIXELS_KEY, PREDICTED_LABEL, *MEASURES}
