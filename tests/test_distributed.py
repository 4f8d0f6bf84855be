"""Shares of an extraction, concurrent writers of one store, and two processes under accelerate."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from difflens.features.distributed import Shard, current_shard, launched, process_device
from difflens.features.store import FeatureStore

HERE = Path(__file__).parent
WORKER = HERE / "distributed_worker.py"
LAUNCHER = Path(sys.executable).with_name("accelerate")


# --------------------------------------------------------------------------- shares


def test_shares_are_whole_batches_dealt_in_turn():
    # 10 items in batches of 2: batches 0..4; 3 processes take batches {0, 3}, {1, 4}, {2}
    assert Shard(0, 3).positions(10, 2) == [0, 1, 6, 7]
    assert Shard(1, 3).positions(10, 2) == [2, 3, 8, 9]
    assert Shard(2, 3).positions(10, 2) == [4, 5]


@pytest.mark.parametrize("n,batch,count", [(0, 4, 2), (1, 4, 2), (17, 4, 3), (9, 1, 4), (5, 8, 2)])
def test_shares_partition_the_list(n, batch, count):
    shares = [Shard(i, count).positions(n, batch) for i in range(count)]
    flat = sorted(p for share in shares for p in share)
    assert flat == list(range(n))  # none lost, none twice


def test_take_reads_a_sequence_or_walks_an_iterable_alike():
    items = [f"item{i}" for i in range(11)]
    shard = Shard(1, 2)
    # batches [0-2], [3-5], [6-8], [9-10]: the second process takes the second and fourth
    assert shard.take(items, 3) == ["item3", "item4", "item5", "item9", "item10"]
    assert shard.take(iter(items), 3) == shard.take(items, 3)
    assert Shard().take(iter(items), 3) == items


def test_a_shard_that_does_not_exist_is_refused():
    with pytest.raises(ValueError):
        Shard(2, 2)
    with pytest.raises(ValueError):
        Shard(0, 1).owns(0, 0)


def test_without_a_launcher_one_process_takes_everything(monkeypatch):
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert not launched()
    assert current_shard() == Shard(0, 1)
    assert process_device("cuda") == "cuda"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched()  # what a launcher sets (the group itself is made on first use)


def test_a_launched_process_loads_its_model_on_its_own_gpu(monkeypatch):
    import torch

    from difflens.models.backbone import launch_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert launch_device("cuda") == "cuda"  # one process: as asked
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launch_device("cuda") == "cuda:2"
    assert launch_device(torch.device("cuda")) == "cuda:2"
    assert launch_device("cuda:0") == "cuda:0"  # an explicit GPU is kept
    assert launch_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert launch_device("cuda") == "cuda"  # more processes than GPUs: not this choice


# --------------------------------------------------------------------------- concurrent writers


N_KEYS = 12


def _arrays(k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(k)
    return {"values": rng.standard_normal(48_000).astype(np.float32), "k": np.array([k] * 7)}


def _entry_ok(store: FeatureStore, k: int) -> bool:
    """An entry that exists must read back complete and equal to what every writer writes."""
    fields = {"k": k}
    existed = store.path("hammer", fields).exists()
    entry = store.get("hammer", fields)
    if entry is None:
        return not existed
    expected = _arrays(k)
    return set(entry.arrays) == set(expected) and all(
        np.array_equal(entry.arrays[name], expected[name]) for name in expected
    )


def _hammer(root: str, seed: int, rounds: int, barrier, results) -> None:
    store = FeatureStore(root)
    rng = random.Random(seed)
    bad, spans = 0, []
    for r in range(rounds):
        order = list(range(N_KEYS))
        if r % 2:
            rng.shuffle(order)  # odd rounds: random order; even rounds: all writers in step
        barrier.wait()
        for k in order:
            start = time.monotonic()
            store.put("hammer", {"k": k}, _arrays(k), {"k": k})
            spans.append((k, start, time.monotonic()))
            bad += not _entry_ok(store, rng.randrange(N_KEYS))
    results.put({"seed": seed, "bad": bad, "spans": spans, "corrupt": store.stats["corrupt"]})


def _overlaps(reports: list[dict]) -> int:
    """Pairs of writes of the same key by different processes whose time spans overlap."""
    count = 0
    for i, a in enumerate(reports):
        for b in reports[i + 1 :]:
            for k, s1, e1 in a["spans"]:
                count += sum(1 for k2, s2, e2 in b["spans"] if k2 == k and s1 < e2 and s2 < e1)
    return count


def test_concurrent_writers_of_the_same_keys_leave_every_entry_complete(tmp_path):
    context = multiprocessing.get_context("spawn")
    n_proc, rounds = 3, 4
    barrier, results = context.Barrier(n_proc), context.Queue()
    procs = [
        context.Process(target=_hammer, args=(str(tmp_path), seed, rounds, barrier, results))
        for seed in range(n_proc)
    ]
    for p in procs:
        p.start()
    reports = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert _overlaps(reports) > 0, "the writers never overlapped: the test proved nothing"
    assert [r["bad"] for r in reports] == [0] * n_proc  # no reader saw a partial entry
    assert [r["corrupt"] for r in reports] == [0] * n_proc
    store = FeatureStore(tmp_path)
    assert store.count("hammer") == N_KEYS
    assert all(_entry_ok(store, k) for k in range(N_KEYS))
    assert not list(tmp_path.rglob("*.tmp"))  # every temporary file was moved or removed


def test_the_check_catches_an_entry_written_in_place(tmp_path):
    # the control: a writer that is not atomic leaves a half file the check must catch
    store = FeatureStore(tmp_path / "good")
    whole = store.put("hammer", {"k": 3}, _arrays(3), {"k": 3}).read_bytes()
    torn = FeatureStore(tmp_path / "torn")
    path = torn.path("hammer", {"k": 3})
    path.parent.mkdir(parents=True)
    path.write_bytes(whole[: len(whole) // 2])
    assert _entry_ok(store, 3)
    assert not _entry_ok(torn, 3)


# --------------------------------------------------------------------------- two processes


def _run_worker(store: Path, out: Path, processes: int, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    args = [str(WORKER), "--store", str(store), "--out", str(out), "--n-images", "6", *extra]
    if processes == 1:
        command = [sys.executable, *args]
    else:
        port = str(29500 + random.Random().randrange(1, 400))
        command = [str(LAUNCHER), "launch", "--multi_gpu", "--num_processes", str(processes)]
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        command += ["--main_process_port", port, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _entries(store: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(store)): p for p in store.rglob("*.npz") if not p.name.startswith(".")
    }


@pytest.mark.skipif(not LAUNCHER.exists(), reason="accelerate's launcher is not installed")
def test_two_processes_fill_the_store_one_process_would(tmp_path):
    # OMP_NUM_THREADS=1 in both runs: the launcher sets it, and the thread count moves the
    # last bits of a convolution; with it equal the stores must be equal byte for byte
    _run_worker(tmp_path / "one", tmp_path / "one-out", 1)
    _run_worker(tmp_path / "two", tmp_path / "two-out", 2)
    one, two = _entries(tmp_path / "one"), _entries(tmp_path / "two")
    assert one.keys() == two.keys()  # the same entries: none lost, none extra
    kinds = sorted({name.split("/")[0] for name in one})
    assert kinds == ["features", "latents", "prototypes"]
    for name, path in one.items():
        with np.load(path) as a, np.load(two[name]) as b:
            assert a.files == b.files, name
            for array in a.files:
                assert np.array_equal(a[array], b[array]), (name, array)
    single = json.loads((tmp_path / "one-out" / "0.json").read_text())
    shards = [json.loads((tmp_path / "two-out" / f"{i}.json").read_text()) for i in (0, 1)]
    assert [s["index"] for s in shards] == [0, 1] and {s["count"] for s in shards} == {2}
    assert single["writes"] == len(one)
    assert sum(s["writes"] for s in shards) == len(two)  # no entry written twice
    assert min(s["writes"] for s in shards) > 0  # both processes did work
    for s in shards:  # every process reads back the whole, equal result
        assert s["tables"] == single["tables"]
        assert s["maps"] == single["maps"]
        assert s["counts"] == single["counts"] and s["map_counts"] == single["map_counts"]
    shutil.rmtree(tmp_path / "one")


# --------------------------------------------------------------------------- data-parallel training


def _reference_training(tmp_path: Path, processes: int) -> tuple[dict, list[float]]:
    """The training the worker runs, by hand: each step averages the gradients of N pairs."""
    import torch

    from difflens.correspondence.dense import image_prompt
    from difflens.correspondence.hyperfeatures import (
        AggregatorSettings,
        contrastive_loss,
        grid_indices,
    )
    from difflens.data.toy import ToyPairs
    from difflens.features.extractor import make_extractor
    from difflens.features.trajectory import StackSpec, collect_stacks

    sys.path.insert(0, str(HERE))
    from distributed_worker import TRAIN_LAYERS

    extractor = make_extractor("toy", 64, cache=tmp_path / "reference-store")
    pairs = list(ToyPairs(4, split="train", size=64))
    spec = StackSpec(TRAIN_LAYERS, mode="noise", timesteps=(50,), grid=8)
    settings = AggregatorSettings.of(extractor, spec, 16, None, 32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = settings.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    order = np.random.default_rng([3, 0]).permutation(len(pairs))  # the first epoch's order
    losses = []
    for step in range(2):
        optimizer.zero_grad()
        step_losses = []
        for draw in range(step * processes, (step + 1) * processes):
            pair = pairs[order[draw]]
            images = [pair.source_image, pair.target_image]
            prompt = image_prompt(extractor, pair.category)
            stacks = collect_stacks(images, extractor, spec, prompts=[prompt] * 2)
            out = model(torch.stack(stacks).float())
            src = grid_indices(pair.source_points, pair.source_size, (8, 8))
            trg = grid_indices(pair.target_points, pair.target_size, (8, 8))
            loss = contrastive_loss(out[0], out[1], src, trg, 0.07) / processes
            loss.backward()  # gradients add up: their mean over the step's pairs
            step_losses.append(loss.item() * processes)
        optimizer.step()
        losses.append(float(np.mean(step_losses)))
    return model.state_dict(), losses


@pytest.mark.slow  # about a minute on two cores: two launched processes, then the reference
@pytest.mark.skipif(not LAUNCHER.exists(), reason="accelerate's launcher is not installed")
def test_two_processes_train_the_aggregator_data_parallel(tmp_path):
    import torch

    from difflens.correspondence.hyperfeatures import load_aggregator

    out = tmp_path / "out"
    _run_worker(tmp_path / "store", out, 2, "--train")
    model, _ = load_aggregator(out / "aggregator.pt")
    expected, losses = _reference_training(tmp_path, 2)
    for name, tensor in expected.items():  # the same weights: the gradients were averaged
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=1e-4, atol=1e-5)
    for index in (0, 1):  # every process logged the mean loss of the step's two pairs
        got = json.loads((out / f"losses{index}.json").read_text())
        np.testing.assert_allclose(got, losses, rtol=1e-4)
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".json") == [
        "aggregator.pt",
        "checkpoint.pt",
        "history.csv",
    ]  # one checkpoint, written by the main process


# --------------------------------------------------------------------------- the notebook runner


def test_the_runner_knows_its_rank_from_the_launcher(monkeypatch):
    from difflens.runner.notebooks import launched_rank

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert launched_rank() is None  # no launcher: the one runner is the main one
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launched_rank() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert launched_rank() == 1
    monkeypatch.setenv("RANK", "0")
    assert launched_rank() == 0


@pytest.mark.slow  # a notebook executed twice: once alone, once by two launched runners
@pytest.mark.skipif(not LAUNCHER.exists(), reason="accelerate's launcher is not installed")
def test_two_launched_runners_execute_a_notebook_as_one_would(tmp_path):
    root = HERE.parent

    def run(name: str, processes: int) -> dict:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
        env["DIFFLENS_CACHE"] = str(tmp_path / name / "cache")
        args = ["--config", "ci", "--only", "01", "--runs", str(tmp_path / name / "runs")]
        args += ["--figures", str(tmp_path / name / "figures")]
        if processes == 1:
            command = [sys.executable, "-m", "difflens.runner", *args]
        else:
            port = str(29500 + random.Random().randrange(400, 800))
            command = [str(LAUNCHER), "launch", "--multi_gpu", "--num_processes", "2"]
            command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend"]
            command += ["no", "--main_process_port", port, "-m", "difflens.runner", *args]
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert len(list((tmp_path / name / "runs").glob("*/01_*.ipynb"))) == 1  # main only
        numbers = tmp_path / name / "figures" / "01_feature_extraction" / "numbers.json"
        return json.loads(numbers.read_text())

    one, two = run("one", 1), run("two", 2)
    for key in ("seconds", "warm_rerun_s"):  # timings differ; everything else must not
        one.pop(key), two.pop(key)
    assert two == one
    assert sorted(_entries(tmp_path / "one" / "cache")) == sorted(
        _entries(tmp_path / "two" / "cache")
    )
