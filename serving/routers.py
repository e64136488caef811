"""The routers the API includes besides its own ECG/worklist routes.

Each entry is ``build_router(deps: ApiDeps) -> APIRouter``. Add a capability's router here.
"""

from __future__ import annotations

from typing import Callable


def router_builders() -> list[Callable]:
    from serving import kserve

    builders: list[Callable] = [kserve.build_router]
    from serving.worklist import routes as worklist_routes

    builders.append(worklist_routes.build_router)
    from serving.dicom import dicomweb

    builders.append(dicomweb.build_router)
    from serving import monitoring

    builders.append(monitoring.build_router)
    return builders
