"""One router per resource (the shape of fastapi/full-stack-fastapi-template's api/routes/):
each module defines ``router``; serving/api/app.py includes them all."""
