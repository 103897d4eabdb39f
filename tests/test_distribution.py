"""Data-parallel training gives the single-device result (MirroredStrategy, multi-worker).

The end-to-end runs happen in fresh subprocesses: logical CPU devices and
TF_CONFIG must be set before TensorFlow initialises.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    import keras
    import numpy as np
    import finetunekit as fk
    from tests.conftest import tiny_cnn

    # Collective ops are configured once, before any other TensorFlow work.
    workers = tf.distribute.MultiWorkerMirroredStrategy() if mode == "multiworker" else None

    def build(distribution=None):
        keras.utils.set_random_seed(0)
        backbone = tiny_cnn()
        # The head's initial weights must not depend on how the backbone is adopted.
        keras.utils.set_random_seed(1)
        ft = fk.FineTuner(
            backbone,
            head=fk.ClassificationHead(2),
            preprocessing="zero_one",
            unfreeze="all",
            distribution=distribution,
        )
        ft.compile(learning_rate=1e-2)
        return ft

    rng = np.random.default_rng(0)
    y = np.arange(32) % 2
    x = (rng.integers(0, 100, (32, 16, 16, 3)) + 150 * y[:, None, None, None]).astype("uint8")
    if mode == "mirrored":
        # A strategy scope the user opens ...
        with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
            ft = build()
    else:
        # ... or the FineTuner's own argument (compile enters the scope itself).
        ft = build(workers)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    history = ft.fit(ds.with_options(options), epochs=2, verbose=0, shuffle=False)
    result = {
        "replicas": ft.distribute_strategy.num_replicas_in_sync,
        "loss": history.history["loss"],
        "weights": [w.tolist() for w in ft.get_weights()],
    }
    with open(out, "w") as f:
        json.dump(result, f)
    """
)


def _run(tmp_path, mode, env=None, name="out.json"):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{mode}_{name}"
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return (
        subprocess.Popen(
            [sys.executable, str(script), mode, str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
        out,
    )


def _result(process, out, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return json.loads(out.read_text())


def _assert_same(a, b):
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), atol=1e-5)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-device run both strategy runs are compared with (run once)."""
    return _result(*_run(tmp_path_factory.mktemp("single"), "single"))


def test_mirrored_strategy_on_two_cpu_devices_equals_one_device(tmp_path, single):
    mirrored = _result(*_run(tmp_path, "mirrored"))
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    _assert_same(single, mirrored)


def _free_ports(n):
    """n distinct free localhost ports (all sockets held open until each has its port)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow  # CI time budget; MirroredStrategy equality runs by default
def test_multi_worker_mirrored_on_localhost_equals_one_device(tmp_path, single):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    runs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        runs.append(
            _run(tmp_path, "multiworker", {"TF_CONFIG": json.dumps(tf_config)}, f"{index}.json")
        )
    results = [_result(*run) for run in runs]
    assert results[0]["replicas"] == 2
    _assert_same(single, results[0])
    _assert_same(results[0], results[1])


# ----------------------------------------------------------- in-process checks
def test_distribution_argument_owns_variables_and_adopts_a_prebuilt_backbone():
    import keras
    import tensorflow as tf

    import finetunekit as fk
    from tests.conftest import tiny_cnn

    backbone = tiny_cnn()  # built outside any strategy scope
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    ft = fk.FineTuner(
        backbone, head=fk.ClassificationHead(2), preprocessing="zero_one", distribution=strategy
    )
    ft.compile()
    assert ft.distribute_strategy is strategy
    assert all(strategy.extended.variable_created_in_scope(v.value) for v in ft.weights)
    for original, adopted in zip(backbone.get_weights(), ft.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(original, adopted)
    x = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)).astype("uint8")
    history = ft.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(strategy.extended.variable_created_in_scope(v.value) for v in ft.optimizer.variables)
    assert ft.predict(x, verbose=0).shape == (8, 2)
    assert keras.config.dtype_policy().name == "float32"


def test_unknown_distribution_is_a_clear_error():
    import finetunekit as fk
    from tests.conftest import tiny_cnn

    with pytest.raises(ValueError, match='must be None, "mirrored", "multi_worker"'):
        fk.FineTuner(tiny_cnn(), head=fk.ClassificationHead(2), distribution="tpu-pod")
