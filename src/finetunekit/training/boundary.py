"""The freezing boundary of a functional backbone: its frozen front and its training back.

With `unfreeze=N`, every layer before the first trainable one computes the
same activations in every epoch. `split_at_boundary` finds the tensors that
cross from that frozen front to the part that trains (layers with trainable
weights and everything downstream of them) and cuts the backbone there into
two Keras models sharing its layers, so that boundary caching
(`finetunekit.training.caching`) can run the front once and train only the back.
"""

import keras


def _flat(value):
    return [t for t in keras.tree.flatten(value) if t is not None]


def _layer_tensors(model):
    """`(layer, inputs, outputs)` per layer of a functional model called once, in graph order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            found.append((layer, _flat(layer.input), _flat(layer.output)))
        except (AttributeError, ValueError):  # a layer called more than once
            return None
    return found


def split_at_boundary(model):
    """Cuts a functional backbone where its frozen front meets its trainable back.

    Args:
        model: a functional `keras.Model` whose trainable flags are set
            (`apply_unfreeze`).

    Returns:
        `(front, back)`: `front` maps the model's input to the boundary
        tensor, `back` maps that tensor to the model's output; both share the
        model's layers. Or a str saying why the model cannot be cut (no
        trainable layer, a layer used twice, or more than one tensor crossing
        the boundary).
    """
    layers = _layer_tensors(model)
    if layers is None:
        return "a layer of the backbone is used more than once"
    producer = {id(t): layer for layer, _, outputs in layers for t in outputs}
    live, crossing = set(), {}
    for layer, inputs, _ in layers:
        fed_by_live = any(id(producer.get(id(t))) in live for t in inputs if id(t) in producer)
        if layer.trainable_weights or fed_by_live:
            live.add(id(layer))
            for t in inputs:
                if id(producer.get(id(t))) not in live:
                    crossing[id(t)] = t
    if not live:
        return "nothing in the backbone trains"
    if len(crossing) != 1:
        return (
            f"{len(crossing)} tensors cross the frozen/trainable boundary (boundary caching "
            "stores one)"
        )
    (boundary,) = crossing.values()
    if any(boundary is t for t in _flat(model.inputs)):
        return "the first block trains (nothing frozen before it)"
    try:
        front = keras.Model(model.inputs, boundary, name=f"{model.name}_frozen_front")
        back = keras.Model(boundary, model.outputs[0], name=f"{model.name}_trainable_back")
    except (ValueError, TypeError, KeyError) as error:  # a graph Keras cannot cut there
        return f"the graph cannot be cut at the boundary ({type(error).__name__}: {error})"
    return front, back
