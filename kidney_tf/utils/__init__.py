"""kidney_tf.utils."""
