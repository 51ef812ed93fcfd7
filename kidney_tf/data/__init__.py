"""kidney_tf.data."""
