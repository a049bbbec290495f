"""The strategy helpers without a cluster (two real workers: train_distributed_test)."""

import json

import pytest
import tensorflow as tf

from smcn_tf.training import distribute


def test_the_chief_is_the_chief_task_or_worker_zero():
    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    workers_only = {"worker": ["b:1", "c:1"]}
    assert distribute.is_chief_task("chief", 0, with_chief)
    assert not distribute.is_chief_task("worker", 0, with_chief)
    assert distribute.is_chief_task("worker", 0, workers_only)
    assert not distribute.is_chief_task("worker", 1, workers_only)
    assert not distribute.is_chief_task("evaluator", 0, workers_only)
    assert distribute.is_chief_task(None, None, {})


def test_the_default_strategy_is_one_chief_device():
    strategy = distribute.get_strategy("default")
    assert distribute.get_strategy("default") is strategy  # made once
    assert not distribute.is_distributed(strategy)
    assert distribute.is_chief(strategy) and not distribute.is_multi_worker(strategy)
    assert distribute.local_replicas(strategy) == 1 and distribute.num_workers(strategy) == 1
    assert distribute.chief_value(strategy, 3) == 3
    calls = []
    dataset = distribute.distribute_dataset(
        strategy, lambda *args: calls.append(args) or tf.data.Dataset.range(3), 6
    )
    assert calls == [(1, 0, 6)] and isinstance(dataset, tf.data.Dataset)
    assert distribute.describe(strategy) == "one device"


def test_the_global_batch_must_split_among_the_replicas():
    class FourReplicas:
        num_replicas_in_sync = 4

    assert distribute.per_replica_batch_size(FourReplicas(), 32) == 8
    with pytest.raises(ValueError, match=r"training\.batch_size \(30\).*4"):
        distribute.per_replica_batch_size(FourReplicas(), 30)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    with pytest.raises(ValueError, match="training.strategy"):
        distribute.get_strategy("tpu")


def test_tf_config_names_the_cluster_and_the_task():
    value = json.loads(distribute.tf_config({"worker": ["a:1", "b:2"]}, "worker", 1))
    assert value == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
