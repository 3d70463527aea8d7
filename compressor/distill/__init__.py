"""Distillation: student construction, registered losses, and the ``distill`` stage."""
