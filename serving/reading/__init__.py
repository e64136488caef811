"""Reading: what turns a stored study into an AI read. ONE dispatcher (``dispatcher``) leases due
studies from the work queue (serving/store/work.py), ECG and DICOM alike, routes image studies to a
model (``routing``), calls the model replica (``client``) and records the read; the results room
turns it into SR / SC / FHIR."""
