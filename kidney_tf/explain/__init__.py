"""kidney_tf.explain."""
