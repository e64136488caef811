"""The reading worklist for doctors: users and login, claim/release/sign, audit trail, FHIR, exports.

``routes.build_router`` is the HTTP surface (included through serving/routers.py); the logic lives
in plain modules that take the Database so tests and the CLI can call them without HTTP.
"""
