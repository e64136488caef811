"""The priority queue feeding a model's batches (no Ray), and how priorities are derived."""

from __future__ import annotations

import asyncio

import pydicom
import pytest

from serving.priority import (
    PriorityError,
    current_priority,
    dicom_priority,
    parse_priority,
    request_priority,
)
from serving.replica.batching import PriorityBatcher


class Recorder:
    """A batch handler that records what each batch held and can be held closed. ``running`` is set
    once a batch has reached it: tests wait on that, not on a sleep that a loaded machine can outlast
    before the batcher's own wait timeout fires."""

    def __init__(self):
        self.batches: list[list] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = asyncio.Event()

    async def __call__(self, payloads: list) -> list:
        self.running.set()
        await self.gate.wait()
        self.batches.append(list(payloads))
        return [f"done:{p}" for p in payloads]


def run(coro):
    return asyncio.run(coro)


def test_batches_fill_up_to_max_and_results_come_back_in_order():
    async def main():
        handler = Recorder()
        batcher = PriorityBatcher(handler, max_batch_size=4, wait_timeout_s=0.05)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        return handler, results

    handler, results = run(main())
    assert [r.value for r in results] == [f"done:{i}" for i in range(10)]
    assert [len(b) for b in handler.batches] == [4, 4, 2]
    assert all(r.batch_size == len(handler.batches[i // 4]) for i, r in enumerate(results))
    assert all(r.queue_ms >= 0 and r.compute_ms >= 0 for r in results)


def test_a_lone_request_waits_at_most_the_timeout():
    async def main():
        batcher = PriorityBatcher(Recorder(), max_batch_size=32, wait_timeout_s=0.05)
        return await batcher.submit("x")

    result = run(main())
    assert result.batch_size == 1
    # it waited for company (the timeout) before going alone; how long at most is `preread bench timings`
    assert result.queue_ms >= 40, result.queue_ms


def test_sizes_count_items_not_requests_and_oversized_requests_run_alone():
    async def main():
        handler = Recorder()
        batcher = PriorityBatcher(handler, max_batch_size=8, wait_timeout_s=0.05)
        handler.gate.clear()
        first = asyncio.ensure_future(batcher.submit("blocker", size=1))
        await handler.running.wait()  # the blocker's batch is running; the rest queue behind it
        rest = [
            asyncio.ensure_future(batcher.submit(name, size=size))
            for name, size in (("a", 5), ("b", 5), ("huge", 20), ("c", 3))
        ]
        await asyncio.sleep(0.01)
        handler.gate.set()
        await asyncio.gather(first, *rest)
        return handler.batches

    batches = run(main())
    assert batches[0] == ["blocker"]
    # FIFO among equals; a batch stops at the first request that does not fit (no overtaking)
    assert batches[1:] == [["a"], ["b"], ["huge"], ["c"]]


def test_critical_work_is_served_before_queued_routine_work():
    async def main():
        handler = Recorder()
        batcher = PriorityBatcher(handler, max_batch_size=4, wait_timeout_s=0.01, aging_s=60)
        handler.gate.clear()
        blocker = asyncio.ensure_future(batcher.submit("blocker"))
        await handler.running.wait()
        routine = [asyncio.ensure_future(batcher.submit(f"r{i}", priority="routine")) for i in range(12)]
        await asyncio.sleep(0)
        urgent = [asyncio.ensure_future(batcher.submit(f"u{i}", priority="urgent")) for i in range(2)]
        critical = [asyncio.ensure_future(batcher.submit(f"c{i}", priority="critical")) for i in range(3)]
        await asyncio.sleep(0.01)
        assert batcher.depth() == {"critical": 3, "urgent": 2, "routine": 12}
        handler.gate.set()
        await asyncio.gather(blocker, *routine, *urgent, *critical)
        return handler.batches, [c.result() for c in critical]

    batches, critical = run(main())
    assert batches[1] == ["c0", "c1", "c2", "u0"]
    assert batches[2] == ["u1", "r0", "r1", "r2"]
    assert [c.priority for c in critical] == ["critical"] * 3


def test_aging_promotes_waiting_routine_work_so_it_is_never_starved():
    async def main():
        handler = Recorder()
        batcher = PriorityBatcher(handler, max_batch_size=1, wait_timeout_s=0.0, aging_s=0.05)
        handler.gate.clear()
        blocker = asyncio.ensure_future(batcher.submit("blocker"))
        await handler.running.wait()
        old = asyncio.ensure_future(batcher.submit("old-routine", priority="routine"))
        await asyncio.sleep(0.2)  # four aging periods: routine → critical
        fresh = [asyncio.ensure_future(batcher.submit(f"c{i}", priority="critical")) for i in range(3)]
        await asyncio.sleep(0)
        handler.gate.set()
        await asyncio.gather(blocker, old, *fresh)
        return handler.batches

    batches = run(main())
    # promoted to critical and older than the fresh critical work: it goes first
    assert batches[1] == ["old-routine"]


def test_a_failing_batch_fails_its_callers_only():
    calls = []

    async def flaky(payloads):
        calls.append(list(payloads))
        if "bad" in payloads:
            raise RuntimeError("model replica exploded")
        return payloads

    async def main():
        batcher = PriorityBatcher(flaky, max_batch_size=2, wait_timeout_s=0.02)
        first = await asyncio.gather(batcher.submit("bad"), batcher.submit("x"), return_exceptions=True)
        second = await batcher.submit("y")
        return first, second

    first, second = run(main())
    assert all(isinstance(r, RuntimeError) for r in first)
    assert second.value == "y"


def test_a_cancelled_caller_is_dropped_from_the_queue():
    async def main():
        handler = Recorder()
        batcher = PriorityBatcher(handler, max_batch_size=8, wait_timeout_s=0.0)
        handler.gate.clear()
        blocker = asyncio.ensure_future(batcher.submit("blocker"))
        await handler.running.wait()  # its batch is running (held at the gate)
        gone = asyncio.ensure_future(batcher.submit("gone"))
        kept = asyncio.ensure_future(batcher.submit("kept"))
        await asyncio.sleep(0)
        gone.cancel()
        handler.gate.set()
        await asyncio.gather(blocker, kept)
        return handler.batches

    assert run(main())[1] == ["kept"]


@pytest.mark.parametrize(
    "value, level",
    [
        (None, "routine"),
        ("", "routine"),
        ("CRITICAL", "critical"),
        ("urgent", "urgent"),
        (1, "critical"),
        (2, "urgent"),
        (3, "routine"),
        (0, "routine"),
        ("1", "critical"),
    ],
)
def test_parse_priority_takes_names_and_triton_numbers(value, level):
    assert parse_priority(value) == level


@pytest.mark.parametrize("value", ["stat", 7, -1, True, "high"])
def test_parse_priority_refuses_other_values_and_names_the_choices(value):
    with pytest.raises(PriorityError, match="priority"):
        parse_priority(value)


def test_dicom_priority_from_requested_procedure_priority_and_c_store_priority():
    ds = pydicom.Dataset()
    assert dicom_priority(ds) == "routine"
    assert dicom_priority(ds, command_priority=0x0001) == "urgent"  # C-STORE HIGH
    assert dicom_priority(ds, command_priority=0x0002) == "routine"  # LOW
    ds.RequestedProcedurePriority = "STAT"
    assert dicom_priority(ds, command_priority=0x0001) == "critical"
    nested = pydicom.Dataset()
    item = pydicom.Dataset()
    item.RequestedProcedurePriority = "HIGH"
    nested.RequestAttributesSequence = [item]
    assert dicom_priority(nested) == "urgent"


def test_priority_context_is_per_task_and_restored():
    async def worker(level):
        with request_priority(level):
            await asyncio.sleep(0.01)
            return current_priority()

    async def main():
        return await asyncio.gather(worker("critical"), worker("routine"), worker(None))

    assert run(main()) == ["critical", "routine", "routine"]
    assert current_priority() == "routine"


def test_a_study_keeps_the_most_urgent_priority_its_objects_arrived_with(tmp_path):
    """The C-STORE priority is kept with the study in the database (any replica that leases the
    study reads it), not in one process's memory; a later, less urgent object does not lower it."""
    from serving.store.db import Database, DicomAttributes, NewInstance

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()

    def arrive(sop: str, study: str, priority: str | None) -> None:
        db.accept_instance(
            NewInstance(sop, study, "demo", "DX", "application/dicom", f"k{sop}", "0", 1, "scp", priority=priority),
            DicomAttributes(modality="DX"),
        )

    arrive("1.1", "9.1", None)
    assert db.get_study("9.1").priority is None
    arrive("1.2", "9.1", "urgent")
    arrive("1.3", "9.1", "routine")
    assert db.get_study("9.1").priority == "urgent"
    arrive("2.1", "9.2", "critical")
    assert Database(db.engine.url.render_as_string(hide_password=False)).get_study("9.2").priority == "critical"


ROUTINE = 24  # routine reads queued ahead of the critical ones


@pytest.mark.ray
def test_a_loaded_model_replica_serves_critical_reads_first(serve_client, cinc_dir):
    """A model replica with a small batch and a long queue: critical reads that arrive last finish
    before most of the routine reads queued ahead of them (FIFO would finish them last)."""
    import time

    import numpy as np
    from ray import serve

    from datasets.ecg.readers import read_wfdb
    from models.ecg.pipeline import EcgInput
    from serving.app import build_model_app

    cfg = serve_client.cfg
    small_batches = cfg.deployments.ecg.model_copy(
        update={"max_batch_size": 2, "batch_wait_timeout_s": 0.0, "max_ongoing_requests": 64, "priority_aging_s": 120}
    )
    cfg = cfg.model_copy(update={"deployments": cfg.deployments.model_copy(update={"ecg": small_batches})})
    handle = serve.run(build_model_app(cfg, "ecg"), name="priority-test", route_prefix=None)
    try:
        record = read_wfdb(cinc_dir / "E07500.hea").in_standard_order()
        item = EcgInput(record.signals.astype(np.float32), record.sampling_rate)
        handle.read.remote(item, "routine").result(timeout_s=120)  # warm
        finished: dict[str, float] = {}

        def done(name):
            return lambda _: finished.setdefault(name, time.monotonic())

        routine = []
        for i in range(ROUTINE):
            response = handle.read.remote(item, "routine")
            response._to_object_ref_sync().future().add_done_callback(done(f"r{i}"))
            routine.append(response)
        deadline = time.monotonic() + 60
        while not finished and time.monotonic() < deadline:  # the replica is working through the queue
            time.sleep(0.01)
        already = len(finished)
        critical = []
        for i in range(3):
            response = handle.read.remote(item, "critical")
            response._to_object_ref_sync().future().add_done_callback(done(f"c{i}"))
            critical.append(response)
        reads = [r.result(timeout_s=300) for r in routine + critical]
        # The done callbacks run on a Ray thread, possibly after result() returned: wait for all of them.
        deadline = time.monotonic() + 60
        while len(finished) < ROUTINE + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        serve.delete("priority-test")
    assert [r.timing["priority"] for r in reads[-3:]] == ["critical"] * 3
    assert len(finished) == ROUTINE + 3, f"completion callbacks missing: {sorted(finished)}"
    order = sorted(finished, key=finished.get)
    last_critical = max(order.index(f"c{i}") for i in range(3))
    overtaken = sum(1 for name in order[last_critical + 1 :] if name.startswith("r"))
    # ROUTINE reads in batches of 2. `already` were done when the critical reads were sent; a few more
    # finish while the three travel through the router to the replica (on a busy 2-core CI machine that
    # can be several batches), then they go first. FIFO would finish them last: none overtaken.
    unfinished = ROUTINE - already
    assert already <= ROUTINE // 2, f"the routine queue was mostly done before the critical reads were sent: {order}"
    assert overtaken >= unfinished // 2, (
        f"completion order {order}: the critical reads overtook {overtaken} of the {unfinished} routine reads "
        "still queued when they were sent"
    )
    assert max(r.timing["batch_size"] for r in reads) <= 2


def test_the_ecg_api_takes_a_priority_and_refuses_unknown_ones(local_client, cinc_dir):
    from tests.serving.conftest import cinc_zip

    headers = {"content-type": "application/zip", **local_client.auth()}
    refused = local_client.http.post(
        "/api/v1/ecg", params={"priority": "asap"}, content=cinc_zip(cinc_dir, "E07500"), headers=headers
    )
    assert refused.status_code == 422
    assert refused.json()["detail"]["field"] == "priority" and "critical" in refused.json()["detail"]["reason"]
    listed = local_client.http.get("/api/v1/worklist", headers=local_client.auth(role="reader")).json()
    assert listed["count"] == 0, "a refused ECG was stored"
    accepted = local_client.http.post(
        "/api/v1/ecg", params={"priority": "critical"}, content=cinc_zip(cinc_dir, "E07500"), headers=headers
    )
    assert accepted.status_code == 201, accepted.text


def test_the_dispatcher_reads_dicom_studies_at_their_priority(tmp_path, nih_dir):
    """STAT in the object → critical; a C-STORE with Priority HIGH → urgent; else routine."""
    from types import SimpleNamespace

    from bench.standin_readers import StandInCxrReader
    from datasets.imaging import wrap_png_as_dicom
    from serving.config import load_config
    from serving.ingest.dicom import DicomIngest, encode
    from serving.reading.dispatcher import Dispatcher
    from serving.reading.routing import Router
    from serving.store.db import Database
    from serving.store.objects import ObjectStore
    from serving.store.work import WorkQueue
    from tests.conftest import REPO_ROOT

    cfg = load_config(REPO_ROOT / "configs" / "serving.yaml")
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    # The dispatcher records reads through the durable work queue the ECG workflow owns.
    svc = SimpleNamespace(
        config=cfg,
        db=db,
        store=ObjectStore(tmp_path / "objects"),
        ecg=SimpleNamespace(queue=WorkQueue.from_config(db, cfg), patient_key=None),
    )
    ingest = DicomIngest.from_config(svc.config, svc.db, svc.store, svc.ecg)
    seen: dict[str, str] = {}
    fake = StandInCxrReader()

    async def read_cxr(record):
        seen[record.study_instance_uid] = current_priority()
        return fake.read_batch([record])[0]

    png = sorted(nih_dir.rglob("*.png"))[0]
    stat, high, plain = (wrap_png_as_dicom(png) for _ in range(3))
    stat.RequestedProcedurePriority = "STAT"
    studies = {}
    for name, ds in (("stat", stat), ("high", high), ("plain", plain)):
        # "high": what the SCP passes for a C-STORE request with Priority HIGH (serving/ingest/scp.py)
        studies[name] = ingest.accept(
            encode(ds), "demo", source="scp", sender="DEMOSITE", priority="urgent" if name == "high" else None
        ).study_uid
    dispatcher = Dispatcher(svc, Router.from_file(cfg.routing_path()), {"cxr": read_cxr})
    for uid in studies.values():
        assert asyncio.run(dispatcher.process(uid)) == "ai_read"
    assert {name: seen[uid] for name, uid in studies.items()} == {
        "stat": "critical",
        "high": "urgent",
        "plain": "routine",
    }


@pytest.mark.ray
def test_the_ecg_api_priority_reaches_the_model_replica(serve_client):
    from bench.ecg_whole_read import dicom_ecg_bodies

    # An ECG the session's service has never seen: a CinC record that another test posted first would
    # come back as its stored read, with the priority of that first post.
    (body,) = dicom_ecg_bodies(1)
    r = serve_client.http.post(
        "/api/v1/ecg",
        params={"priority": "critical"},
        content=body,
        headers={"content-type": "application/dicom", **serve_client.auth()},
    )
    assert r.status_code in (200, 201), r.text
    assert r.json()["read"]["timing"]["priority"] == "critical"
