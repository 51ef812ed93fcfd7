"""Cost of an explanation: Grad-CAM++ maps/s vs plain ``predict`` images/s.

Measured on the same model and images (after one untimed warm-up each):

- ``predict``: ``model.predict(images, batch_size)``;
- ``explainer``: one :class:`~kidney_tf.explain.cams.CamExplainer` reused for every batch; it
  splits the model at the CAM layer (trunk in a ``tf.function`` giving features and
  probabilities, tf-keras-vis on the head); the figure with the goal (explanation at most 3x the
  cost of a prediction);
- ``explainer_whole_model``: the same with ``split=False``: tf-keras-vis over the whole model,
  eagerly, plus a ``predict`` to choose the class (what the split saves);
- ``explainer_no_upsample``: the same without the per-map upsampling to the input size;
- ``compute_cams``: the one-shot function, which builds (clones) a new explainer per call;
- ``graph_cam``: the exact CAM of the model's GAP -> Dense head in one ``tf.function``
  (``CamFosteringModel.class_activation_maps`` + resize + min-max), a lower bound for what a
  graph-mode CAM costs;
- ``eager_forward``: ``model(images)`` outside ``tf.function``, the way tf-keras-vis runs it;
- ``tape_gradient_input_watched`` / ``tape_gradient``: eager forward + gradient of the top score
  w.r.t. the CAM layer, with the tape watching the input (as tf-keras-vis does, which makes the
  backward pass run through the whole network) or only the CAM layer's output;

together they show where an explanation's time goes (``diagnose``).

Usage: ``data = explain_throughput(model, images, batch_size=16)``
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kidney_bench.core import Figure, Goal, Stopwatch, measure, per_clock, pick, ratio

EXPLAIN_GOAL = Goal("<=", 3.0)


def _graph_cam_fn(model):
    import tensorflow as tf

    from kidney_tf import CamFosteringModel

    view = CamFosteringModel.from_classifier(model, cam_weight=0.0, cam_method="exact")
    size = tuple(int(d) for d in model.inputs[0].shape[1:3])

    @tf.function(reduce_retracing=True)
    def maps(images):
        cams = view.class_activation_maps(images)[..., None]
        cams = tf.image.resize(cams, size)[..., 0]
        low = tf.reduce_min(cams, axis=[1, 2], keepdims=True)
        high = tf.reduce_max(cams, axis=[1, 2], keepdims=True)
        return (cams - low) / tf.maximum(high - low, 1e-12)

    return maps


def _tape_gradient_fn(model, layer: str, *, watch_input: bool):
    """Forward pass + gradient of the top score w.r.t. the CAM layer's output, eagerly under a
    GradientTape. ``watch_input=True`` is what tf-keras-vis does (``tape.watch(seed_inputs)``):
    the tape then records the whole network and the gradient runs a full backward pass."""
    import keras
    import tensorflow as tf

    view = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])

    def run(images):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            if watch_input:
                tape.watch(images)
            features, scores = view(images, training=False)
            if not watch_input:
                tape.watch(features)
            top = tf.reduce_max(scores, axis=-1)
        return tape.gradient(top, features)

    return run


def explain_throughput(
    model,
    images: np.ndarray,
    *,
    batch_size: int = 16,
    method: str = "gradcam++",
    repeats: int = 1,
) -> dict[str, Any]:
    """Timing of every variant (see module docstring): ``{variant: {"seconds", "cpu_seconds",
    "per_s": {"wall", "cpu"}}}``, plus ``cost_ratio*`` per clock and a ``diagnosis``."""
    import tensorflow as tf

    from kidney_tf import CamExplainer, compute_cams

    images = np.asarray(images, np.float32)
    n = len(images)
    chunks = [tf.constant(images[i : i + batch_size]) for i in range(0, n, batch_size)]
    out: dict[str, Any] = {"images": n, "batch_size": batch_size, "method": method}
    timings: dict[str, Any] = {}

    timings["predict"] = measure(
        lambda: model.predict(images, batch_size=batch_size, verbose=0), n, repeats=repeats
    )
    with Stopwatch() as watch:
        explainer = CamExplainer(model, method=method, batch_size=batch_size)
    out["explainer_build"] = watch.to_dict()
    timings["explainer"] = measure(lambda: explainer.explain(images), n, repeats=repeats)
    whole = CamExplainer(model, method=method, batch_size=batch_size, split=False)
    timings["explainer_whole_model"] = measure(lambda: whole.explain(images), n, repeats=repeats)
    # The explainer is warm now: the next variants need no warm-up pass of their own
    # (compute_cams is a one-shot function by design; eager calls are not traced).
    timings["explainer_no_upsample"] = measure(
        lambda: explainer.explain(images, upsample=False), n, repeats=repeats, warmup=False
    )
    timings["compute_cams"] = measure(
        lambda: compute_cams(model, images, method=method, batch_size=batch_size), n, warmup=False
    )
    model(chunks[0][:1], training=False)
    timings["eager_forward"] = measure(
        lambda: [model(c, training=False) for c in chunks], n, repeats=repeats, warmup=False
    )
    for watch in (True, False):
        run = _tape_gradient_fn(model, explainer.layer, watch_input=watch)
        timings[f"tape_gradient{'_input_watched' if watch else ''}"] = measure(
            lambda run=run: [run(c) for c in chunks], n, repeats=repeats
        )
    try:
        graph_cam = _graph_cam_fn(model)
    except ValueError as exc:  # head is not GAP -> Dense: no exact CAM
        out["graph_cam_error"] = str(exc)
    else:
        timings["graph_cam"] = measure(
            lambda: [graph_cam(c).numpy() for c in chunks], n, repeats=repeats
        )
    out["timings"] = timings
    variants = ("explainer", "explainer_whole_model", "explainer_no_upsample", "compute_cams")
    for variant in (*variants, "graph_cam"):
        suffix = "" if variant == "explainer" else f"_{variant}"
        out[f"cost_ratio{suffix}"] = _cost(timings, variant)
    out["eager_forward_cost_ratio"] = _cost(timings, "eager_forward")
    out["tape_gradient_cost_ratio"] = _cost(timings, "tape_gradient")
    out["tape_gradient_input_watched_cost_ratio"] = _cost(timings, "tape_gradient_input_watched")
    out["diagnosis"] = {clock: diagnose(out, clock) for clock in ("wall", "cpu")}
    return out


def _cost(timings: dict[str, Any], variant: str) -> dict[str, float | None]:
    """Per clock: time per item of ``variant`` / time per image of ``predict``."""
    if variant not in timings:
        return {"wall": None, "cpu": None}
    return per_clock(lambda c: ratio(timings["predict"]["per_s"][c], timings[variant]["per_s"][c]))


def diagnose(data: dict[str, Any], clock: str = "wall") -> str:
    """One paragraph on where an explanation's time goes, from the measured rates."""
    cost = {
        k: pick(v, clock) for k, v in data.items() if k.endswith("cost_ratio") or "cost_ratio_" in k
    }
    total = cost.get("cost_ratio")
    if total is None:
        return "not measured"
    parts = [
        f"one {data.get('method')} map costs {total:.2g} predictions ({clock} time), with the "
        "model split at the CAM layer (compiled trunk, tf-keras-vis on the head)"
    ]
    whole = cost.get("cost_ratio_explainer_whole_model")
    if whole is not None:
        parts.append(
            f"tf-keras-vis over the whole model (split=False) costs {whole:.2g}: it needs its own "
            "predict to choose the class"
        )
    eager = cost.get("eager_forward_cost_ratio")
    if eager is not None:
        parts.append(
            "and runs the cloned model eagerly (no tf.function): an eager forward pass "
            f"costs {eager:.2g} predictions"
        )
    watched = cost.get("tape_gradient_input_watched_cost_ratio")
    unwatched = cost.get("tape_gradient_cost_ratio")
    if watched is not None and unwatched is not None:
        parts.append(
            "and it watches the INPUT on its GradientTape, so forward + gradient cost "
            f"{watched:.2g} predictions, against {unwatched:.2g} when the tape only watches the "
            "CAM layer's output"
        )
    no_up = cost.get("cost_ratio_explainer_no_upsample")
    if no_up is not None:
        share = max(0.0, total - no_up) / total
        parts.append(f"upsampling the maps (scipy.ndimage.zoom) takes {share:.0%} of the time")
    one_shot = cost.get("cost_ratio_compute_cams")
    if one_shot is not None and one_shot > total:
        parts.append(
            f"compute_cams builds (clones) a new explainer per call: {one_shot / total:.2f}x "
            "the cost of reusing one CamExplainer"
        )
    graph = cost.get("cost_ratio_graph_cam")
    if graph is not None:
        parts.append(
            f"the exact CAM in one tf.function (no second predict, no eager pass) costs "
            f"{graph:.2g} predictions"
        )
    return "; ".join(parts) + "."


