"""Ingest: studies in, durably stored before anyone is told yes. HTTP ECG (``ecg``), one DICOM
instance (``dicom``: validation + store), the C-STORE SCP (``scp``), per-site rate limits
(``ratelimit``). STOW-RS is the HTTP face of ``dicom`` (serving/api/routes/dicomweb.py)."""
