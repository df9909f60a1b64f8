"""Trust in apps: who may register where (``apps``), and which answers count (``answers``)."""
