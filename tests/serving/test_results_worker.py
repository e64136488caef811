"""The dispatcher's results worker (serving/reading/dispatcher.py, ``results_worker=True``, what the
service on Ray uses): the SR and the heatmap SC built in a worker process are the ones the thread
path builds, heatmaps left to the ingress (``cam_maps``) included."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace

import numpy as np
import pydicom

from bench.standin_readers import StandInCxrReader
from datasets.imaging import wrap_png_as_dicom
from serving.config import load_config
from serving.ingest.dicom import DicomIngest, encode
from serving.reading.dispatcher import Dispatcher
from serving.reading.routing import Router
from serving.results import findings_from_sr
from serving.store.db import Database
from serving.store.objects import ObjectStore
from serving.store.work import WorkQueue
from tests.conftest import REPO_ROOT


def _read_and_store(tmp_path, source: bytes, results_worker: bool) -> dict[str, pydicom.Dataset]:
    cfg = load_config(REPO_ROOT / "configs" / "serving.yaml")
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    store = ObjectStore(tmp_path / "objects")
    svc = SimpleNamespace(
        config=cfg, db=db, store=store, ecg=SimpleNamespace(queue=WorkQueue.from_config(db, cfg), patient_key=None)
    )
    uid = DicomIngest.from_config(cfg, db, store, svc.ecg).accept(source, "demo", "scp", "DEMOSITE").study_uid
    fake = StandInCxrReader()

    async def read_cxr(record):  # a replica that leaves the heatmap picture to the ingress
        read = fake.read_batch([record])[0]
        read.pixels = {}
        read.cam_maps = {"PNEUMONIA": np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)}
        return read

    dispatcher = Dispatcher(svc, Router.from_file(cfg.routing_path()), {"cxr": read_cxr}, results_worker=results_worker)
    try:
        assert asyncio.run(dispatcher.process(uid)) == "ai_read"
        assert (dispatcher._results_pool is not None) == results_worker, "the worker was (not) used"
    finally:
        dispatcher.stop()
    study = db.get_study(uid)
    return {
        i.role: pydicom.dcmread(io.BytesIO(store.get(i.storage_key))) for i in study.instances if i.role != "original"
    }


def test_results_built_in_the_worker_are_the_ones_built_in_a_thread(tmp_path, nih_dir):
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    source = encode(wrap_png_as_dicom(png))
    in_thread = _read_and_store(tmp_path / "thread", source, results_worker=False)
    in_worker = _read_and_store(tmp_path / "worker", source, results_worker=True)
    assert sorted(in_worker) == sorted(in_thread) == ["ai_sc", "ai_sr"]
    for role in ("ai_sr", "ai_sc"):
        assert in_worker[role].SOPInstanceUID == in_thread[role].SOPInstanceUID
    assert findings_from_sr(in_worker["ai_sr"]) == findings_from_sr(in_thread["ai_sr"])
    sc = in_worker["ai_sc"]
    assert (sc.Rows, sc.Columns) == (
        pydicom.dcmread(io.BytesIO(source)).Rows,
        pydicom.dcmread(io.BytesIO(source)).Columns,
    )
    np.testing.assert_array_equal(sc.pixel_array, in_thread["ai_sc"].pixel_array)
    assert sc.pixel_array.std() > 0, "the heatmap was not put on the image"
