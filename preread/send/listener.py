"""The local DICOM C-STORE listener: the X-ray unit or the ECG cart sends to the clinic PC as to a
PACS. Success is answered only after the object is durably queued; a full disk answers 0xA700
(out of resources: the modality keeps the image and can send it again); an object the sender cannot
read answers 0xC000 and is quarantined with the reason."""

from __future__ import annotations

import logging

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from preread.send.accept import Accepted, Intake, Quarantined, Refused
from preread.send.config import ListenerConfig

log = logging.getLogger("preread.send.listener")
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


class CStoreListener:
    def __init__(self, cfg: ListenerConfig, intake: Intake):
        self.cfg, self.intake = cfg, intake
        self.server = None

    def start(self) -> CStoreListener:
        ae = AE(ae_title=self.cfg.ae_title)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.cfg.allowed_calling_ae_titles:
            ae.require_calling_aet = list(self.cfg.allowed_calling_ae_titles)
        self.server = ae.start_server(
            (self.cfg.host, self.cfg.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )
        log.info("C-STORE listener %s on %s:%d", self.cfg.ae_title, self.cfg.host, self.cfg.port)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _on_store(self, event) -> int:
        calling = event.assoc.requestor.ae_title.strip() if event.assoc else "?"
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # noqa: BLE001 - a malformed request: say so, keep listening
            log.warning("C-STORE from %s: cannot read the dataset: %s", calling, exc)
            return CANNOT_UNDERSTAND
        verdict = self.intake.take(data, f"c-store-{calling}.dcm", f"c-store:{calling}")
        if isinstance(verdict, Accepted):
            return SUCCESS
        if isinstance(verdict, Refused):
            return OUT_OF_RESOURCES
        assert isinstance(verdict, Quarantined)
        return CANNOT_UNDERSTAND