def explain_figures(arch: str, data: dict[str, Any], clock: str = "wall") -> list[Figure]:
    method = data.get("method", "gradcam++")
    timings = data.get("timings", {})
    other = "cpu" if clock == "wall" else "wall"

    def rate_of(variant: str) -> float | None:
        return pick((timings.get(variant) or {}).get("per_s"), clock)

    return [
        Figure(
            f"explain.{arch}.cost_ratio",
            f"{method} cost / predict cost (reused CamExplainer), {arch}",
            pick(data.get("cost_ratio"), clock),
            "x",
            EXPLAIN_GOAL,
            note=f"{_fmt(rate_of('explainer'))} maps vs {_fmt(rate_of('predict'))} predictions "
            f"per {clock} second ({other} time: {_fmt(pick(data.get('cost_ratio'), other))}x)",
        ),
        Figure(
            f"explain.{arch}.cost_ratio_explainer_whole_model",
            f"{method} cost / predict cost (tf-keras-vis over the whole model), {arch}",
            pick(data.get("cost_ratio_explainer_whole_model"), clock),
            "x",
            note="CamExplainer(split=False): what the split at the CAM layer saves",
        ),
        Figure(
            f"explain.{arch}.cost_ratio_compute_cams",
            f"{method} cost / predict cost (one-shot compute_cams), {arch}",
            pick(data.get("cost_ratio_compute_cams"), clock),
            "x",
            note="builds a new explainer per call",
        ),
        Figure(
            f"explain.{arch}.cost_ratio_graph_cam",
            f"exact CAM in tf.function cost / predict cost, {arch}",
            pick(data.get("cost_ratio_graph_cam"), clock),
            "x",
            note="reference: a graph-mode CAM from the same forward pass",
        ),
    ]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


__all__ = ["EXPLAIN_GOAL", "diagnose", "explain_figures", "explain_throughput"]
