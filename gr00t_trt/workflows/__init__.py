"""User flows that combine the pieces: the demo, doctor (what this machine can run) and the device selftest."""
