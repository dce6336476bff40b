"""Learners for recurrent networks and value functions, with Stable-Baselines3-shaped interfaces."""
