"""Replaying recorded runs against code without running their steps.

- ``journal``: a run's record as one JSON document (``stepline runs export``).
- ``local``: one call replayed in this process: does the code still reach the recorded
  steps in order? (the deploy check's verdict for one run)
- ``wire``: the same over an app's serve URL, for any SDK.
- ``playback``: a run played back to its end: any run as a test (``TestEnv.replay``).
- ``isolation``: the network refused to the code between steps.
- ``verdict``, ``deploy_check``: the pre-deploy check over every live run, and its report.
"""
