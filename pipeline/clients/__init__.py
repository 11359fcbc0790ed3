"""The project's clients of the model server: `fmnist predict` and `fmnist serve-demo`
(serving_cli.py), the requests they build (predict.py) and photos turned into Fashion-MNIST images
(photo_input.py). They know this model; serving/ serves any SavedModel."""
