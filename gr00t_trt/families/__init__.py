"""Model families (N1.6, N1.7): one declaration each."""
