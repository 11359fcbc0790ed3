"""ExampleGen's code for the CSV source: which files feed which split (split_files.py), the exact
parser of one Kaggle-layout CSV (csv_table.py), the ExampleGen executor that turns the rows into
tf.Examples and names the file, line and column of a bad cell (csv_example_gen.py), and the split
writer used on DirectRunner (split_writer.py). The source's seam (which ExampleGen, the pre-flight
file check, the row lookup) is pipeline/sources/csv_files.py."""
