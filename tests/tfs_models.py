"""Models equivalent to TensorFlow Serving's own test models, built in the test set-up.

Written from tensorflow/serving `tensorflow_serving/servables/tensorflow/testdata/`:
`saved_model_half_plus_two.py` (the TF1 graph with a ParseExample front end and its TF2 twin;
`half_plus_three` is the same graph with b = 3) and `export_counter.py` (a stateful model whose
signatures have no inputs or no outputs but a side effect). Tensor names, signature names and
keys are the upstream ones, so TF Serving's test expectations apply unchanged.
"""
from __future__ import annotations

import os


def _feature_spec(tf):
    return {"x": tf.io.FixedLenFeature([1], dtype=tf.float32),
            "x2": tf.io.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0])}


def half_plus_two_tf1(export_dir: str, b: float = 2.0, c: float = 3.0) -> str:
    """TF1 graph: y = 0.5 x + b, y2 = 0.5 x + c, y3 = 0.5 x2 + c; x and x2 parsed from tf.Examples.

    The predict signature feeds `x:0`, an Identity of ParseExample's output (not a placeholder),
    exactly as upstream does, so a server must feed signature tensor names in a session.
    """
    import tensorflow.compat.v1 as tf

    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph) as sess:
        a = tf.Variable(0.5, name="a")
        b_var = tf.Variable(b, name="b")
        c_var = tf.Variable(c, name="c")
        serialized = tf.placeholder(tf.string, name="tf_example", shape=[None])
        parsed = tf.parse_example(serialized, _feature_spec(tf))
        x = tf.identity(parsed["x"], name="x")
        y = tf.identity(tf.add(tf.multiply(a, x), b_var), name="y")
        y2 = tf.identity(tf.add(tf.multiply(a, x), c_var), name="y2")
        x2 = tf.identity(parsed["x2"], name="x2")
        a2 = tf.Variable(0.5, name="a2")
        c2 = tf.Variable(c, name="c2")
        y3 = tf.identity(tf.add(tf.multiply(a2, x2), c2), name="y3")
        info = tf.saved_model.utils.build_tensor_info
        build = tf.saved_model.signature_def_utils.build_signature_def
        consts = tf.saved_model.signature_constants

        def predict(i, o):
            return build({"x": info(i)}, {"y": info(o)}, consts.PREDICT_METHOD_NAME)

        def regress(i, o):
            return build({consts.REGRESS_INPUTS: info(i)}, {consts.REGRESS_OUTPUTS: info(o)},
                         consts.REGRESS_METHOD_NAME)

        def classify(i, o):
            return build({consts.CLASSIFY_INPUTS: info(i)}, {consts.CLASSIFY_OUTPUT_SCORES: info(o)},
                         consts.CLASSIFY_METHOD_NAME)

        signatures = {
            "regress_x_to_y": regress(serialized, y),
            "regress_x_to_y2": regress(serialized, y2),
            "regress_x2_to_y3": regress(x2, y3),
            "classify_x_to_y": classify(serialized, y),
            "classify_x2_to_y3": classify(x2, y3),
            consts.DEFAULT_SERVING_SIGNATURE_DEF_KEY: predict(x, y),
        }
        sess.run(tf.global_variables_initializer())
        builder = tf.saved_model.builder.SavedModelBuilder(export_dir)
        builder.add_meta_graph_and_variables(sess, [tf.saved_model.tag_constants.SERVING],
                                             signature_def_map=signatures)
        builder.save()
    return export_dir


def half_plus_two_tf2(export_dir: str) -> str:
    """The native TF2 twin (upstream's HalfPlusTwoModel): same signature names, tf.function based."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(2.0, name="b")
            self.c = tf.Variable(3.0, name="c")

        def compute(self, x, inc):
            return tf.add(tf.multiply(self.a, x), inc)

        @tf.function(input_signature=[tf.TensorSpec(shape=[1], dtype=tf.float32)])
        def predict(self, x):
            return {"y": self.compute(x, self.b)}

        @tf.function(input_signature=[tf.TensorSpec([None], dtype=tf.string, name="inputs")])
        def regress_xy(self, serialized_proto):
            x = tf.io.parse_example(serialized_proto, _feature_spec(tf))["x"]
            return {"outputs": self.compute(x, self.b)}

        @tf.function(input_signature=[tf.TensorSpec([None], dtype=tf.string, name="inputs")])
        def classify_xy(self, serialized_proto):
            x = tf.io.parse_example(serialized_proto, _feature_spec(tf))["x"]
            return {"scores": self.compute(x, self.b)}

    model = HalfPlusTwo()
    tf.saved_model.save(model, export_dir, signatures={
        "serving_default": model.predict, "regress_x_to_y": model.regress_xy,
        "classify_x_to_y": model.classify_xy})
    return export_dir


def counter_tf1(export_dir: str) -> str:
    """Upstream's export_counter.py: get_counter, incr_counter, incr_counter_by, reset_counter."""
    import tensorflow.compat.v1 as tf

    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph) as sess:
        counter = tf.Variable(0.0, dtype=tf.float32, name="counter", use_resource=False)
        incr = counter.assign_add(1.0)
        delta = tf.placeholder(dtype=tf.float32, name="delta")
        incr_by = counter.assign_add(delta)
        reset = counter.assign(0.0)
        sess.run(tf.global_variables_initializer())
        info = tf.saved_model.utils.build_tensor_info
        method = tf.saved_model.signature_constants.PREDICT_METHOD_NAME

        def sig(inputs, outputs):
            return tf.saved_model.signature_def_utils.build_signature_def(
                {k: info(t) for k, t in inputs.items()}, {k: info(t) for k, t in outputs.items()}, method)

        builder = tf.saved_model.builder.SavedModelBuilder(export_dir)
        builder.add_meta_graph_and_variables(sess, [tf.saved_model.tag_constants.SERVING], signature_def_map={
            "get_counter": sig({}, {"output": counter}),
            "incr_counter": sig({}, {"output": incr}),
            "incr_counter_by": sig({"delta": delta}, {"output": incr_by}),
            "reset_counter": sig({}, {"output": reset}),
        })
        builder.save()
    return export_dir


