"""A rehearsal: one scenario under one operations mode, scored against its ground truth."""
