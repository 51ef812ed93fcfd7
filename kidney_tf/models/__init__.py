"""kidney_tf.models."""
