"""Small helpers every part of ekya shares (trainer, controller, camera protocol)."""
