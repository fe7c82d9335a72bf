"""Evaluation of trained policies: closed-loop rollouts in simulation (`a1.eval.sim`)."""
