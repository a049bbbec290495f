"""`tf.distribute` for training: which strategy, who is the chief, the input per worker.

`training.strategy` picks one of:

- `auto`: `MirroredStrategy` when more than one GPU is visible, else the
  default (no distribution);
- `default`: no distribution (one device);
- `mirrored`: `MirroredStrategy` over the GPUs of this machine;
- `multi_worker`: `MultiWorkerMirroredStrategy`, configured by the `TF_CONFIG`
  environment variable (Kubeflow's TFJob sets it). Every worker runs the same
  command; the chief (task type `chief`, or `worker` 0 when the cluster has
  no chief) alone writes logs, checkpoints and results. The run directory
  must be on a filesystem every worker shares: every worker resumes from the
  chief's backup.

A `MultiWorkerMirroredStrategy` must exist before TensorFlow runs any op, so
strategies are made once per process (`get_strategy` caches them) and
`smcn_tf.train.run_experiment` makes its strategy first.
"""

import json
import os

import tensorflow as tf

_STRATEGIES = {}


def _make_strategy(name):
    if name == "auto":
        if len(tf.config.list_physical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        implementation = tf.distribute.experimental.CommunicationImplementation
        # NCCL between GPUs; gRPC rings otherwise (CPU workers).
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=(
                implementation.NCCL
                if tf.config.list_physical_devices("GPU")
                else implementation.RING
            )
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(
        "training.strategy must be one of ['auto', 'default', 'mirrored', "
        f"'multi_worker'], got {name!r}."
    )


def get_strategy(name="auto"):
    """The strategy `training.strategy` names, made once per process.

    Args:
        name: `"auto"`, `"default"`, `"mirrored"` or `"multi_worker"`.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if name not in _STRATEGIES:
        if name == "multi_worker" and not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "training.strategy=multi_worker needs the TF_CONFIG environment "
                "variable (the cluster and this worker's task)."
            )
        _STRATEGIES[name] = _make_strategy(name)
    return _STRATEGIES[name]


def is_distributed(strategy):
    """Whether `strategy` is anything but the default (no distribution)."""
    with strategy.scope():
        return tf.distribute.has_strategy()


def worker_task(strategy):
    """This worker's `(task_type, task_id, cluster)` under `strategy`.

    `(None, None, {})` without a multi-worker cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def num_workers(strategy):
    """How many workers train together (1 without a multi-worker cluster)."""
    _, _, cluster = worker_task(strategy)
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def is_multi_worker(strategy):
    """Whether `strategy` trains across more than one worker."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        num_workers(strategy) > 1
    )


def is_chief(strategy):
    """Whether this process writes the run's files.

    The chief is the task of type `chief`, or `worker` 0 when the cluster has
    none; without a multi-worker cluster the one process is the chief.
    """
    if not is_multi_worker(strategy):
        return True
    return is_chief_task(*worker_task(strategy))


def is_chief_task(task_type, task_id, cluster):
    """The chief rule on a task: `chief`, or `worker` 0 of a cluster without one."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def chief_value(strategy, value):
    """The chief's integer `value`, on every worker (one all-reduce).

    Lets the workers agree on where to resume even if one of them saw an
    older state than the chief (a restart racing the chief's last backup).
    Every worker must call it at the same point.
    """
    if not is_multi_worker(strategy):
        return value
    contribution = int(value) if is_chief(strategy) else 0
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(contribution, tf.int64)
    )
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    # Each of the chief's local replicas contributed the value once.
    return int(total.numpy()) // local_replicas(strategy)


def local_replicas(strategy):
    """Replicas on this worker: batches each worker's input yields per step."""
    return max(1, strategy.num_replicas_in_sync // num_workers(strategy))


def per_replica_batch_size(strategy, global_batch_size):
    """The global batch split among the replicas, which must divide it."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"training.batch_size ({global_batch_size}) is the global batch and "
            f"must be divisible by the number of replicas ({replicas})."
        )
    return global_batch_size // replicas


def distribute_dataset(strategy, make_dataset, global_batch_size):
    """The training input for `model.fit` under `strategy`.

    Args:
        strategy: a `tf.distribute.Strategy`.
        make_dataset: `make_dataset(num_shards, shard_index, batch_size)`
            returns this input pipeline's `tf.data.Dataset` of per-replica
            batches (`batch_size` is the per-replica batch).
        global_batch_size: the batch summed over every replica.

    Returns:
        A `tf.data.Dataset` (no distribution) or a distributed dataset built
        by `distribute_datasets_from_function`: each worker reads its own
        shard of the data, and each of its replicas takes whole batches.
    """
    batch_size = per_replica_batch_size(strategy, global_batch_size)
    if not is_distributed(strategy):
        return make_dataset(1, 0, batch_size)

    def dataset_fn(input_context):
        return make_dataset(
            input_context.num_input_pipelines,
            input_context.input_pipeline_id,
            input_context.get_per_replica_batch_size(global_batch_size),
        )

    return strategy.distribute_datasets_from_function(dataset_fn)


def describe(strategy):
    """One line about the strategy, for logs."""
    if not is_distributed(strategy):
        return "one device"
    task_type, task_id, _ = worker_task(strategy)
    where = f", task {task_type}:{task_id}" if is_multi_worker(strategy) else ""
    kind = (
        "MultiWorkerMirroredStrategy"
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        else type(strategy).__name__
    )
    return (
        f"{kind}, {strategy.num_replicas_in_sync} replica(s) on "
        f"{num_workers(strategy)} worker(s){where}"
    )


def tf_config(cluster, task_type, task_index):
    """A `TF_CONFIG` value (JSON) for `cluster` and one task, for launchers and tests."""
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": task_index}})
