"""Model architectures by name: the `model` config field picks one.

An architecture is a builder function (its own module here: `cnn.py`, `resnet.py`) and a config
group dataclass (`configs.py`, settable as `--set <name>.<field>=...`) that names the builder; it
is registered by one field of TrainingConfig holding that group. Building and compiling are
separate: `registry.build_model` returns an uncompiled Keras model that satisfies the contract's
names (checked there), `compile.compile_model` compiles any of them the same way.

Keras 2 (tf_keras), not Keras 3: TensorFlow Transform 1.21's `transform_features_layer` is a tf_keras
layer; the SavedModel we export wraps that layer and the model in one graph, so both must come from
the same Keras (components/__init__.py).

This `__init__` imports nothing, so the TensorFlow-free config modules can import `configs`.
"""
