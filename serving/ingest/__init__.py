"""DICOM in and out: validation and durable ingest, the C-STORE SCP, DICOMweb (STOW/QIDO/WADO-RS),
series routing to models, and the dispatcher that reads stable studies and writes SR + heatmap SC."""
