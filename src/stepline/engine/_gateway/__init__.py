"""The AI gateway: the engine's own HTTP call for a step (``proxy``), and where it may go
(``destinations``)."""
