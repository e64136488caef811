"""DICOM ingest without Ray or network: validation reasons, durable store + row, idempotency,
the ECG path, routing rules."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.data import get_testdata_file

from serving.config import load_config
from serving.ingest.dicom import DicomIngest, DicomInputError, encode, validate_dicom
from serving.reading.routing import Router, RoutingRule
from serving.store.db import Database
from serving.store.objects import ObjectStore
from tests.conftest import REPO_ROOT

CT = Path(get_testdata_file("CT_small.dcm"))


def wrapped_dx(nih_png: Path, **kwargs) -> bytes:
    from datasets.imaging import wrap_png_as_dicom

    return encode(wrap_png_as_dicom(nih_png, **kwargs))


@pytest.fixture
def ingest(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    return DicomIngest(db, ObjectStore(tmp_path / "objects"), None, {"demo", "other"})


def test_valid_objects_parse():
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        ds = validate_dicom(Path(get_testdata_file(name)).read_bytes())
        assert ds.SOPInstanceUID


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: b"", "empty"),
        (lambda d: b"hello, not a DICOM file at all" * 10, "not DICOM"),
        (lambda d: d[:2000], "missing"),
        (lambda d: d[: len(d) // 2], "truncated"),
    ],
)
def test_bad_objects_name_the_problem(mutate, reason):
    data = CT.read_bytes()
    with pytest.raises(DicomInputError) as info:
        validate_dicom(mutate(data))
    assert reason.lower() in info.value.reason.lower(), info.value.reason


def test_huge_declared_length_is_refused():
    data = bytearray(CT.read_bytes())
    at = data.find(b"\x10\x00\x10\x00PN")  # Patient's Name, explicit VR: 2-byte length
    data[at + 6 : at + 8] = struct.pack("<H", 60000)
    with pytest.raises(DicomInputError) as info:
        validate_dicom(bytes(data))
    assert "declares 60000 bytes" in info.value.reason


def test_missing_uid_is_refused():
    ds = pydicom.dcmread(CT)
    del ds.SeriesInstanceUID
    with pytest.raises(DicomInputError, match="SeriesInstanceUID"):
        validate_dicom(encode(ds))
    ds = pydicom.dcmread(CT)
    ds.StudyInstanceUID = "1.2.abc"
    with pytest.raises(DicomInputError, match="not a valid UID"):
        validate_dicom(encode(ds))


def test_accept_is_durable_and_idempotent(ingest, nih_dir):
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    data = wrapped_dx(png, patient_name="Zhang^San")
    first = ingest.accept(data, "demo", source="scp", sender="DEMOSITE")
    again = ingest.accept(data, "demo", source="stow", sender="someone")
    assert first.created and not again.created
    assert again.sop_instance_uid == first.sop_instance_uid
    study = ingest.db.get_study(first.study_uid)
    assert study.status == "received" and study.site == "demo" and study.modality == "DX"
    assert study.patient_name == "Z**** S**"  # masked as on the ECG path
    assert study.last_instance_at is not None
    (instance,) = study.instances
    assert (instance.modality, instance.body_part, instance.view_position, instance.role) == (
        "DX",
        "CHEST",
        "PA",
        "original",
    )
    assert ingest.store.get(instance.storage_key) == data


def test_another_sites_study_is_refused(ingest):
    data = CT.read_bytes()
    ingest.accept(data, "demo", source="scp", sender="DEMOSITE")
    ds = pydicom.dcmread(CT)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    with pytest.raises(DicomInputError, match="cannot be used by this site") as refused:
        ingest.accept(encode(ds), "other", source="scp", sender="OTHERSITE")
    assert "demo" not in refused.value.reason  # whose study it is stays in the audit trail
    from serving.store import audit

    (event,) = [audit.as_dict(e) for e in audit.entries(ingest.db, action="security_cross_site")]
    assert event["detail"]["owner"] == "demo" and event["detail"]["site"] == "other"


def test_routing_rules_from_config():
    router = Router.from_file(load_config(REPO_ROOT / "configs" / "serving.yaml").routing_path())
    inst = lambda **kw: SimpleNamespace(  # noqa: E731
        **{
            "modality": None,
            "body_part": None,
            "view_position": None,
            "sop_class_uid": None,
            "role": "original",
            **kw,
        }
    )
    dx = inst(modality="DX", body_part="CHEST", view_position="PA", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1")
    lateral = inst(modality="DX", body_part="CHEST", view_position="LL", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1")
    ct = inst(modality="CT", body_part="HEAD", sop_class_uid="1.2.840.10008.5.1.4.1.1.2")
    assert router.route([lateral, dx]).instance is dx
    assert router.route([dx]).model == "cxr"
    route = router.route([ct, lateral])
    assert route.rule is None and "CT / HEAD" in route.reason
    assert router.route([inst(modality="DX", role="ai_sc")]).rule is None  # our own results are never routed
    with pytest.raises(ValueError, match="unknown match keys"):
        RoutingRule(name="x", model="cxr", match={"colour": ["red"]})


def test_dispatcher_claims_stable_studies_with_a_lease_and_records_failures(tmp_path, nih_dir):
    import asyncio
    from datetime import timedelta

    from serving.reading.dispatcher import Dispatcher
    from serving.store.schema import utcnow
    from serving.store.work import RetryPolicy, WorkQueue

    cfg = load_config(REPO_ROOT / "configs" / "serving.yaml")
    cfg = cfg.model_copy(update={"dicom": cfg.dicom.model_copy(update={"study_stable_seconds": 0})})
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    queue = WorkQueue(db, lease_seconds=60, stable_seconds=0, policy=RetryPolicy(max_attempts=2))
    svc = SimpleNamespace(
        config=cfg, db=db, store=ObjectStore(tmp_path / "objects"), ecg=SimpleNamespace(queue=queue, patient_key=None)
    )
    ingest = DicomIngest.from_config(svc.config, svc.db, svc.store, svc.ecg)
    ingest.ecg = None
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    dx = ingest.accept(wrapped_dx(png), "demo", source="scp", sender="DEMOSITE")

    waiting = WorkQueue(db, lease_seconds=60, stable_seconds=3600)
    assert waiting.claim_due() == [], "claimed before it was stable"
    assert queue.claim_due() == [dx.study_uid]
    other = WorkQueue(db, lease_seconds=60, stable_seconds=0)  # another replica
    assert other.claim_due() == [], "a live lease was taken over"
    later = utcnow() + timedelta(seconds=120)  # the claiming worker died: its lease went stale
    assert other.claim_due(now=later) == [dx.study_uid]
    assert db.get_study(dx.study_uid).ai_attempts == 2

    async def replica_died(record):
        raise RuntimeError("model replica died")

    dispatcher = Dispatcher(svc, Router.from_file(cfg.routing_path()), {"cxr": replica_died})
    assert asyncio.run(dispatcher.process(dx.study_uid)) == "ai_failed"
    study = db.get_study(dx.study_uid)
    assert study.status == "ai_failed" and "model replica died" in study.ai_error
    assert study.processing_since is None and study.next_attempt_at is None, "retried past max_attempts"
    assert "no further automatic attempt" in study.ai_error
    assert [i.role for i in study.instances] == ["original"], "a failed read left result objects behind"

    # A radiograph with no CXR model served: listed as no_ai_read, with the reason.
    ct = ingest.accept(CT.read_bytes(), "demo", source="scp", sender="DEMOSITE")
    png2 = sorted((nih_dir / "No_findings").glob("*.png"))[0]
    dx2 = ingest.accept(wrapped_dx(png2), "demo", source="scp", sender="DEMOSITE")
    plain = Dispatcher(svc, Router.from_file(cfg.routing_path()), {})
    assert asyncio.run(plain.tick()) == 2
    assert "not served" in db.get_study(dx2.study_uid).ai_error
    assert db.get_study(ct.study_uid).status == "no_ai_read"


def test_running_dispatcher_does_not_hold_studies_behind_a_slow_one(tmp_path, nih_dir):
    """With two studies in flight, one slow read does not stop the 17 behind it: the dispatcher
    leases the next study as soon as a slot frees up (rounds of 16 would wait for the slow one)."""
    import asyncio

    from bench.standin_readers import StandInCxrReader
    from serving.reading.dispatcher import Dispatcher
    from serving.store.work import WorkQueue

    cfg = load_config(REPO_ROOT / "configs" / "serving.yaml")
    cfg = cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(
                update={"max_in_flight": 2, "study_stable_seconds": 0.0, "poll_seconds": 0.05}
            )
        }
    )
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    svc = SimpleNamespace(
        config=cfg,
        db=db,
        store=ObjectStore(tmp_path / "objects"),
        ecg=SimpleNamespace(queue=WorkQueue.from_config(db, cfg), patient_key=None),
    )
    ingest = DicomIngest.from_config(svc.config, svc.db, svc.store, svc.ecg)
    pngs = sorted(nih_dir.rglob("*.png"))[:18]
    slow, *fast = [
        ingest.accept(wrapped_dx(png), "demo", source="scp", sender="DEMOSITE").study_uid for png in pngs
    ]  # the slow one arrived first: leased first
    fake = StandInCxrReader()

    async def main():
        release_slow = asyncio.Event()

        async def read_cxr(record):
            if record.study_instance_uid == slow:
                await release_slow.wait()
            return fake.read_batch([record])[0]

        dispatcher = Dispatcher(svc, Router.from_file(cfg.routing_path()), {"cxr": read_cxr})
        running = asyncio.create_task(dispatcher.run())

        async def statuses(uids, want, seconds=60.0):
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                got = [(await asyncio.to_thread(db.get_study, uid)).status for uid in uids]
                if all(s == want for s in got):
                    return got
                await asyncio.sleep(0.05)
            return got

        fast_done = await statuses(fast, "ai_read")
        slow_meanwhile = (await asyncio.to_thread(db.get_study, slow)).status
        release_slow.set()
        slow_done = await statuses([slow], "ai_read")
        dispatcher.stop()
        await asyncio.wait_for(running, 60)
        return fast_done, slow_meanwhile, slow_done

    fast_done, slow_meanwhile, slow_done = asyncio.run(main())
    assert fast_done == ["ai_read"] * 17, "studies waited behind the slow read"
    assert slow_meanwhile == "received" and slow_done == ["ai_read"]


def test_an_arrival_wakes_the_dispatcher_instead_of_waiting_for_its_poll(tmp_path, nih_dir):
    """The dispatcher polls rarely here (10 min): a stored image study is read once it is stable
    because the arrival wakes the sweep (before, the wake event was never set: arrivals waited for
    the poll interval)."""
    import asyncio

    from bench.standin_readers import StandInCxrReader
    from serving.reading.dispatcher import Dispatcher
    from serving.store.work import WorkQueue

    cfg = load_config(REPO_ROOT / "configs" / "serving.yaml")
    cfg = cfg.model_copy(
        update={"dicom": cfg.dicom.model_copy(update={"study_stable_seconds": 0.2, "poll_seconds": 600.0})}
    )
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    queue = WorkQueue.from_config(db, cfg)
    svc = SimpleNamespace(
        config=cfg, db=db, store=ObjectStore(tmp_path / "objects"), ecg=SimpleNamespace(queue=queue, patient_key=None)
    )
    ingest = DicomIngest.from_config(svc.config, svc.db, svc.store, svc.ecg)
    fake = StandInCxrReader()

    async def read_cxr(record):
        return fake.read_batch([record])[0]

    async def main():
        dispatcher = Dispatcher(svc, Router.from_file(cfg.routing_path()), {"cxr": read_cxr})
        swept = asyncio.Event()
        first_top_up = dispatcher._top_up

        async def top_up(in_flight):  # says when the first sweep is done (a sleep could be outlasted)
            claimed = await first_top_up(in_flight)
            swept.set()
            return claimed

        dispatcher._top_up = top_up
        running = asyncio.create_task(dispatcher.run())
        await asyncio.wait_for(swept.wait(), 60)  # the first sweep found nothing; the next poll is 10 minutes away
        png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
        uid = (await asyncio.to_thread(ingest.accept, wrapped_dx(png), "demo", "scp", "DEMOSITE")).study_uid
        deadline = asyncio.get_running_loop().time() + 60
        status = None
        while asyncio.get_running_loop().time() < deadline:
            status = (await asyncio.to_thread(db.get_study, uid)).status
            if status == "ai_read":
                break
            await asyncio.sleep(0.05)
        dispatcher.stop()
        dispatcher.wake("ECG")  # let the stopped loop see it now, not in 10 minutes
        await asyncio.wait_for(running, 60)
        return status

    assert asyncio.run(main()) == "ai_read", "the arrival did not wake the dispatcher"


def test_stopping_the_dicom_runtime_cancels_and_awaits_its_dispatcher(tmp_path, nih_dir):
    """``DicomRuntime.stop`` on its own loop (in-process app, tests) cancels the dispatcher's task and
    its in-flight read, waits for them to end, then closes the loop. Before, it stopped the loop with
    the task still pending: the read stayed held forever and the garbage collector later reported
    "Task was destroyed but it is pending" for Dispatcher.run."""
    import asyncio
    import threading

    from bench.county import county_config
    from bench.standin_readers import StandInCxrReader
    from serving.reading.runtime import start_local_dicom
    from serving.services import build_services

    class HeldReader:
        """A CXR reader that holds its read until released (so that the stop comes mid-read)."""

        def __init__(self):
            self.entered, self.release, self.fake = threading.Event(), threading.Event(), StandInCxrReader()

        def read_batch(self, records):
            self.entered.set()
            self.release.wait(120)
            return self.fake.read_batch(records)

    cfg = county_config(tmp_path, tmp_path / "no-registry")
    cfg = cfg.model_copy(update={"dicom": cfg.dicom.model_copy(update={"study_stable_seconds": 0.0})})

    async def no_ecg_reads(item):
        raise AssertionError("no ECG is sent here")

    services = build_services(cfg, no_ecg_reads)
    reader = HeldReader()
    runtime = start_local_dicom(services, reader)
    try:
        png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
        uid = services.dicom.accept(wrapped_dx(png), "demo", source="scp", sender="DEMOSITE").study_uid
        assert reader.entered.wait(120), "the dispatcher never started reading the study"
        assert services.ecg.queue.held == {uid}
        runtime.stop()
        loop = runtime.loop
        assert loop is not None and loop.is_closed()
        assert not asyncio.all_tasks(loop), "tasks left pending on the stopped dispatcher loop"
        assert services.ecg.queue.held == set(), "the in-flight read was not cancelled: its lease is still renewed"
        assert services.db.get_study(uid).status == "received"  # not read: another worker takes it over
    finally:
        reader.release.set()
        runtime.stop()
