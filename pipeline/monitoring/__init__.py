"""Production after the push: `fmnist monitor` (monitor_cli.py, monitor.py, monitor_report.py) compares
logged served images (served_examples.py, with the measures of image_measures.py) with the training
data found through ML Metadata (lineage.py); `fmnist models promote|rollback` moves version labels
(model_labels.py)."""
