"""Simulated worlds: the embedded synthetic bimanual world (`a1.sim.synthetic`), which writes the
LeRobot datasets the tiny configs train on, and the MuJoCo ALOHA scenes used for closed-loop
evaluation. The data readers live in `a1.data`."""
