"""Installs the Fashion-MNIST TFX pipeline and its `fmnist` command.

The pinned stack is listed in requirements.lock (the exact versions the tests ran on); the ranges
here only say what the code needs, so the package can be installed into an existing TFX
environment too.
"""
from setuptools import find_packages, setup

setup(
    name="fmnist-tfx",
    version="0.1.0",
    description="TFX/Keras pipeline that classifies Fashion-MNIST and serves the model over gRPC",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*",
                                    "serving", "serving.*", "kubeflow", "kubeflow.*",
                                    "schema", "schema.*"]),
    package_data={"kubeflow": ["manifests/*.yaml", "Dockerfile"], "schema": ["schema.pbtxt"]},
    install_requires=[
        "tfx==1.21.0",
        "tensorflow>=2.21,<2.22",
        "tensorflow-data-validation==1.21.0",
        "tensorflow-transform==1.21.0",
        "tensorflow-model-analysis==0.52.0",
        "apache-beam>=2.77,<2.78",
        # tfx-bsl 1.21.0 caps tensorflow-serving-api below 2.20, so 2.21 cannot be co-installed.
        "tensorflow-serving-api>=2.19,<2.20",
        "kfp>=2.6,<2.17",
        "tensorboard>=2.21,<2.22",
        "grpcio-health-checking",
        "aiohttp>=3.9,<4",  # the REST front end of serving/ (pinned in requirements.lock)
        "pyyaml",
        "pillow",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["fmnist=pipeline.cli:main"]},
)
