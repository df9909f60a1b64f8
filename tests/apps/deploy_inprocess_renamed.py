"""``deploy_inprocess``'s app with its first step renamed (``fetch`` is ``load``): new code
that the live runs of ``journey`` would diverge on, as the deploy check's target."""

from __future__ import annotations

import stepline
from tests.apps.deploy_inprocess import APP_ID, define

client = stepline.Client(app_id=APP_ID, is_production=False, checkpointing=False)
child, journey, dozer = define(client, fetch="load")
