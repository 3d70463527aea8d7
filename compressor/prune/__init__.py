"""Pruning: importance criteria, schedules, masks, structured slicing, vocabulary trimming."""
