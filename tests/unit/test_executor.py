"""Executor seam: serial, process pool and Dask LocalCluster give the same results; errors name the item."""

from __future__ import annotations

import functools
import math
import pickle

import pytest

from expredict.errors import ConfigError, ExpredictError, InputFileError
from expredict.executor import (
    DaskExecutor,
    LocalExecutor,
    SerialExecutor,
    TaskError,
    UserTaskError,
    default_label,
    get_executor,
)

ITEMS = [(f"/runs/out{i % 2}", f"ENSG{i:011d}") for i in range(20)]


def gene_task(item: tuple[str, str]) -> dict:
    """A pure per-gene task of the pipeline's shape: (out_dir, gene_id) in, a small record out."""
    out_dir, gene_id = item
    if gene_id.endswith("13"):
        msg = f"no expression for {gene_id} in {out_dir}"
        raise KeyError(msg)
    if gene_id.endswith("17"):
        msg = f"{out_dir}/genes/{gene_id}.parquet: truncated file; re-run the prepare stage"
        raise InputFileError(msg)
    n = int(gene_id[4:])
    return {"gene_id": gene_id, "value": math.sqrt(n) + len(out_dir)}


BACKENDS = {
    "serial": lambda: get_executor("local", 1),
    "process_pool": lambda: get_executor("local", 2),
    "dask": lambda: get_executor("dask", 2, processes=False),
}


@pytest.fixture(scope="module", params=list(BACKENDS))
def executor(request):
    with BACKENDS[request.param]() as ex:
        yield ex


def _reference() -> list[dict]:
    return sorted((gene_task(it) for it in ITEMS if not it[1].endswith(("13", "17"))), key=lambda r: r["gene_id"])


def test_backend_types():
    with get_executor("local", 1) as ex:
        assert isinstance(ex, SerialExecutor)
    with get_executor("local", 2, mp_context="forkserver") as ex:
        assert isinstance(ex, LocalExecutor)
        assert sorted(ex.map_unordered(abs, [-1, -2, 3])) == [1, 2, 3]


def test_same_results_on_every_backend(executor):
    items = [it for it in ITEMS if not it[1].endswith(("13", "17"))]
    got = sorted(executor.map_unordered(gene_task, items), key=lambda r: r["gene_id"])
    assert got == _reference()
    # partials of module-level functions ship too; with_items pairs each result with its item
    pairs = sorted(executor.map_unordered(functools.partial(pow, exp=2), range(6), with_items=True))
    assert pairs == [(i, i * i) for i in range(6)]
    # lazy iterables and an empty input
    assert sorted(executor.map_unordered(abs, (-i for i in range(7)))) == list(range(7))
    assert list(executor.map_unordered(abs, [])) == []


def test_errors_propagate_naming_the_gene(executor):
    with pytest.raises(TaskError, match=r"task failed for ENSG00000000013: KeyError") as info:
        for _ in executor.map_unordered(gene_task, [it for it in ITEMS if not it[1].endswith("17")]):
            pass
    err = info.value
    assert err.label == "ENSG00000000013"
    assert err.item == ITEMS[13]
    assert isinstance(err.original, KeyError) and err.__cause__ is err.original
    assert "no expression for ENSG00000000013" in str(err)
    # the executor still works after a failure
    assert sorted(executor.map_unordered(abs, [-3, 1])) == [1, 3]


def test_user_errors_stay_expredict_errors(executor):
    with pytest.raises(UserTaskError, match=r"task failed for ENSG00000000017: InputFileError: .*truncated") as info:
        list(executor.map_unordered(gene_task, [ITEMS[16], ITEMS[17]]))
    assert isinstance(info.value, ExpredictError) and isinstance(info.value.original, InputFileError)


def test_custom_label_and_early_stop(executor):
    with pytest.raises(TaskError, match=r"task failed for gene #-1: ValueError: math domain error"):
        list(executor.map_unordered(math.sqrt, [4, -1, 9], label=lambda x: f"gene #{x}"))
    gen = executor.map_unordered(math.sqrt, range(50))
    assert next(gen) >= 0
    gen.close()  # stopping early cancels the rest and does not hang
    assert sorted(executor.map_unordered(abs, [-5])) == [5]


def test_dask_resources_on_local_cluster():
    with get_executor("dask", 1, processes=False, resources={"GPU": 1}) as ex:
        assert isinstance(ex, DaskExecutor)
        assert sorted(ex.map_unordered(abs, [-1, -2])) == [1, 2]
        info = ex.client.scheduler_info()["workers"]
        assert all(w["resources"] == {"GPU": 1} for w in info.values())


def test_invalid_settings():
    with pytest.raises(ConfigError, match="executor.backend"):
        get_executor("slurm", 2)
    with pytest.raises(ConfigError, match="executor.n_workers"):
        get_executor("local", 0)


def test_default_label_and_pickling():
    assert default_label("ENSG1") == "ENSG1"
    assert default_label(("/out", "ENSG2")) == "ENSG2"
    assert default_label(("/out", "ENSG3", 7)) == "ENSG3"
    assert default_label(42) == "42"
    assert len(default_label(list(range(100)))) <= 120
    err = pickle.loads(pickle.dumps(TaskError(("/o", "G1"), "G1", ValueError("bad"))))
    assert str(err) == "task failed for G1: ValueError: bad"
