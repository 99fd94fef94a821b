"""craik_sim: the simulated FR3 digital twin (ROS-free library + the `sim` node)."""
