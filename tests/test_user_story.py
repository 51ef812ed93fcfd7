"""User story: phantoms -> tf.data -> ResNet-50 -> CAM fostering -> fit/evaluate -> save/load/predict."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_train_evaluate_save_load_predict(tmp_path):
    import keras

    import kidney_tf as ktf

    # --- the README snippet, as a user writes it -------------------------------------------
    manifest = ktf.generate_phantoms("kidney-ct", tmp_path / "phantoms", per_class=6, image_size=64)
    bundle = ktf.build_datasets(manifest, image_size=64, batch_size=8, split="stratified")
    base = ktf.build_classifier("resnet50", image_size=64, class_names=bundle.class_names)
    model = ktf.CamFosteringModel.from_classifier(base, cam_weight=0.1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=ktf.WeightedCrossEntropy(bundle.class_weights),
        metrics=["accuracy"],
    )
    history = model.fit(bundle.train, validation_data=bundle.val, epochs=1, verbose=0)
    metrics = model.evaluate(bundle.test, return_dict=True, verbose=0)
    model.save(tmp_path / "kidney.keras")
    loaded = keras.models.load_model(tmp_path / "kidney.keras")
    probabilities = loaded.predict(bundle.test, verbose=0)
    cams = loaded.class_activation_maps(next(iter(bundle.test))[0])
    # ----------------------------------------------------------------------------------------

    for key in ("loss", "ce_loss", "cam_entropy", "accuracy", "val_loss", "val_cam_entropy"):
        assert np.isfinite(history.history[key][0]), key
    assert set(metrics) == {"loss", "ce_loss", "cam_entropy", "cam_empty", "accuracy"}
    assert all(np.isfinite(v) for v in metrics.values())
    assert loaded.class_names == list(ktf.data.phantoms.PHANTOM_CLASSES["kidney-ct"])
    assert loaded.metadata["arch"] == "resnet50" and loaded.metadata["image_size"] == 64
    assert probabilities.shape == (sum(bundle.counts["test"].values()), 4)
    np.testing.assert_allclose(probabilities, model.predict(bundle.test, verbose=0), atol=1e-5)
    assert cams.shape[1:] == (2, 2) and bool(np.all(np.asarray(cams) >= 0))
