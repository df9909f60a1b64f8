"""The Inngest wire protocol, sans I/O: shared by the SDK and the engine."""
