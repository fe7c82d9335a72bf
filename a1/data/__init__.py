"""Data: LeRobot and human-video sources, shards, weighted mixtures."""