def json_cases_tf2(export_dir: str) -> str:
    """Identity-like signatures for the REST JSON cases of json_tensor_test.cc: a `*_bytes` string
    output, float32, int32 and two named inputs of different types."""
    import tensorflow as tf

    class Cases(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="text")])
        def echo(self, text):
            return {"text_bytes": text, "text": text}

        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
        def floats(self, x):
            return {"y": tf.identity(x)}

        @tf.function(input_signature=[tf.TensorSpec(None, tf.int32, name="x")])
        def ints(self, x):
            return {"y": tf.identity(x)}

        @tf.function(input_signature=[tf.TensorSpec(None, tf.int32, name="int_tensor"),
                                      tf.TensorSpec(None, tf.string, name="str_tensor")])
        def named(self, int_tensor, str_tensor):
            return {"int_out": tf.identity(int_tensor), "str_out": tf.identity(str_tensor)}

    model = Cases()
    tf.saved_model.save(model, export_dir, signatures={
        "serving_default": model.floats, "echo": model.echo, "ints": model.ints, "named": model.named})
    return export_dir


def scalar_tf2(export_dir: str) -> str:
    """tensorflow_model_server_test.py test_tf_saved_model_save: y = 3 * 2 * x for a scalar-spec x."""
    import tensorflow as tf

    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.)
    root.v2 = tf.Variable(2.)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(root, export_dir, root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))
    return export_dir


def keras_sequential(export_dir: str) -> str:
    """test_sequential_keras_saved_model_save: Input `x` of shape (1,), identity Lambda `y`."""
    import tf_keras as keras

    model = keras.models.Sequential()
    model.add(keras.layers.Input(dtype="float32", shape=(1,), name="x"))
    model.add(keras.layers.Lambda(lambda x: x, name="y"))
    import tensorflow as tf
    tf.saved_model.save(model, export_dir)
    return export_dir


def write_warmup(export_dir: str, requests: list) -> str:
    """assets.extra/tf_serving_warmup_requests holding PredictionLogs built from `requests`."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            kind = type(request).__name__
            {"PredictRequest": log.predict_log, "ClassificationRequest": log.classify_log,
             "RegressionRequest": log.regress_log, "MultiInferenceRequest": log.multi_inference_log,
             }[kind].request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return path


def signature_defaults_tf1(export_dir: str, k: float = 10.0) -> str:
    """y = x * k, with `k` a SignatureDef default (meta_graph.proto `defaults`, TF >= 2.13): a
    request may leave `k` out and GetInputValues (tensorflow/cc/saved_model/util.cc) feeds the
    default. TF's builders do not write defaults from TF1 graphs, so they are added to
    saved_model.pb after the save, as an exporter that sets them would write them."""
    import tensorflow.compat.v1 as tf
    from tensorflow.core.protobuf import saved_model_pb2

    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph) as sess:
        x = tf.placeholder(tf.float32, name="x", shape=[None])
        scale = tf.placeholder(tf.float32, name="k", shape=[])
        y = tf.identity(x * scale, name="y")
        info = tf.saved_model.utils.build_tensor_info
        signature = tf.saved_model.signature_def_utils.build_signature_def(
            {"x": info(x), "k": info(scale)}, {"y": info(y)}, tf.saved_model.signature_constants.PREDICT_METHOD_NAME)
        builder = tf.saved_model.builder.SavedModelBuilder(export_dir)
        builder.add_meta_graph_and_variables(sess, [tf.saved_model.tag_constants.SERVING],
                                             signature_def_map={"serving_default": signature})
        builder.save()
    path = os.path.join(export_dir, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved.ParseFromString(f.read())
    saved.meta_graphs[0].signature_def["serving_default"].defaults["k"].CopyFrom(tf.make_tensor_proto(k, tf.float32))
    with open(path, "wb") as f:
        f.write(saved.SerializeToString())
    return export_dir


def images_tf2(export_dir: str, seed: int = 0) -> str:
    """A 28x28-image classifier with fixed random weights (softmax of the flattened image times a
    784x10 matrix): each image gets its own answer, so a batcher that mixed answers up shows."""
    import numpy as np
    import tensorflow as tf

    weights = np.random.default_rng(seed).normal(0, 0.3, (784, 10)).astype(np.float32)

    class Images(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.nn.softmax(tf.matmul(tf.reshape(images, [-1, 784]), self.w))}

    module = Images()
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    return export_dir
