"""Backend-neutral pipeline, the robot-facing Policy and the backends; never imports torch."""
