"""kidney_tf.evaluation."""
