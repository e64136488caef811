"""The clinic's store-and-forward sender (`preread send`): the village or township PC's side of a thin
link. Watch folder, local C-STORE listener and command line in; a durable local queue; uploads to the
county service (STOW-RS, POST /api/v1/ecg) with retries; results back. Imports nothing of serving/,
models/, torch or ray: it runs on a clinic PC (Windows or Linux) with httpx, pydicom, pynetdicom,
pyyaml, pydantic and rich. See docs/sender.md."""
