"""kidney_tf.training."""
