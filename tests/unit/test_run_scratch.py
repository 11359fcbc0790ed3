"""A run's temporary files go with the run: TFX's Beam executors build an sdist of TFX in the
temporary directory whenever Beam arguments are set, and never remove it (14 GB had piled up in /tmp
and a CI run failed on a full disk)."""
from __future__ import annotations

import os
import tempfile

import pytest

from pipeline.runner import run_scratch


def test_tfxs_sdist_for_remote_workers_is_built_in_the_runs_scratch_and_removed_with_it():
    from tfx.utils import dependency_utils

    before = tempfile.gettempdir()
    with run_scratch() as scratch:
        # What BaseBeamExecutor.__init__ does with a cluster's arguments (no dependency flag given).
        args = dependency_utils.make_beam_dependency_flags(["--runner=PortableRunner"])
        sdist = next(a.split("=", 1)[1] for a in args if a.startswith("--extra_package="))
        assert os.path.isfile(sdist) and sdist.startswith(scratch + os.sep)
    assert not os.path.exists(scratch) and not os.path.exists(sdist)
    assert tempfile.gettempdir() == before


def test_the_scratch_is_removed_when_the_run_raises():
    with pytest.raises(RuntimeError), run_scratch() as scratch:
        open(os.path.join(tempfile.mkdtemp(), "partial"), "w").close()
        raise RuntimeError("a component failed")
    assert not os.path.exists(scratch)
