"""What every family's PyTorch model shares: the flow-matching action head and its config fields, config
value checks, checkpoint I/O and synthetic-checkpoint writing. Each family's own model lives in its
package (``families/n16``, ``families/n17``)."""
