"""App registration: sync bodies validated into functions, and their versions.

Which functions an event starts, and which version of an app a run's call goes to.
"""
