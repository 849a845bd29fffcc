"""The export contract: graph and dim declarations, the control-step dataflow, the manifest and what it checks."""
