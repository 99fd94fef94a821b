"""craik_franka: the FR3 controller (franky) with its safety envelope; ROS-free library + node."""
