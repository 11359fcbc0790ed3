"""TensorBoard embedding projector of the model's penultimate-layer features.

Written into the Trainer's model_run directory next to the training curves, so `tensorboard
--logdir <model_run>` shows how the classes separate in the learned feature space, with each
point's label and its image (sprite).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tf_keras as keras
from PIL import Image
from tensorboard.plugins import projector

from schema.contract import CLASS_NAMES, EMBEDDING_LAYER

SPRITE_FILE = "sprite.png"
METADATA_FILE = "metadata.tsv"


def sprite(images: np.ndarray) -> Image.Image:
    """Square grid of 28x28 thumbnails; TensorBoard inverts nothing, so show them as stored."""
    n = len(images)
    side = int(np.ceil(np.sqrt(n)))
    grid = np.zeros((side * 28, side * 28), dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, side)
        grid[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = np.clip(img.reshape(28, 28) * 255, 0, 255)
    return Image.fromarray(grid)


def write_projector(model: keras.Model, images: np.ndarray, labels: np.ndarray, log_dir: str) -> str:
    """images: [N, 28, 28, 1] floats in [0, 1] (the transformed feature); returns the projector dir."""
    out = os.path.join(log_dir, "projector")
    tf.io.gfile.makedirs(out)
    features = keras.Model(model.inputs, model.get_layer(EMBEDDING_LAYER).output)
    vectors = features.predict(images, batch_size=512, verbose=0)
    with tf.io.gfile.GFile(os.path.join(out, METADATA_FILE), "w") as f:
        f.write("label\tclass\n")
        for label in labels:
            f.write(f"{int(label)}\t{CLASS_NAMES[int(label)]}\n")
    with tf.io.gfile.GFile(os.path.join(out, SPRITE_FILE), "wb") as f:
        sprite(images).save(f, format="PNG")
    embedding_var = tf.Variable(vectors, name="test_embedding")
    tf.train.Checkpoint(embedding=embedding_var).save(os.path.join(out, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    emb = config.embeddings.add()
    emb.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    emb.metadata_path = METADATA_FILE
    emb.sprite.image_path = SPRITE_FILE
    emb.sprite.single_image_dim.extend([28, 28])
    projector.visualize_embeddings(out, config)
    return out
