"""kidney_tf.pipelines."""
