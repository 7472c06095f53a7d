"""Real telemetry in: one module per source format, all into the stack's own `SignalTable`
(metrics), span frame (traces) or log frame (logs), with the mess of real files handled and
said out loud (`notes`)."""
