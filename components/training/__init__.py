"""The Trainer's (and the Tuner's) module code: run_fn (trainer.py) and the loop it runs
(training_loop.py), its input (train_input.py) and settings (training_config.py, TrainingConfig),
the distribution strategy (strategy.py), warm start (warm_start.py), the export with its serving
signatures (export.py), the embedding projector (projector.py) and tuner_fn (tuner.py). The
architectures themselves are in components/models/."""
