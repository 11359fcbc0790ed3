"""`python -m serving --model_name=NAME --model_base_path=PATH ...`: the server alone."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from serving.cli import main  # noqa: E402

sys.exit(main())
