"""The detection suite: every detector against the twin's causal ground truth."""
