"""Run control: pausing functions, bulk actions, replay from a step, signals,
step timeouts and searchable run attributes, each in a module of its own."""
