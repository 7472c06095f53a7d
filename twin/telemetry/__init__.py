"""What the twin records and how real tools would read it: frames, logs, spans, traces, exports."""
