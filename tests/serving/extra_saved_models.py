"""More test SavedModels: a TF1 graph/session export and a taxi-like model with two entry points.

tf1_half_plus_two is written as Estimator-era code wrote exports: a graph and a session,
SavedModelBuilder, an asset file read by a table that the main op initializes, and a
predict, a classify and a regress signature. two_entry_points has the taxi model's shape:
serving_default takes serialized tf.Examples, serving_raw one tensor per raw feature.
Tests build them with conftest.build_models("extra_saved_models", root).
"""
import os
import sys
import tempfile

CLASS_NAMES = ["low", "high"]


def build_tf1_half_plus_two(export_dir: str, intercept: float = 2.0) -> str:
    import tensorflow as tf

    tf1 = tf.compat.v1
    with tempfile.TemporaryDirectory() as scratch:
        classes_file = os.path.join(scratch, "class_names.txt")
        with open(classes_file, "w") as f:
            f.write("\n".join(CLASS_NAMES) + "\n")
        graph = tf.Graph()
        with graph.as_default(), tf1.Session(graph=graph) as session:
            slope = tf1.Variable(0.5, name="slope")
            bias = tf1.Variable(intercept, name="intercept")
            x = tf1.placeholder(tf.float32, [None], name="x")
            y = tf.identity(slope * x + bias, name="y")

            serialized = tf1.placeholder(tf.string, [None], name="tf_example")
            features = tf1.io.parse_example(
                serialized, {"x": tf1.io.FixedLenFeature([1], tf.float32)})
            y_examples = tf.identity(slope * features["x"] + bias, name="y_examples")
            # The class names live only in the asset file: the loader must feed its new
            # path to the main op, which fills the table.
            classes_path = tf.constant(classes_file, name="class_names_path")
            tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, classes_path)
            table = tf1.lookup.StaticHashTable(
                tf1.lookup.TextFileInitializer(
                    classes_path, tf.int64, tf1.lookup.TextFileIndex.LINE_NUMBER,
                    tf.string, tf1.lookup.TextFileIndex.WHOLE_LINE), default_value="?")
            batch = tf.shape(y_examples)[0]
            classes = tf.tile(table.lookup(tf.constant([[0, 1]], tf.int64)), [batch, 1])
            scores = tf.concat([1.0 - y_examples, y_examples], axis=1)

            signatures = tf1.saved_model.signature_def_utils
            session.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                session, [tf1.saved_model.tag_constants.SERVING],
                signature_def_map={
                    "serving_default": signatures.predict_signature_def({"x": x}, {"y": y}),
                    "classify_x_to_y": signatures.classification_signature_def(
                        serialized, classes, scores),
                    "regress_x_to_y": signatures.regression_signature_def(
                        serialized, y_examples),
                },
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS),
                main_op=tf.group(tf1.tables_initializer(), tf1.local_variables_initializer()))
            builder.save()
    return export_dir


def build_two_entry_points(export_dir: str) -> str:
    import tensorflow as tf

    class TwoEntryPoints(tf.Module):
        def _score(self, trip_miles, company):
            return {"outputs": trip_miles * 0.1 + tf.cast(tf.strings.length(company),
                                                          tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def from_examples(self, examples):
            features = tf.io.parse_example(examples, {
                "trip_miles": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
                "company": tf.io.FixedLenFeature([], tf.string, default_value="")})
            return self._score(features["trip_miles"], features["company"])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="trip_miles"),
                                      tf.TensorSpec([None], tf.string, name="company")])
        def from_raw(self, trip_miles, company):
            return self._score(trip_miles, company)

    module = TwoEntryPoints()
    tf.saved_model.save(module, export_dir, signatures={
        "serving_default": module.from_examples, "serving_raw": module.from_raw})
    return export_dir


def build_all(root: str) -> dict:
    return {
        "tf1_half_plus_two": build_tf1_half_plus_two(os.path.join(root, "tf1_half_plus_two")),
        "tf1_half_plus_three": build_tf1_half_plus_two(
            os.path.join(root, "tf1_half_plus_three"), 3.0),
        "two_entry_points": build_two_entry_points(os.path.join(root, "two_entry_points")),
    }


if __name__ == "__main__":
    print(build_all(sys.argv[1] if len(sys.argv) > 1 else "/tmp/serving_extra_models"))
