"""The rehearsal report: one self-contained HTML page from the run directories."""
