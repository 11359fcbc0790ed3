"""`python -m serving --model_name=NAME --model_base_path=PATH ...`: the server alone."""
import os
import sys

from serving.cli import main  # imports no TensorFlow: the log level below still applies

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.exit(main())
