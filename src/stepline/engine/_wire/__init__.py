"""The call wire: the execution request the engine sends and the answer it reads. Pure."""
