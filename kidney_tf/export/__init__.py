"""kidney_tf.export."""
