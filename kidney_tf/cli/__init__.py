"""kidney_tf.cli."""
