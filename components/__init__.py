"""Module code the TFX components run: ExampleGen's CSV reader, Transform's preprocessing_fn,
the Trainer's run_fn and model, the validation gate."""
